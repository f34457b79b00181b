// Hierarchy benchmark, in-process on real SoftHSM2 + SQLite (fresh token per phase):
//   node bench/hierarchy-bench.ts [--json] [--large] [--tenants N] [--customers N] [--ops N] [--phases a,b]
// Prints each number next to a ceiling measured in the same run. --large adds 100,000 tenants.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadProfile } from '../daemon/src/hsm/hsm-profile.ts';
import { Pkcs11Hsm } from '../daemon/src/hsm/pkcs11-hsm.ts';
import type { CustomerId, OrgId, TenantId, TenantRef } from '../daemon/src/ids.ts';
import { KeyBroker } from '../daemon/src/keys/key-broker.ts';
import type { KeyBrokerOptions } from '../daemon/src/keys/key-broker-options.ts';
import { createTestToken } from '../test/support/softhsm-token.ts';
import type { TestToken } from '../test/support/softhsm-token.ts';
import { spawn } from 'node:child_process';

const { values: args } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    large: { type: 'boolean', default: false },
    tenants: { type: 'string', default: '10000' },
    customers: { type: 'string', default: '10000' },
    ops: { type: 'string', default: '20000' },
    // Comma list of phases to run: warm,cold,shred,oek,large (large also needs --large or is named here).
    phases: { type: 'string', default: 'warm,cold,shred,oek' },
    'large-tenants': { type: 'string', default: '100000' },
    'provision-procs': { type: 'string', default: '4' },
    // Internal: a provisioning child of the large phase (dir,from,to,pin,label).
    provision: { type: 'string' },
  },
});
const PHASES = new Set(args.phases.split(','));
if (args.large) PHASES.add('large');
const OPS = Number(args.ops);
interface Row {
  phase: string;
  metric: string;
  value: number;
  unit: string;
  ceiling?: number;
  ratio?: number;
  note?: string;
}
const rows: Row[] = [];
const log = (s: string): void =>
  void (args.json ? process.stderr.write(`${s}\n`) : process.stdout.write(`${s}\n`));
const ORG = 'bench' as OrgId;
const tref = (t: string): TenantRef => ({ org: ORG, tenant: t as TenantId });
const msNow = (): number => performance.now();

// Provisioning child (large phase): create tenants [from, to) in an existing data dir, then exit.
// Tenant creation is bound by fsync latency (synchronous=FULL), so several processes overlap it.
if (args.provision) {
  const [dir, from, to, pin, label] = args.provision.split(',') as [string, string, string, string, string];
  const hsm = await Pkcs11Hsm.open({
    profile: loadProfile('softhsm2'),
    pin,
    tokenLabel: label,
    probeIntervalMs: 0,
  });
  const kb = await KeyBroker.open({ hsm, dataDir: dir, maxOpenTenantFiles: 64 });
  for (let i = Number(from); i < Number(to); i++) await kb.createTenant(ORG, `l${i}` as TenantId);
  await kb.close();
  await hsm.close();
  process.exit(0);
}

async function phase<T>(
  name: string,
  o: Partial<KeyBrokerOptions>,
  fn: (kb: KeyBroker, hsm: Pkcs11Hsm, dir: string, token: TestToken) => Promise<T>,
): Promise<T> {
  const token = createTestToken(`kb-bench-${name.slice(0, 16)}`);
  const hsm = await Pkcs11Hsm.open({
    profile: loadProfile('softhsm2'),
    pin: token.pin,
    tokenLabel: token.label,
    probeIntervalMs: 0,
  });
  const dir = mkdtempSync(join(tmpdir(), 'kb-bench-'));
  const kb = await KeyBroker.open({ hsm, dataDir: dir, ...o });
  try {
    await kb.createOrg(ORG);
    return await fn(kb, hsm, dir, token);
  } finally {
    await kb.close();
    await hsm.close();
    rmSync(dir, { recursive: true, force: true });
    token.cleanup();
  }
}

