// Key import (bring your own key) on real SoftHSM2 and real SQLite files: NIST-format keys made by
// @noble (seed, PKCS#8 seed / seed+expanded) wrapped as an outside tool does (ML-KEM-768 or
// RSA-OAEP-3072 + AES-KWP), imported, then checked against noble (signatures verify with noble,
// noble's encapsulations decapsulate through the broker); every tampered, truncated, misdirected,
// expired or reused blob is one clear error and stores nothing; keys failing their checks are
// refused; and a tenant shred makes an imported key (and an open job) useless also from a restored
// copy of the tenant's files.
import assert from 'node:assert/strict';
import { cpSync, rmSync } from 'node:fs';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js';
import { ml_dsa44, ml_dsa65, ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem1024, ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { AsymmetricRuntime } from '../../daemon/src/keys/asymmetric-key-material.ts';
import type { AsymmetricKeyType } from '../../daemon/src/keys/asymmetric-key-store.ts';
import type { ImportJob } from '../../daemon/src/keys/key-import.ts';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { LiboqsEngine } from '../../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter } from '../../daemon/src/pqc/pqc-router.ts';
import {
  ed25519Pkcs8,
  expectedKdfInfo,
  externalKey,
  pkcs8,
  wrapForJob,
  type ImportAlg,
} from '../support/key-importer.ts';
import { bytes, codeOf, cust, openBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let kb: KeyBroker;
let dir: string;
let rt: AsymmetricRuntime;
let nowMs = Date.parse('2026-12-07T12:00:00Z');
const A = ref('acme', 'tenant-a');
const B = ref('acme', 'tenant-b');
const none = new Uint8Array(0);

const open = (d: string) => openBroker(env.hsm, d, { pqc: { runtime: rt }, clock: () => new Date(nowMs) });
const asym = (k: KeyBroker = kb) => {
  assert.ok(k.asymmetric);
  return k.asymmetric;
};
const edPublic = (seed: Uint8Array) =>
  new Uint8Array(
    createPublicKey(createPrivateKey({ key: ed25519Pkcs8(seed), format: 'der', type: 'pkcs8' })).export({
      format: 'der',
      type: 'spki',
    }),
  ).subarray(12);
const forImporter = (j: ImportJob) => ({
  wrapping: j.wrapping === 'ml-kem-768-aes-kwp' ? ('ml-kem' as const) : ('rsa' as const),
  publicKey: j.publicKey,
  kdfInfo: j.kdfInfo,
});
const keyCount = async (r = A) => (await asym().listKeys(r)).length;

before(async () => {
  env = await openSoftHsm('kb-import');
  dir = env.dataDir();
  rt = new AsymmetricRuntime(
    new PqcRouter([new OpenSslEngine(), await LiboqsEngine.create()], DEFAULT_PQC_ROUTING),
  );
  kb = await open(dir);
  await kb.createOrg(org('acme'));
  await kb.createTenant(A.org, A.tenant);
  await kb.createTenant(B.org, B.tenant);
});
after(async () => {
  await kb.close();
  await env.close();
});

/** Check an imported key against noble: its public key, then a signature or a decapsulation. */
async function checkAgainstNoble(keyId: string, alg: ImportAlg, publicKey: Uint8Array, owner = A) {
  const exported = await asym().publicKey(owner, keyId);
  assert.deepEqual(
    Buffer.from(exported.publicKey),
    Buffer.from(publicKey),
    `${keyId}: public key as derived by noble`,
  );
  const msg = bytes(`signed by imported ${keyId}`);
  switch (alg) {
    case 'ml-dsa-44':
    case 'ml-dsa-65':
    case 'ml-dsa-87': {
      const ctx = bytes('import-ctx');
      const s = await asym().sign(owner, keyId, msg, ctx);
      const dsa = { 'ml-dsa-44': ml_dsa44, 'ml-dsa-65': ml_dsa65, 'ml-dsa-87': ml_dsa87 }[alg];
      assert.ok(
        dsa.verify(s.signature, msg, publicKey, { context: ctx }),
        `${keyId}: noble verifies the broker's signature`,
      );
      return;
    }
    case 'ed25519': {
      const s = await asym().sign(owner, keyId, msg, none);
      const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), publicKey]);
      const { verify } = await import('node:crypto');
      assert.ok(
        verify(null, msg, { key: spki, format: 'der', type: 'spki' }, s.signature),
        `${keyId}: Ed25519 verifies`,
      );
      return;
    }
    case 'ml-kem-768':
    case 'ml-kem-1024':
    case 'x-wing': {
      const kem = { 'ml-kem-768': ml_kem768, 'ml-kem-1024': ml_kem1024, 'x-wing': ml_kem768_x25519 }[alg];
      const e = kem.encapsulate(publicKey);
      const d = await asym().decapsulate(owner, keyId, undefined, e.cipherText);
      assert.deepEqual(
        Buffer.from(d.sharedSecret),
        Buffer.from(e.sharedSecret),
        `${keyId}: broker decapsulates noble's ciphertext`,
      );
    }
  }
}

