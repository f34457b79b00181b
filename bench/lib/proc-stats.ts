/**
 * Server-side resource readings from /proc: CPU time (utime+stime of all threads, from
 * /proc/<pid>/stat) and peak RSS (VmHWM from /proc/<pid>/status), with a best-effort reset of
 * the peak so each measured window reports its own.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

let clockTicks: number | undefined;

/** Kernel clock ticks per second (USER_HZ); utime/stime are counted in these. */
export function clockTicksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch (err) {
      // getconf is part of libc-bin on Debian; without it USER_HZ is 100 on every Linux we target.
      process.emitWarning(`getconf CLK_TCK failed (${(err as Error).message}); assuming 100`);
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** CPU seconds (user + system, all threads) the process has used so far. */
export function readCpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // comm (field 2) is in parentheses and may contain spaces: split after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14, stime field 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error(`unparsable /proc/${pid}/stat`);
  return (utime + stime) / clockTicksPerSecond();
}

function statusField(pid: number, field: string): number | undefined {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return m?.[1] === undefined ? undefined : Number(m[1]) * 1024;
}

/** Peak resident set size (VmHWM) in bytes. */
export function readPeakRssBytes(pid: number): number | undefined {
  return statusField(pid, 'VmHWM');
}

/** Current resident set size (VmRSS) in bytes. */
export function readRssBytes(pid: number): number | undefined {
  return statusField(pid, 'VmRSS');
}

/**
 * Reset VmHWM to the current RSS (writing 5 to clear_refs, Linux ≥ 4.0). Returns false when the
 * kernel or permissions refuse, in which case VmHWM is the peak since the process started.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES' || (err as NodeJS.ErrnoException).code === 'EPERM') {
      return false;
    }
    if ((err as NodeJS.ErrnoException).code === 'EINVAL') return false;
    throw err;
  }
}