function rawSeal(cek: Buffer, pt: Uint8Array, aad: Uint8Array): Buffer {
  const salt = randomBytes(32);
  const nonce = randomBytes(12);
  const dek = Buffer.from(hkdfSync('sha256', cek, salt, 'info', 32));
  const c = createCipheriv('aes-256-gcm', dek, nonce);
  c.setAAD(aad);
  return Buffer.concat([salt, nonce, c.update(pt), c.final(), c.getAuthTag()]);
}
function rawOpen(cek: Buffer, blob: Buffer, aad: Uint8Array): Buffer {
  const dek = Buffer.from(hkdfSync('sha256', cek, blob.subarray(0, 32), 'info', 32));
  const d = createDecipheriv('aes-256-gcm', dek, blob.subarray(32, 44));
  d.setAAD(aad);
  d.setAuthTag(blob.subarray(blob.length - 16));
  return Buffer.concat([d.update(blob.subarray(44, blob.length - 16)), d.final()]);
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

// --- 1. warm encrypt/decrypt of 1 KiB vs raw AES-256-GCM + HKDF ---
if (PHASES.has('warm'))
  await phase('warm', {}, async (kb) => {
    const t = tref('warm');
    await kb.createTenant(ORG, t.tenant);
    const pt = randomBytes(1024);
    const aad = randomBytes(16);
    const cts: Uint8Array[] = [];
    for (let i = 0; i < 2000; i++) cts.push((await kb.encrypt(t, { plaintext: pt, aad })).ciphertext);
    const cek = randomBytes(32);
    const rawBlobs = cts.map(() => rawSeal(cek, pt, aad));
    // Interleaved in blocks so that load from other processes hits both sides alike; the first
    // pass warms the JIT and is discarded.
    const BLOCK = 500;
    const totals = { rawEnc: 0, kbEnc: 0, rawDec: 0, kbDec: 0 };
    const time = async (fn: (i: number) => unknown): Promise<number> => {
      const t0 = msNow();
      for (let i = 0; i < BLOCK; i++) await fn(i);
      return msNow() - t0;
    };
    for (let pass = 0; pass < 2; pass++) {
      for (let b = 0; b < OPS / BLOCK; b++) {
        const rawEnc = await time(() => rawSeal(cek, pt, aad));
        const kbEnc = await time(() => kb.encrypt(t, { plaintext: pt, aad }));
        const rawDec = await time((i) => rawOpen(cek, rawBlobs[i % rawBlobs.length] as Buffer, aad));
        const kbDec = await time((i) =>
          kb.decrypt(t, { ciphertext: cts[i % cts.length] as Uint8Array, aad }),
        );
        if (pass === 1) {
          totals.rawEnc += rawEnc;
          totals.kbEnc += kbEnc;
          totals.rawDec += rawDec;
          totals.kbDec += kbDec;
        }
      }
    }
    const ops = (ms: number): number => OPS / (ms / 1000);
    rows.push({
      phase: 'warm 1 KiB',
      metric: 'encrypt',
      value: ops(totals.kbEnc),
      unit: 'ops/s',
      ceiling: ops(totals.rawEnc),
      ratio: totals.rawEnc / totals.kbEnc,
      note: 'ceiling: raw HKDF + AES-256-GCM',
    });
    rows.push({
      phase: 'warm 1 KiB',
      metric: 'decrypt',
      value: ops(totals.kbDec),
      unit: 'ops/s',
      ceiling: ops(totals.rawDec),
      ratio: totals.rawDec / totals.kbDec,
      note: 'target >= 70%',
    });
  });

// --- 2. cold cache: first decrypt per tenant (TEK unwrap in the HSM + CEK unwrap) vs one raw unwrap ---
if (PHASES.has('cold'))
  await phase('cold', {}, async (kb, hsm, dir) => {
    const N = 300;
    const aad = randomBytes(8);
    const cts: Uint8Array[] = [];
    for (let i = 0; i < N; i++) {
      await kb.createTenant(ORG, `c${i}` as TenantId);
      cts.push((await kb.encrypt(tref(`c${i}`), { plaintext: randomBytes(1024), aad })).ciphertext);
    }
    const cold = await KeyBroker.open({ hsm, dataDir: dir });
    const lat: number[] = [];
    for (let i = 0; i < N; i++) {
      const t0 = msNow();
      await cold.decrypt(tref(`c${i}`), { ciphertext: cts[i] as Uint8Array, aad });
      lat.push(msNow() - t0);
    }
    await cold.close();
    const root = await hsm.generateRootKey('bench-raw-root');
    const wrapped = await hsm.wrapKey(root, randomBytes(32));
    const raw: number[] = [];
    for (let i = 0; i < N; i++) {
      const t0 = msNow();
      await hsm.unwrapKey(root, wrapped);
      raw.push(msNow() - t0);
    }
    const avg = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length;
    rows.push({
      phase: 'cold cache',
      metric: 'first decrypt (mean)',
      value: avg(lat) * 1000,
      unit: 'us',
      ceiling: avg(raw) * 1000,
      ratio: avg(lat) / avg(raw),
      note: 'ceiling: one raw HSM unwrap (async)',
    });
  });

// --- 3. destroy tenant / customer with 10,000 customers ---
const NC = Number(args.customers);
if (PHASES.has('shred'))
  await phase('shred', {}, async (kb) => {
    const big = tref('big');
    await kb.createTenant(ORG, big.tenant);
    for (let i = 0; i < 20; i++) await kb.createTenant(ORG, `other${i}` as TenantId);
    const t0 = msNow();
    for (let i = 0; i < NC; i++) await kb.createCustomer(big, `c${i}` as CustomerId);
    const create = (msNow() - t0) / NC;
    rows.push({
      phase: `${NC} customers`,
      metric: 'createCustomer (mean)',
      value: create * 1000,
      unit: 'us',
      note: 'one fsync (synchronous=FULL) each',
    });
    let t1 = msNow();
    const rc = await kb.destroyCustomer(big, 'c0' as CustomerId);
    rows.push({
      phase: `${NC} customers`,
      metric: 'destroyCustomer',
      value: msNow() - t1,
      unit: 'ms',
      note: `TEK rotation rewraps ${NC - 1} CEKs + OEK epoch (${rc.signatureAlgorithm})`,
    });
    t1 = msNow();
    await kb.destroyTenant(big);
    rows.push({
      phase: `${NC} customers`,
      metric: 'destroyTenant',
      value: msNow() - t1,
      unit: 'ms',
      note: 'file delete + OEK epoch over 21 tenants',
    });
  });

// --- 4. OEK rotation with 10,000 tenants ---
const NT = Number(args.tenants);
if (PHASES.has('oek'))
  await phase('oek', { maxOpenTenantFiles: 256 }, async (kb) => {
    // One by one for the first 1,000 (the per-tenant figure), the rest in bulk batches of 1,000:
    // one at a time the 10,000 took ~95 s of this script's budget.
    const single = Math.min(NT, 1000);
    const t0 = msNow();
    for (let i = 0; i < single; i++) await kb.createTenant(ORG, `t${i}` as TenantId);
    rows.push({
      phase: `${NT} tenants`,
      metric: 'createTenant (mean)',
      value: ((msNow() - t0) / single) * 1000,
      unit: 'us',
      note: `HSM wrap + tenant file + durable txns; first ${single} tenants, one at a time`,
    });
    if (NT > single) {
      const tb = msNow();
      for (let from = single; from < NT; from += 1000) {
        const names = Array.from({ length: Math.min(1000, NT - from) }, (_, k) => `t${from + k}` as TenantId);
        const made = await kb.createTenants(ORG, names);
        if (made.some((r) => !r.ok))
          throw new Error(`createTenants: not every tenant of ${from}.. was created`);
      }
      rows.push({
        phase: `${NT} tenants`,
        metric: 'createTenants (mean per tenant)',
        value: ((msNow() - tb) / (NT - single)) * 1000,
        unit: 'us',
        note: 'bulk, 1,000 per call: one sync barrier + one registry txn per call',
      });
    }
    const t1 = msNow();
    await kb.rotateOrgKey(ORG);
    rows.push({
      phase: `${NT} tenants`,
      metric: 'rotateOrgKey',
      value: msNow() - t1,
      unit: 'ms',
      note: `rewraps ${NT} TEKs in the HSM`,
    });
    const t2 = msNow();
    await kb.destroyTenant(tref('t0'));
    rows.push({
      phase: `${NT} tenants`,
      metric: 'destroyTenant (shred epoch)',
      value: msNow() - t2,
      unit: 'ms',
    });
  });

// --- 5. memory and encrypt latency with 100,000 tenants (--large) ---
if (PHASES.has('large')) {
  const NL = Number(args['large-tenants']);
  const PROCS = Number(args['provision-procs']);
  await phase(
    'large',
    { maxOpenTenantFiles: 256, cache: { maxEntries: 10_000 }, metadataCacheEntries: 20_000 },
    async (kb, _hsm, dir, token) => {
      // Run with node --expose-gc for heap numbers after a full GC (otherwise garbage counts too).
      global.gc?.();
      const rss0 = process.memoryUsage().rss;
      const heap0 = process.memoryUsage().heapUsed;
      const t0 = msNow();
      const per = Math.ceil(NL / PROCS);
      await Promise.all(
        Array.from({ length: PROCS }, (_, p) => {
          const range = [dir, p * per, Math.min(NL, (p + 1) * per), token.pin, token.label].join(',');
          const child = spawn(process.execPath, [import.meta.filename, '--provision', range], {
            env: { ...process.env, SOFTHSM2_CONF: token.conf },
            stdio: ['ignore', 'inherit', 'inherit'],
          });
          return new Promise<void>((res, rej) =>
            child.on('exit', (code) =>
              code === 0 ? res() : rej(new Error(`provisioning child ${p} exited ${code}`)),
            ),
          );
        }),
      );
      rows.push({
        phase: `${NL} tenants`,
        metric: 'createTenant (mean, wall)',
        value: ((msNow() - t0) / NL) * 1000,
        unit: 'us',
        note: `${PROCS} provisioning processes`,
      });
      log(`  provisioned ${NL} tenants in ${((msNow() - t0) / 1000).toFixed(0)} s`);
      const aad = randomBytes(8);
      const pt = randomBytes(1024);
      const lat: number[] = [];
      for (let i = 0; i < 20_000; i++) {
        const t = tref(`l${Math.floor(Math.random() * NL)}`);
        const s = msNow();
        await kb.encrypt(t, { plaintext: pt, aad });
        lat.push(msNow() - s);
      }
      lat.sort((a, b) => a - b);
      const hot: number[] = [];
      for (let i = 0; i < 20_000; i++) {
        const s = msNow();
        await kb.encrypt(tref(`l${i % Math.min(1000, NL)}`), { plaintext: pt, aad });
        hot.push(msNow() - s);
      }
      hot.sort((a, b) => a - b);
      global.gc?.();
      const rss1 = process.memoryUsage().rss;
      const heap1 = process.memoryUsage().heapUsed;
      rows.push({
        phase: `${NL} tenants`,
        metric: 'JS heap growth',
        value: (heap1 - heap0) / 2 ** 20,
        unit: 'MiB',
        note: global.gc ? 'after full GC' : 'no --expose-gc: includes garbage',
      });
      rows.push({
        phase: `${NL} tenants`,
        metric: 'encrypt p50 (random tenant, mostly cold)',
        value: pct(lat, 50) * 1000,
        unit: 'us',
      });
      rows.push({
        phase: `${NL} tenants`,
        metric: 'encrypt p99 (random tenant, mostly cold)',
        value: pct(lat, 99) * 1000,
        unit: 'us',
      });
      rows.push({
        phase: `${NL} tenants`,
        metric: 'encrypt p50 (1,000 hot tenants)',
        value: pct(hot, 50) * 1000,
        unit: 'us',
      });
      rows.push({
        phase: `${NL} tenants`,
        metric: 'encrypt p99 (1,000 hot tenants)',
        value: pct(hot, 99) * 1000,
        unit: 'us',
      });
      rows.push({
        phase: `${NL} tenants`,
        metric: 'RSS growth',
        value: (rss1 - rss0) / 2 ** 20,
        unit: 'MiB',
        note: 'caches: 10k keys, 20k metadata rows, 256 open files',
      });
    },
  );
}

if (args.json) {
  process.stdout.write(
    `${JSON.stringify({ bench: 'hierarchy', node: process.version, at: new Date().toISOString(), rows }, null, 2)}\n`,
  );
} else {
  const fmt = (n: number | undefined): string =>
    n === undefined ? '' : n >= 100 ? n.toFixed(0) : n.toFixed(2);
  log('| phase | metric | value | unit | ceiling (same run) | ratio | note |');
  log('| --- | --- | ---: | --- | ---: | ---: | --- |');
  for (const r of rows)
    log(
      `| ${r.phase} | ${r.metric} | ${fmt(r.value)} | ${r.unit} | ${fmt(r.ceiling)} | ${r.ratio === undefined ? '' : `${(r.ratio * 100).toFixed(0)}%`} | ${r.note ?? ''} |`,
    );
}
