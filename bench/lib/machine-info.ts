/** Machine and revision facts recorded with every result, so numbers can be read in context. */
import { execFileSync } from 'node:child_process';
import { cpus, release, totalmem } from 'node:os';
import type { MachineInfo } from './result-types.ts';

/** CPU model, cores, memory, kernel and runtime of this machine. */
export function machineInfo(pinned: boolean): MachineInfo {
  const c = cpus();
  return {
    cpuModel: c[0]?.model.trim() ?? 'unknown',
    cores: c.length,
    memoryBytes: totalmem(),
    kernel: release(),
    node: process.version,
    openssl: process.versions.openssl ?? 'unknown',
    platform: `${process.platform}-${process.arch}`,
    pinned,
  };
}

/** HEAD of the checkout at `repoRoot`, and whether the tree has uncommitted changes. */
export function gitRevision(repoRoot: string): { revision: string; dirty: boolean } {
  try {
    const revision = execFileSync('git', ['-C', repoRoot, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['-C', repoRoot, 'status', '--porcelain', '--untracked-files=no'], {
      encoding: 'utf8',
    });
    return { revision, dirty: status.trim().length > 0 };
  } catch (err) {
    return { revision: `unknown (${(err as Error).message.split('\n')[0] ?? ''})`, dirty: true };
  }
}
