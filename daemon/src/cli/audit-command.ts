/**
 * `keybroker audit verify|tail|query|export-checkpoints|reset-head`: offline tools over an audit log.
 * verify exits 1 and names the first bad entry (seq, byte offset, what is wrong) on failure.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { keyIdOf } from '../audit/checkpoint.ts';
import type { AuditQuery } from '../audit/audit-reader.ts';
import type { AuditEntry } from '../audit/audit-record.ts';
import type { VerifyOptions, VerifyReport } from '../audit/audit-verifier.ts';

const RESULTS = ['ok', 'denied', 'error', 'intent'] as const;

function printable(e: AuditEntry): Record<string, unknown> {
  const { timeMs, ...rest } = e;
  return { ...rest, time: new Date(timeMs).toISOString() };
}

/** A PEM given inline or as a file path. */
function readPem(v: string): string {
  return v.startsWith('-----BEGIN') ? v : readFileSync(v, 'utf8');
}

/** "2026-01-01T00:00:00Z", or a duration back from now: "15m", "2h", "7d". */
export function parseSince(v: string, now = Date.now()): number {
  const d = /^(\d+)([smhd])$/.exec(v);
  if (d) return now - Number(d[1]) * { s: 1e3, m: 6e4, h: 3.6e6, d: 8.64e7 }[d[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(v);
  if (!Number.isFinite(t)) throw new Error(`--since: not a time or duration: ${v}`);
  return t;
}

const withFile = <T>(y: Argv<T>) =>
  y.option('file', { type: 'string', demandOption: true, describe: 'audit file (audit.log)' });

/**
 * The pinned checkpoint keys: each --public-key, which must match a --key-fingerprint when any
 * is given (the fingerprint, kept apart from the log, is then the trust anchor and the PEM may
 * be the copy beside the log). A key file in the log's own directory without a fingerprint is
 * no anchor: whoever can rewrite the log can rewrite it, so that draws a warning.
 */
export function pinnedKeys(
  file: string,
  keyArgs: readonly string[],
  fingerprints: readonly string[],
): { keys: string[]; warnings: string[] } {
  const want = new Set(fingerprints.map((f) => f.toLowerCase().replace(/:/g, '')));
  for (const f of want)
    if (!/^[0-9a-f]{64}$/.test(f)) throw new Error(`--key-fingerprint: expected 64 hex digits, got ${f}`);
  const warnings: string[] = [];
  const keys = keyArgs.map((v) => {
    const pem = readPem(v);
    const id = keyIdOf(pem);
    if (want.size > 0 && !want.has(id))
      throw new Error(
        `--public-key ${v.startsWith('-----BEGIN') ? '(inline)' : v}: fingerprint ${id} is not pinned`,
      );
    if (want.size === 0 && !v.startsWith('-----BEGIN') && resolve(dirname(v)) === resolve(dirname(file)))
      warnings.push(
        `the checkpoint key ${v} sits beside the log, where whoever rewrites the log can replace it: ` +
          `pin its fingerprint (--key-fingerprint ${id}) or keep a copy elsewhere`,
      );
    return pem;
  });
  if (want.size > 0 && keys.length === 0)
    throw new Error('--key-fingerprint needs the key itself (--public-key)');
  return { keys, warnings };
}

const verify: CommandModule = {
  command: 'verify',
  describe:
    'check the hash chain and signed checkpoints of an audit log (all its segments), or of every chain in --dir, offline',
  builder: (y) =>
    y
      .option('file', { type: 'string', describe: 'audit file (audit.log)' })
      .option('dir', {
        type: 'string',
        describe: 'audit folder: verify every chain in it (audit.log, and audit-wN.log of serve --workers)',
      })
      .option('timeline', {
        type: 'boolean',
        default: false,
        describe: 'with --dir: also print every entry of all chains merged by time (JSON lines)',
      })
      .conflicts('file', 'dir')
      .option('public-key', {
        type: 'string',
        array: true,
        describe: 'PEM file (or PEM text) of a checkpoint key; keep a copy away from the log',
      })
      .option('key-fingerprint', {
        type: 'string',
        array: true,
        describe: 'SHA-256 (hex) of the pinned key (logged by the daemon at start): --public-key must match',
      })
      .option('allow-unsigned-tail', {
        type: 'boolean',
        default: false,
        describe: 'accept entries after the last signed checkpoint (after a crash) as a warning',
      })
      .option('checkpoints', { type: 'string', describe: 'exported checkpoints that must all be present' })
      .option('json', { type: 'boolean', default: false }),
  handler: async (a) => {
    const args = a as unknown as {
      file?: string;
      dir?: string;
      timeline: boolean;
      publicKey?: string[];
      keyFingerprint?: string[];
      allowUnsignedTail: boolean;
      checkpoints?: string;
      json: boolean;
    };
    if (args.file === undefined && args.dir === undefined) {
      process.stderr.write('keybroker audit verify: give --file or --dir\n');
      process.exitCode = 2;
      return;
    }
    // The key-beside-the-log warning looks at the log's folder: --dir is that folder.
    const where = args.file ?? join(args.dir as string, 'audit.log');
    const pinned = pinnedKeys(where, args.publicKey ?? [], args.keyFingerprint ?? []);
    const anchors = args.checkpoints
      ? (await import('../audit/audit-reader.ts')).parseCheckpointExport(
          readFileSync(args.checkpoints, 'utf8'),
        ).checkpoints
      : [];
    if (args.dir !== undefined) {
      for (const w of pinned.warnings) process.stdout.write(`warning: ${w}\n`);
      const opts = { publicKeys: pinned.keys, anchors, requireSignedTail: !args.allowUnsignedTail };
      await verifyDir(args.dir, opts, args.json, args.timeline);
      return;
    }
    const r0 = await (
      await import('../audit/audit-verifier.ts')
    ).verifyAuditFile(args.file as string, {
      publicKeys: pinned.keys,
      anchors,
      requireSignedTail: !args.allowUnsignedTail,
    });
    const tail = r0.unsignedTail;
    const r = {
      ...r0,
      warnings: [
        ...pinned.warnings,
        ...r0.warnings,
        ...(r0.ok && tail ? [`unsigned tail accepted: entries ${tail.fromSeq}..${tail.toSeq}`] : []),
      ],
    };
    if (args.json) process.stdout.write(`${JSON.stringify(r)}\n`);
    else if (r.ok) {
      process.stdout.write(
        `OK: ${r.entries} entries (${r.records} records, ${r.checkpoints} checkpoints, ` +
          `${r.checkpointsVerified} signatures verified), head seq ${r.head.seq} hash ${r.head.hash}\n`,
      );
      for (const w of r.warnings) process.stdout.write(`warning: ${w}\n`);
    } else if (r.firstBad) {
      const b = r.firstBad;
      process.stdout.write(
        `FAILED at seq ${b.seq}, byte offset ${b.offset}${b.file ? ` of ${b.file}` : ''}: ${b.problem}\n` +
          `  last good entry: seq ${r.head.seq} hash ${r.head.hash}\n`,
      );
    }
    if (!r.ok) process.exitCode = 1;
  },
};

/** Every chain of a folder: one line per chain, exit 1 if any fails or none is found. */
async function verifyDir(dir: string, opts: VerifyOptions, json: boolean, timeline: boolean): Promise<void> {
  // Loaded here, like the other subcommands' modules: `audit --help` needs none of them.
  const { mergedTimeline, verifyAuditChains } = await import('../audit/audit-chains.ts');
  const chains = await verifyAuditChains(dir, opts);
  const line = (file: string, r: VerifyReport) =>
    r.ok
      ? `OK ${file}: ${r.entries} entries (${r.records} records, ${r.checkpointsVerified} signatures verified), head seq ${r.head.seq}`
      : `FAILED ${file}: at seq ${r.firstBad?.seq ?? '?'}, byte offset ${r.firstBad?.offset ?? '?'}: ${r.firstBad?.problem ?? 'unknown'}`;
  if (json) process.stdout.write(`${JSON.stringify(chains)}\n`);
  else for (const c of chains) process.stdout.write(`${line(c.file, c.report)}\n`);
  if (chains.length === 0) process.stdout.write(`no audit chains in ${dir}\n`);
  if (chains.length === 0 || chains.some((c) => !c.report.ok)) process.exitCode = 1;
  if (timeline)
    for (const { file, entry } of await mergedTimeline(chains.map((c) => c.file)))
      process.stdout.write(
        `${JSON.stringify({ chain: file.slice(dir.length).replace(/^\//, ''), ...printable(entry) })}\n`,
      );
}

const tail: CommandModule = {
  command: 'tail',
  describe: 'print the last entries as JSON lines',
  builder: (y) => withFile(y).option('n', { type: 'number', default: 20, describe: 'how many entries' }),
  handler: async (a) => {
    const args = a as unknown as { file: string; n: number };
    if (!Number.isInteger(args.n) || args.n < 1 || args.n > 1_000_000)
      throw new Error('-n must be in [1, 1000000]');
    for (const e of await (await import('../audit/audit-reader.ts')).tailAudit(args.file, args.n))
      process.stdout.write(`${JSON.stringify(printable(e))}\n`);
  },
};

const query: CommandModule = {
  command: 'query',
  describe: 'print the records matching every given filter, as JSON lines',
  builder: (y) =>
    withFile(y)
      .option('tenant', { type: 'string' })
      .option('org', { type: 'string' })
      .option('rpc', { type: 'string', describe: 'full name or method, e.g. Encrypt' })
      .option('identity', { type: 'string' })
      .option('result', { choices: RESULTS })
      .option('since', { type: 'string', describe: 'ISO time, or a duration back from now: 15m, 2h, 7d' })
      .option('limit', { type: 'number' }),
  handler: async (a) => {
    const args = a as unknown as Record<string, string | number | undefined>;
    const q: { -readonly [K in keyof AuditQuery]: AuditQuery[K] } = {};
    for (const k of ['tenant', 'org', 'rpc', 'identity'] as const) {
      const v = args[k];
      if (typeof v === 'string') q[k] = v;
    }
    if (typeof args.result === 'string') q.result = args.result as (typeof RESULTS)[number];
    if (typeof args.since === 'string') q.sinceMs = parseSince(args.since);
    if (typeof args.limit === 'number') q.limit = args.limit;
    for (const e of await (await import('../audit/audit-reader.ts')).queryAudit(String(args.file), q))
      process.stdout.write(`${JSON.stringify(printable(e))}\n`);
  },
};

const exportCmd: CommandModule = {
  command: 'export-checkpoints',
  describe: 'write the signed checkpoints as JSON, to keep apart from the audit file',
  builder: (y) => withFile(y).option('out', { type: 'string', describe: 'output file (default stdout)' }),
  handler: async (a) => {
    const args = a as unknown as { file: string; out?: string };
    const text = `${JSON.stringify(await (await import('../audit/audit-reader.ts')).exportCheckpoints(args.file), null, 2)}\n`;
    if (args.out) writeFileSync(args.out, text, { mode: 0o644 });
    else process.stdout.write(text);
  },
};

const resetHead: CommandModule = {
  command: 'reset-head',
  describe:
    'after investigating a refused start (cut or forged tail): let the next start pin the log as it is, recording the break',
  builder: (y) =>
    y
      .option('data-dir', {
        type: 'string',
        demandOption: true,
        describe: 'the daemon data dir (registry.db)',
      })
      .option('chain', {
        type: 'string',
        describe: 'the chain of one worker of serve --workers (w1, w2, ...: audit-w1.log, ...)',
      }),
  handler: async (a) => {
    const args = a as unknown as { dataDir: string; chain?: string };
    if (args.chain !== undefined && !/^w[1-9][0-9]{0,3}$/.test(args.chain))
      throw new Error(`--chain: expected w1, w2, ..., got ${args.chain}`);
    const registry = (await import('../store/registry-store.ts')).RegistryStore.open(
      join(args.dataDir, 'registry.db'),
    );
    try {
      const was = new (await import('../store/registry-audit-head.ts')).RegistryAuditHead(
        registry,
        args.chain,
      ).reset();
      process.stdout.write(
        was === undefined
          ? 'no pinned audit head: nothing to reset\n'
          : `pinned audit head (seq ${was.seq}, hash ${was.hash}, ${was.state}) reset: the next start pins the log as it finds it and notes the break\n`,
      );
    } finally {
      registry.close();
    }
  },
};

/** The `audit` command group. */
export const auditCommand: CommandModule = {
  command: 'audit <command>',
  describe: 'verify, tail, query and export the audit log',
  builder: (y) => y.command([verify, tail, query, exportCmd, resetHead]).demandCommand(1),
  handler: () => undefined,
};