interface FormCase {
  readonly form: string;
  readonly algs: readonly ImportAlg[];
  readonly encode: (alg: ImportAlg, k: ReturnType<typeof externalKey>) => Uint8Array;
}
const PQ: readonly ImportAlg[] = ['ml-kem-768', 'ml-kem-1024', 'ml-dsa-44', 'ml-dsa-65', 'ml-dsa-87'];
const FORMS: readonly FormCase[] = [
  { form: 'raw seed', algs: [...PQ, 'x-wing', 'ed25519'], encode: (_a, k) => k.seed },
  { form: 'PKCS#8 seed', algs: PQ, encode: (a, k) => pkcs8(a, 'seed', k.seed, k.expanded as Uint8Array) },
  {
    form: 'PKCS#8 seed + NIST expanded key',
    algs: PQ,
    encode: (a, k) => pkcs8(a, 'both', k.seed, k.expanded as Uint8Array),
  },
  { form: 'PKCS#8 Ed25519', algs: ['ed25519'], encode: (_a, k) => ed25519Pkcs8(k.seed) },
];

describe('import every algorithm and form, checked against @noble', () => {
  let n = 0;
  for (const f of FORMS)
    for (const alg of f.algs)
      for (const wrapping of ['ml-kem-768-aes-kwp', 'rsa-oaep-3072-sha256-aes-kwp'] as const) {
        // RSA jobs cost a 3072-bit keygen each: one form per algorithm is enough for that path.
        if (wrapping !== 'ml-kem-768-aes-kwp' && f.form !== 'raw seed') continue;
        test(`${alg}, ${f.form}, ${wrapping}`, async () => {
          const keyId = `imp-${n++}`;
          const k = externalKey(alg, edPublic);
          const job = await asym().createImportJob(A, keyId, alg as AsymmetricKeyType, wrapping);
          if (wrapping === 'ml-kem-768-aes-kwp')
            assert.deepEqual(
              Buffer.from(job.kdfInfo),
              expectedKdfInfo([job.jobId, 'acme', 'tenant-a', '', keyId, alg]),
              'kdf_info as documented',
            );
          const info = await asym().importKey(
            A,
            job.jobId,
            wrapForJob(forImporter(job), f.encode(alg, k)),
            k.publicKey,
          );
          assert.equal(info.type, alg);
          assert.equal(info.primaryVersion, 1);
          await checkAgainstNoble(keyId, alg, k.publicKey);
        });
      }
});

test('Node-exported PKCS#8 (seed and expanded) of ML-KEM-768 equals the hand-built DER and imports', async () => {
  const k = externalKey('ml-kem-768', edPublic);
  const node = createPrivateKey({
    key: Buffer.from(k.seed),
    format: 'raw-seed',
    asymmetricKeyType: 'ml-kem-768',
  }).export({
    format: 'der',
    type: 'pkcs8',
  });
  assert.deepEqual(node, pkcs8('ml-kem-768', 'both', k.seed, k.expanded as Uint8Array));
  const job = await asym().createImportJob(A, 'node-p8', 'ml-kem-768', 'ml-kem-768-aes-kwp');
  await asym().importKey(A, job.jobId, wrapForJob(forImporter(job), node));
  await checkAgainstNoble('node-p8', 'ml-kem-768', k.publicKey);
});

test('an import into an existing key adds its new primary version; another algorithm is refused', async () => {
  await asym().createKey(A, 'grown', 'ml-dsa-65');
  const k = externalKey('ml-dsa-65', edPublic);
  const job = await asym().createImportJob(A, 'grown', 'ml-dsa-65', 'ml-kem-768-aes-kwp');
  const info = await asym().importKey(A, job.jobId, wrapForJob(forImporter(job), k.seed));
  assert.equal(info.primaryVersion, 2);
  await checkAgainstNoble('grown', 'ml-dsa-65', k.publicKey);
  assert.equal(
    await codeOf(() => asym().createImportJob(A, 'grown', 'ml-kem-768', 'ml-kem-768-aes-kwp')),
    'FAILED_PRECONDITION',
  );
  // The key created with another algorithm after the job was made: refused at import time.
  const late = await asym().createImportJob(A, 'late', 'ml-dsa-44', 'ml-kem-768-aes-kwp');
  await asym().createKey(A, 'late', 'ed25519');
  const k44 = externalKey('ml-dsa-44', edPublic);
  assert.equal(
    await codeOf(() => asym().importKey(A, late.jobId, wrapForJob(forImporter(late), k44.seed))),
    'FAILED_PRECONDITION',
  );
  assert.equal((await asym().describeKey(A, 'late')).type, 'ed25519');
});

test('HSM and composite keys have no import path (refused when the job is made)', async () => {
  for (const t of ['ecdsa-p256', 'composite-mldsa65-ecdsa-p256'] as const)
    assert.equal(
      await codeOf(() => asym().createImportJob(A, 'hsm-imp', t, 'ml-kem-768-aes-kwp')),
      'INVALID_ARGUMENT',
      t,
    );
});

describe('refused keys: nothing stored', () => {
  const cases: {
    name: string;
    alg: ImportAlg;
    payload: (k: ReturnType<typeof externalKey>) => Uint8Array;
    pk?: (k: ReturnType<typeof externalKey>) => Uint8Array;
    re: RegExp;
  }[] = [
    {
      name: 'NIST expanded ML-KEM dk without its seed',
      alg: 'ml-kem-768',
      payload: (k) => k.expanded as Uint8Array,
      re: /without its seed/,
    },
    {
      name: 'NIST expanded ML-DSA sk without its seed',
      alg: 'ml-dsa-65',
      payload: (k) => k.expanded as Uint8Array,
      re: /without its seed/,
    },
    {
      name: 'PKCS#8 expanded-only ML-DSA',
      alg: 'ml-dsa-65',
      payload: (k) => pkcs8('ml-dsa-65', 'expanded', k.seed, k.expanded as Uint8Array),
      re: /without its seed/,
    },
    {
      name: 'mismatched public key',
      alg: 'ml-dsa-44',
      payload: (k) => k.seed,
      pk: () => externalKey('ml-dsa-44', edPublic).publicKey,
      re: /public key does not match/,
    },
    {
      name: 'ML-KEM expanded key failing the FIPS 203 hash check (H(ek) altered)',
      alg: 'ml-kem-768',
      payload: (k) => {
        const bad = Uint8Array.from(k.expanded as Uint8Array);
        bad[2400 - 40] = (bad[2400 - 40] as number) ^ 1; // inside H(ek), bytes 2336..2367
        return pkcs8('ml-kem-768', 'both', k.seed, bad);
      },
      re: /fails the FIPS 203/,
    },
    {
      name: 'ML-DSA expanded key failing the FIPS 204 check (tr altered)',
      alg: 'ml-dsa-87',
      payload: (k) => {
        const bad = Uint8Array.from(k.expanded as Uint8Array);
        bad[70] = (bad[70] as number) ^ 0x80;
        return pkcs8('ml-dsa-87', 'both', k.seed, bad);
      },
      re: /fails the FIPS 204/,
    },
    {
      name: 'ML-DSA expanded key failing the FIPS 204 check (s1 coefficient out of range)',
      alg: 'ml-dsa-65',
      payload: (k) => {
        const bad = Uint8Array.from(k.expanded as Uint8Array);
        bad[200] = 0xff; // eta = 4: a 4-bit packed value of 15 is outside [0, 8]
        return pkcs8('ml-dsa-65', 'both', k.seed, bad);
      },
      re: /fails the FIPS 204/,
    },
    {
      name: 'ML-KEM expanded key of another seed (consistent in itself)',
      alg: 'ml-kem-1024',
      payload: (k) =>
        pkcs8('ml-kem-1024', 'both', k.seed, externalKey('ml-kem-1024', edPublic).expanded as Uint8Array),
      re: /does not match its seed/,
    },
    {
      name: 'ML-DSA seed of a wrong length',
      alg: 'ml-dsa-65',
      payload: (k) => k.seed.subarray(0, 31),
      re: /imported private key/,
    },
    {
      name: 'X-Wing key of a wrong length',
      alg: 'x-wing',
      payload: (k) => Buffer.concat([k.seed, Buffer.alloc(1)]),
      re: /32-byte seed/,
    },
    {
      name: 'Ed25519 PKCS#8 for an ML-KEM job',
      alg: 'ml-kem-768',
      payload: () => ed25519Pkcs8(new Uint8Array(32)),
      re: /not ml-kem-768|PKCS#8/,
    },
  ];
  for (const c of cases)
    test(c.name, async () => {
      const keyId = `refused-${cases.indexOf(c)}`;
      const k = externalKey(c.alg, edPublic);
      const job = await asym().createImportJob(A, keyId, c.alg as AsymmetricKeyType, 'ml-kem-768-aes-kwp');
      const before = await keyCount();
      await assert.rejects(
        asym().importKey(A, job.jobId, wrapForJob(forImporter(job), c.payload(k)), c.pk?.(k)),
        (e: { code?: string; message?: string }) =>
          e.code === 'INVALID_ARGUMENT' && c.re.test(e.message ?? ''),
      );
      assert.equal(await keyCount(), before, 'nothing stored');
      // The job is not used up by a refused key: the right key still imports.
      await asym().importKey(A, job.jobId, wrapForJob(forImporter(job), k.seed));
    });
});

test('tamper loop: bit flips, truncations, wrong job, expired job, reused job — one clear error each, nothing stored', async () => {
  const k = externalKey('ml-dsa-44', edPublic);
  const job = await asym().createImportJob(A, 'tamper', 'ml-dsa-44', 'ml-kem-768-aes-kwp');
  const good = wrapForJob(forImporter(job), k.seed);
  const before = await keyCount();
  const codes = new Map<string, number>();
  const note = (c: string) => codes.set(c, (codes.get(c) ?? 0) + 1);
  // Every bit of the KWP part, every 8th bit of the ML-KEM ciphertext (implicit rejection: any
  // change there gives an unrelated KEK).
  for (let bit = 0; bit < good.length * 8; bit++) {
    if (bit < 1088 * 8 && (bit & 7) !== ((bit >> 3) & 7)) continue;
    const t = Buffer.from(good);
    t[bit >> 3] = (t[bit >> 3] as number) ^ (1 << (bit & 7));
    note(await codeOf(() => asym().importKey(A, job.jobId, t)));
  }
  for (let n = 0; n < good.length; n += n < 1100 ? 37 : 1)
    note(await codeOf(() => asym().importKey(A, job.jobId, good.subarray(0, n))));
  note(await codeOf(() => asym().importKey(A, job.jobId, Buffer.concat([good, Buffer.alloc(8)]))));
  assert.deepEqual([...codes.keys()], ['DECRYPTION_FAILED'], 'every tampered blob: the one opaque error');
  // A blob made for another job of the same key does not open under this one.
  const other = await asym().createImportJob(A, 'tamper', 'ml-dsa-44', 'ml-kem-768-aes-kwp');
  assert.equal(await codeOf(() => asym().importKey(A, other.jobId, good)), 'DECRYPTION_FAILED', 'wrong job');
  // The same blob under another tenant: no such job there.
  assert.equal(await codeOf(() => asym().importKey(B, job.jobId, good)), 'NOT_FOUND', 'tenant B with A job');
  assert.equal(
    await codeOf(() => asym().importKey({ ...A, customer: cust('default') }, job.jobId, good)),
    'NOT_FOUND',
    'under a customer',
  );
  assert.equal(await keyCount(), before, 'nothing stored by any tampered blob');
  await asym().importKey(A, job.jobId, good);
  assert.equal(await codeOf(() => asym().importKey(A, job.jobId, good)), 'NOT_FOUND', 'reused job');
  assert.equal((await asym().describeKey(A, 'tamper')).versions.length, 1, 'one import stored one version');
  // Expiry: a job past its ttl is refused (and deleted).
  const short = await asym().createImportJob(A, 'expiring', 'ml-dsa-44', 'ml-kem-768-aes-kwp', 60);
  const blob = wrapForJob(forImporter(short), k.seed);
  nowMs += 61_000;
  try {
    assert.equal(
      await codeOf(() => asym().importKey(A, short.jobId, blob)),
      'FAILED_PRECONDITION',
      'expired',
    );
    assert.equal(
      await codeOf(() => asym().importKey(A, short.jobId, blob)),
      'NOT_FOUND',
      'expired job deleted',
    );
  } finally {
    nowMs -= 61_000;
  }
  assert.equal(await codeOf(() => asym().describeKey(A, 'expiring')), 'NOT_FOUND');
});

test('bad input: job ids, ttl, algorithms, key ids', async () => {
  const cases: [string, () => Promise<unknown>, string][] = [
    ['job id empty', () => asym().importKey(A, '', new Uint8Array(2000)), 'INVALID_ARGUMENT'],
    ['job id malformed', () => asym().importKey(A, 'ij-xyz', new Uint8Array(2000)), 'INVALID_ARGUMENT'],
    ['job id unknown', () => asym().importKey(A, `ij-${'0'.repeat(32)}`, new Uint8Array(2000)), 'NOT_FOUND'],
    [
      'ttl too short',
      () => asym().createImportJob(A, 'k', 'ml-kem-768', 'ml-kem-768-aes-kwp', 59),
      'INVALID_ARGUMENT',
    ],
    [
      'ttl too long',
      () => asym().createImportJob(A, 'k', 'ml-kem-768', 'ml-kem-768-aes-kwp', 8 * 86400),
      'INVALID_ARGUMENT',
    ],
    [
      'ttl fractional',
      () => asym().createImportJob(A, 'k', 'ml-kem-768', 'ml-kem-768-aes-kwp', 100.5),
      'INVALID_ARGUMENT',
    ],
    [
      'bad key id',
      () => asym().createImportJob(A, 'Bad Id', 'ml-kem-768', 'ml-kem-768-aes-kwp'),
      'INVALID_ARGUMENT',
    ],
    [
      'unknown customer',
      () =>
        asym().createImportJob({ ...A, customer: cust('nobody') }, 'k', 'ml-kem-768', 'ml-kem-768-aes-kwp'),
      'NOT_FOUND',
    ],
  ];
  for (const [name, fn, want] of cases) assert.equal(await codeOf(fn), want, name);
});

test('a customer-level import: the key is the customer key, found only with the customer named', async () => {
  const c = { ...A, customer: cust('importer') };
  await kb.createCustomer(A, cust('importer'));
  const k = externalKey('x-wing', edPublic);
  const job = await asym().createImportJob(c, 'cust-xwing', 'x-wing', 'ml-kem-768-aes-kwp');
  assert.equal(
    await codeOf(() => asym().importKey(A, job.jobId, wrapForJob(forImporter(job), k.seed))),
    'NOT_FOUND',
  );
  await asym().importKey(c, job.jobId, wrapForJob(forImporter(job), k.seed));
  await checkAgainstNoble('cust-xwing', 'x-wing', k.publicKey, c);
  assert.equal(await codeOf(() => asym().describeKey(A, 'cust-xwing')), 'NOT_FOUND');
});

test('destroy tenant: a restored backup opens neither the imported key nor an open job', async () => {
  const T = ref('acme', 'tenant-shred');
  await kb.createTenant(T.org, T.tenant);
  const kem = externalKey('ml-kem-768', edPublic);
  const sig = externalKey('ml-dsa-65', edPublic);
  const j1 = await asym().createImportJob(T, 'imp-kem', 'ml-kem-768', 'ml-kem-768-aes-kwp');
  await asym().importKey(T, j1.jobId, wrapForJob(forImporter(j1), kem.seed));
  const j2 = await asym().createImportJob(T, 'imp-sig', 'ml-dsa-65', 'rsa-oaep-3072-sha256-aes-kwp');
  await asym().importKey(T, j2.jobId, wrapForJob(forImporter(j2), sig.seed));
  const open3 = await asym().createImportJob(T, 'pending', 'ml-dsa-65', 'ml-kem-768-aes-kwp');
  const pendingBlob = wrapForJob(forImporter(open3), externalKey('ml-dsa-65', edPublic).seed);
  const e = ml_kem768.encapsulate(kem.publicKey);
  assert.deepEqual(
    Buffer.from((await asym().decapsulate(T, 'imp-kem', undefined, e.cipherText)).sharedSecret),
    Buffer.from(e.sharedSecret),
  );
  const snap = env.dataDir();
  cpSync(dir, snap, { recursive: true });
  await kb.destroyTenant(T);
  const restored = env.dataDir();
  rmSync(restored, { recursive: true, force: true });
  cpSync(snap, restored, { recursive: true });
  const old = await open(restored);
  try {
    assert.equal(
      await codeOf(() => asym(old).decapsulate(T, 'imp-kem', undefined, e.cipherText)),
      'DECRYPTION_FAILED',
      'imported KEM key from the backup',
    );
    assert.equal(
      await codeOf(() => asym(old).sign(T, 'imp-sig', bytes('forged'), none)),
      'DECRYPTION_FAILED',
      'imported signature key from the backup',
    );
    assert.equal(
      await codeOf(() => asym(old).importKey(T, open3.jobId, pendingBlob)),
      'DECRYPTION_FAILED',
      'open job from the backup',
    );
    assert.equal(await codeOf(() => asym(old).describeKey(T, 'pending')), 'NOT_FOUND');
  } finally {
    await old.close();
  }
});
