// Review M5 / reproduction E9, on real SoftHSM2 and real SQLite files: whoever can write a tenant
// file swaps a key's stored public key (or any other column of its row). Before, Verify, JWKS,
// Encapsulate, SealBox and GetPublicKey followed the attacker's key; now every Keys call checks
// the row against its wrapped private key (0x13 binds the row) and refuses with KEY_INTEGRITY.
// Also: enabling/disabling a version reseals the row; legacy 0x11 rows keep working, are checked
// against their private key and upgraded to 0x13 at first use; a TEK rotation keeps 0x13 rows.
import assert from 'node:assert/strict';
import { cpSync, readdirSync } from 'node:fs';
import { generateKeyPairSync, sign as nodeSign } from 'node:crypto';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import type { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { AsymmetricRuntime } from '../../daemon/src/keys/asymmetric-key-material.ts';
import { unwrapRowSecret } from '../../daemon/src/keys/asymmetric-key-binding.ts';
import type { AsymmetricKeyRow, AsymmetricKeyType } from '../../daemon/src/keys/asymmetric-key-store.ts';
import type { KeyOwner } from '../../daemon/src/keys/asymmetric-key-api.ts';
import { LiboqsEngine } from '../../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter } from '../../daemon/src/pqc/pqc-router.ts';
import { sealBox } from '../../daemon/src/pqc/hpke-sealed-box.ts';
import {
  deriveTek,
  unframeWrappedTek,
  unwrapCek,
  wrapTenantKey,
  WrappedType,
} from '../../daemon/src/wire/wrapped-key-v1.ts';
import { bytes, codeOf, cust, openBroker, openSoftHsm, org, ref, text } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
let rt: AsymmetricRuntime;
let base: string;
const T = ref('acme', 't1');
const C1: KeyOwner = { ...T, customer: cust('c1') };
const none = new Uint8Array(0);
const KEYS: [string, AsymmetricKeyType, KeyOwner][] = [
  ['sig', 'ml-dsa-65', T],
  ['kem', 'ml-kem-768', T],
  ['ed', 'ed25519', T],
  ['ec', 'ecdsa-p256', T],
  ['c1-sig', 'ml-dsa-44', C1],
  ['c1-kem', 'x-wing', C1],
];

const open = (d: string) => openBroker(env.hsm, d, { pqc: { runtime: rt } });
const asym = (k: KeyBroker) => {
  assert.ok(k.asymmetric);
  return k.asymmetric;
};

before(async () => {
  env = await openSoftHsm('kb-rowint');
  rt = new AsymmetricRuntime(
    new PqcRouter([new OpenSslEngine(), await LiboqsEngine.create()], DEFAULT_PQC_ROUTING),
  );
  base = env.dataDir();
  const kb = await open(base);
  try {
    await kb.createOrg(org('acme'));
    await kb.createTenant(T.org, T.tenant);
    await kb.createCustomer(T, cust('c1'));
    // 'sig' has a policy of its own (a usage limit), the others the defaults.
    for (const [id, type, owner] of KEYS)
      await asym(kb).createKey(owner, id, type, id === 'sig' ? { policy: { usageLimit: 1000 } } : {});
    await asym(kb).rotateKey(T, 'sig');
  } finally {
    await kb.close();
  }
});
after(async () => {
  await env.close();
});

function tenantFile(d: string): string {
  const f = readdirSync(join(d, 'tenants/acme')).find((x) => x.startsWith('t1.') && x.endsWith('.db'));
  assert.ok(f, `no tenant file in ${d}`);
  return join(d, 'tenants/acme', f);
}

/** A copy of the base data dir with `sql` run on the tenant file. */
function tampered(sql: string, ...params: unknown[]): string {
  const d = env.dataDir();
  cpSync(base, d, { recursive: true });
  const db = new Database(tenantFile(d), { fileMustExist: true });
  try {
    db.prepare(sql).run(...params);
  } finally {
    db.close();
  }
  return d;
}

async function withBroker<T>(d: string, fn: (kb: KeyBroker) => Promise<T>): Promise<T> {
  const kb = await open(d);
  try {
    return await fn(kb);
  } finally {
    await kb.close();
  }
}

/** Every public-key use of `keyId` (owner `o`), and one private-key use: the error code each gives. */
async function uses(kb: KeyBroker, o: KeyOwner, keyId: string, kind: 'sig' | 'kem') {
  const a = asym(kb);
  const out: Record<string, string> = {
    GetPublicKey: await codeOf(() => a.publicKey(o, keyId)),
    DescribeKey: await codeOf(() => a.describeKey(o, keyId)),
  };
  if (kind === 'sig') {
    out.Verify = await codeOf(() =>
      a.verify(o, keyId, undefined, { message: bytes('m'), signature: new Uint8Array(64) }, none),
    );
    out.GetJwks = await codeOf(() => a.jwks(o));
    out.Sign = await codeOf(() => a.sign(o, keyId, bytes('m'), none));
  } else {
    out.Encapsulate = await codeOf(() => a.encapsulate(o, keyId));
    out.SealBox = await codeOf(() => a.sealBox(o, keyId, bytes('p'), none, none));
    out.Decapsulate = await codeOf(() => a.decapsulate(o, keyId, undefined, new Uint8Array(1088)));
  }
  return out;
}
const all = (r: Record<string, string>, code: string) =>
  Object.fromEntries(Object.keys(r).map((k) => [k, code]));

test('E9: a swapped public key is refused by Verify, JWKS, Encapsulate, SealBox and GetPublicKey; Sign still refuses', async () => {
  const evilSig = generateKeyPairSync('ml-dsa-65');
  const evilKem = generateKeyPairSync('ml-kem-768');
  const d = tampered(
    "UPDATE tenant_keys SET public_key = CASE key_id WHEN 'sig' THEN ? ELSE ? END WHERE key_id IN ('sig', 'kem')",
    evilSig.publicKey.export({ format: 'raw-public' }),
    evilKem.publicKey.export({ format: 'raw-public' }),
  );
  await withBroker(d, async (kb) => {
    const a = asym(kb);
    const msg = bytes('pay 1,000,000 to mallory');
    const forged = nodeSign(null, msg, evilSig.privateKey);
    assert.equal(
      await codeOf(() => a.verify(T, 'sig', undefined, { message: msg, signature: forged }, none)),
      'KEY_INTEGRITY',
      'Verify of the attacker signature',
    );
    assert.equal(
      await codeOf(() => a.verify(T, 'sig', 2, { message: msg, signature: forged }, none)),
      'KEY_INTEGRITY',
      'Verify naming the version',
    );
    assert.equal(await codeOf(() => a.jwks(T)), 'KEY_INTEGRITY', 'JWKS');
    assert.equal(await codeOf(() => a.encapsulate(T, 'kem')), 'KEY_INTEGRITY', 'Encapsulate');
    assert.equal(await codeOf(() => a.encapsulateBatch(T, 'kem', 2)), 'KEY_INTEGRITY', 'EncapsulateBatch');
    assert.equal(
      await codeOf(() => a.sealBox(T, 'kem', bytes('secret'), none, none)),
      'KEY_INTEGRITY',
      'SealBox',
    );
    assert.equal(await codeOf(() => a.publicKey(T, 'sig')), 'KEY_INTEGRITY', 'GetPublicKey sig');
    assert.equal(await codeOf(() => a.publicKey(T, 'kem')), 'KEY_INTEGRITY', 'GetPublicKey kem');
    assert.equal(await codeOf(() => a.sign(T, 'sig', msg, none)), 'KEY_INTEGRITY', 'Sign');
    assert.equal(await codeOf(() => a.listKeys(T)), 'KEY_INTEGRITY', 'ListKeys');
    // The error says what is wrong, and names no key byte.
    const err = await a
      .publicKey(T, 'kem')
      .catch((e: unknown) => e as { status: number; safeMessage: string });
    assert.equal((err as { status: number }).status, 15, 'DATA_LOSS');
    assert.equal(
      (err as { safeMessage: string }).safeMessage,
      'stored key failed its integrity check: key kem version 1',
    );
    // Untouched keys of the tenant keep working.
    const e = await a.encapsulate(T, 'ed').catch((x: unknown) => x);
    assert.equal(
      (e as { code?: string }).code,
      'INVALID_ARGUMENT',
      'ed25519 is a signing key (the row loads)',
    );
    const s = await a.sign(T, 'ed', msg, none);
    assert.ok((await a.verify(T, 'ed', undefined, { message: msg, signature: s.signature }, none)).valid);
  });
});

test('tamper loop: an edit of any covered column of a row is refused (tenant and customer keys)', async () => {
  const evil = generateKeyPairSync('ml-dsa-44').publicKey.export({ format: 'raw-public' });
  // [what, SQL on the row, owner and key id to call, kind of key, expected code]
  const cases: [string, string, KeyOwner, string, 'sig' | 'kem', string][] = [
    [
      'public_key',
      "UPDATE tenant_keys SET public_key = ? WHERE key_id = 'c1-sig'",
      C1,
      'c1-sig',
      'sig',
      'KEY_INTEGRITY',
    ],
    [
      'public_key truncated',
      "UPDATE tenant_keys SET public_key = substr(public_key, 1, 100) WHERE key_id = 'kem'",
      T,
      'kem',
      'kem',
      'KEY_INTEGRITY',
    ],
    [
      'alg (same size class)',
      "UPDATE tenant_keys SET alg = 'ml-dsa-87' WHERE key_id = 'sig'",
      T,
      'sig',
      'sig',
      'KEY_INTEGRITY',
    ],
    [
      'alg (kem -> other kem)',
      "UPDATE tenant_keys SET alg = 'ml-kem-1024' WHERE key_id = 'kem'",
      T,
      'kem',
      'kem',
      'KEY_INTEGRITY',
    ],
    [
      'state (enabled -> disabled)',
      "UPDATE tenant_keys SET state = 'disabled' WHERE key_id = 'sig' AND version = 1",
      T,
      'sig',
      'sig',
      'KEY_INTEGRITY',
    ],
    [
      'created_at',
      "UPDATE tenant_keys SET created_at = '2000-01-01T00:00:00.000Z' WHERE key_id = 'ed'",
      T,
      'ed',
      'sig',
      'KEY_INTEGRITY',
    ],
    [
      'meta (HSM label)',
      `UPDATE tenant_keys SET meta = '{"hsmLabel":"kb-ak-000000000000000000000000"}' WHERE key_id = 'ec'`,
      T,
      'ec',
      'sig',
      'KEY_INTEGRITY',
    ],
    [
      'meta added to a software key',
      `UPDATE tenant_keys SET meta = '{"hsmLabel":"x"}' WHERE key_id = 'ed'`,
      T,
      'ed',
      'sig',
      'KEY_INTEGRITY',
    ],
    [
      'version renumbered',
      "UPDATE tenant_keys SET version = 7 WHERE key_id = 'ed'",
      T,
      'ed',
      'sig',
      'KEY_INTEGRITY',
    ],
    [
      'key_id renamed (the new name)',
      "UPDATE tenant_keys SET key_id = 'renamed' WHERE key_id = 'ed'",
      T,
      'renamed',
      'sig',
      'KEY_INTEGRITY',
    ],
    [
      'tek_version',
      "UPDATE tenant_keys SET tek_version = 2 WHERE key_id = 'ed'",
      T,
      'ed',
      'sig',
      'DECRYPTION_FAILED',
    ],
    [
      'customer (moved to the tenant)',
      "UPDATE tenant_keys SET customer = '', tek_version = 1, cek_version = 0 WHERE key_id = 'c1-kem'",
      T,
      'c1-kem',
      'kem',
      'KEY_INTEGRITY',
    ],
    [
      'cek_version',
      "UPDATE tenant_keys SET cek_version = 2 WHERE key_id = 'c1-kem'",
      C1,
      'c1-kem',
      'kem',
      'DECRYPTION_FAILED',
    ],
    [
      'policy: min_dec lowered',
      "UPDATE tenant_key_policies SET min_dec = 0 WHERE key_id = 'kem'",
      T,
      'kem',
      'kem',
      'KEY_INTEGRITY',
    ],
    [
      'policy: rotation period changed',
      "UPDATE tenant_key_policies SET rotation_period_s = 1 WHERE key_id = 'c1-sig'",
      C1,
      'c1-sig',
      'sig',
      'KEY_INTEGRITY',
    ],
    [
      'policy row deleted (defaults)',
      "DELETE FROM tenant_key_policies WHERE key_id = 'sig'",
      T,
      'sig',
      'sig',
      'KEY_INTEGRITY',
    ],
    [
      'wrapped flipped',
      "UPDATE tenant_keys SET wrapped = zeroblob(length(wrapped)) WHERE key_id = 'kem'",
      T,
      'kem',
      'kem',
      'KEY_INTEGRITY',
    ],
    [
      'wrapped from another key',
      "UPDATE tenant_keys SET wrapped = (SELECT wrapped FROM tenant_keys WHERE key_id = 'ed') WHERE key_id = 'sig' AND version = 2",
      T,
      'sig',
      'sig',
      'KEY_INTEGRITY',
    ],
  ];
  for (const [what, sql, owner, keyId, kind, code] of cases) {
    const d = sql.includes('?') ? tampered(sql, evil) : tampered(sql);
    await withBroker(d, async (kb) => {
      const got = await uses(kb, owner, keyId, kind);
      assert.deepEqual(got, all(got, code), `${what}: every use refused with ${code}`);
    });
  }
});

test('the kind column is not trusted: the purpose comes from alg (bound), so editing kind changes nothing', async () => {
  const d = tampered("UPDATE tenant_keys SET kind = 'kem' WHERE key_id = 'ed'");
  await withBroker(d, async (kb) => {
    const s = await asym(kb).sign(T, 'ed', bytes('m'), none);
    assert.ok(
      (await asym(kb).verify(T, 'ed', undefined, { message: bytes('m'), signature: s.signature }, none))
        .valid,
    );
    assert.equal(await codeOf(() => asym(kb).encapsulate(T, 'ed')), 'INVALID_ARGUMENT');
  });
});

test('SetKeyPolicy seals every version again with the new policy; an edit of it in the file is refused', async () => {
  const d = env.dataDir();
  cpSync(base, d, { recursive: true });
  await withBroker(d, async (kb) => {
    const a = asym(kb);
    const info = await a.setKeyPolicy(T, 'sig', {
      minEncryptVersion: 2,
      minDecryptVersion: 2,
      usageLimit: 100,
    });
    assert.deepEqual([info.policy.minDecryptVersion, info.policy.usageLimit], [2, 100]);
    assert.equal(
      await codeOf(() => a.verify(T, 'sig', 1, { message: bytes('m'), signature: new Uint8Array(64) }, none)),
      'VERSION_BELOW_MINIMUM',
    );
  });
  await withBroker(d, async (kb) => {
    const a = asym(kb);
    assert.equal(
      (await a.describeKey(T, 'sig')).policy.minDecryptVersion,
      2,
      'cold: the sealed policy checks',
    );
    const s = await a.sign(T, 'sig', bytes('m'), none);
    assert.ok(
      (await a.verify(T, 'sig', undefined, { message: bytes('m'), signature: s.signature }, none)).valid,
    );
  });
  const db = new Database(tenantFile(d), { fileMustExist: true });
  db.prepare("UPDATE tenant_key_policies SET min_dec = 1 WHERE key_id = 'sig'").run();
  db.close();
  await withBroker(d, async (kb) => {
    const got = await uses(kb, T, 'sig', 'sig');
    assert.deepEqual(got, all(got, 'KEY_INTEGRITY'), 'min_dec lowered back to 1 in the file');
  });
});

test('the untampered store: every use works; disabling and enabling a version reseals its row', async () => {
  const d = env.dataDir();
  cpSync(base, d, { recursive: true });
  await withBroker(d, async (kb) => {
    const a = asym(kb);
    const s1 = await a.sign(T, 'sig', bytes('m'), none);
    assert.equal(s1.version, 2);
    assert.ok((await a.verify(T, 'sig', 2, { message: bytes('m'), signature: s1.signature }, none)).valid);
    assert.equal((await a.jwks(T)).keys.length, 4, 'sig v1, v2, ed, ec');
    const box = await a.sealBox(C1, 'c1-kem', bytes('boxed'), none, none);
    assert.equal(text((await a.openBox(C1, 'c1-kem', undefined, box.sealed, none, none)).plaintext), 'boxed');
    await a.setKeyVersionEnabled(T, 'sig', 1, false);
    assert.equal((await a.describeKey(T, 'sig')).versions[0]?.state, 'disabled');
    assert.equal(
      await codeOf(() => a.verify(T, 'sig', 1, { message: bytes('m'), signature: s1.signature }, none)),
      'DISABLED',
    );
    assert.equal((await a.jwks(T)).keys.length, 3, 'the disabled version leaves the JWKS');
  });
  // Reopened cold: the resealed row checks; enabling it again reseals it once more.
  await withBroker(d, async (kb) => {
    const a = asym(kb);
    assert.equal((await a.describeKey(T, 'sig')).versions[0]?.state, 'disabled');
    await a.setKeyVersionEnabled(T, 'sig', 1, true);
  });
  await withBroker(d, async (kb) => {
    assert.equal((await asym(kb).describeKey(T, 'sig')).versions[0]?.state, 'enabled');
    assert.equal((await asym(kb).jwks(T)).keys.length, 4);
  });
  // Re-enabling by editing the file instead is refused (the row says enabled, the seal disabled).
  const db = new Database(tenantFile(d), { fileMustExist: true });
  db.prepare("UPDATE tenant_keys SET state = 'disabled' WHERE key_id = 'sig' AND version = 1").run();
  db.close();
  await withBroker(d, async (kb) => {
    assert.equal(await codeOf(() => asym(kb).describeKey(T, 'sig')), 'KEY_INTEGRITY');
  });
});

/** The effective TEK of t1 (as the broker derives it), from the registry and the HSM. */
async function effectiveTek(d: string, version: number): Promise<Uint8Array> {
  const db = new Database(join(d, 'registry.db'), { readonly: true });
  try {
    const row = db
      .prepare(
        `SELECT t.wrapped AS wrapped, o.hsm_label AS label FROM tek_versions t JOIN oek_versions o
           ON o.org = t.org AND o.version = t.oek_version WHERE t.org = ? AND t.tenant = ? AND t.version = ?`,
      )
      .get('acme', 't1', version) as { wrapped: Buffer; label: string };
    const root = await env.hsm.findKey(row.label, 'root');
    assert.ok(root);
    const raw = await env.hsm.unwrapKey(root, unframeWrappedTek('aes-kwp', row.wrapped));
    return deriveTek(raw, 'acme', 't1', version);
  } finally {
    db.close();
  }
}

type Raw = Record<string, unknown>;
const asRow = (r: Raw): AsymmetricKeyRow => ({
  keyId: r.key_id as string,
  version: r.version as number,
  type: r.alg as AsymmetricKeyType,
  customer: r.customer as string,
  tekVersion: r.tek_version as number,
  cekVersion: r.cek_version as number,
  uses: r.uses as number,
  wrapped: new Uint8Array(r.wrapped as Buffer),
  publicKey: new Uint8Array(r.public_key as Buffer),
  state: r.state as 'enabled',
  createdAt: r.created_at as string,
  meta: JSON.parse(r.meta as string) as AsymmetricKeyRow['meta'],
});

/**
 * Turn every row of a data dir into the legacy 0x11 form the broker wrote before 0x13 (customer
 * keys under the CEK itself), as a store made by an older broker holds them.
 */
async function downgrade(d: string): Promise<void> {
  const tek = await effectiveTek(d, 1);
  const db = new Database(tenantFile(d), { fileMustExist: true });
  try {
    for (const raw of db.prepare('SELECT * FROM tenant_keys').all() as Raw[]) {
      const r = asRow(raw);
      let kek = tek;
      if (r.customer !== '') {
        const c = db
          .prepare('SELECT * FROM cek_versions WHERE customer = ? AND version = ?')
          .get(r.customer, r.cekVersion) as Raw;
        const id = {
          org: 'acme',
          tenant: 't1',
          customer: r.customer,
          cekVersion: r.cekVersion,
          tekVersion: c.tek_version as number,
        };
        kek = unwrapCek(tek, id, new Uint8Array(c.wrapped as Buffer));
      }
      const p = db.prepare('SELECT * FROM tenant_key_policies WHERE key_id = ?').get(r.keyId) as Raw;
      const policy = {
        rotationPeriodS: p.rotation_period_s as number,
        usageLimit: p.usage_limit as number,
        minEnc: p.min_enc as number,
        minDec: p.min_dec as number,
      };
      const { secret } = unwrapRowSecret(kek, { org: 'acme', tenant: 't1' }, r, policy);
      const wrapVersion = r.customer === '' ? r.tekVersion : r.cekVersion;
      const legacy = wrapTenantKey(
        kek,
        { org: 'acme', tenant: 't1', keyId: r.keyId, keyVersion: r.version, tekVersion: wrapVersion },
        secret,
      );
      db.prepare('UPDATE tenant_keys SET wrapped = ? WHERE key_id = ? AND version = ?').run(
        legacy,
        r.keyId,
        r.version,
      );
    }
  } finally {
    db.close();
  }
}

function formats(d: string): Record<string, number> {
  const db = new Database(tenantFile(d), { readonly: true });
  try {
    const rows = db
      .prepare('SELECT key_id, version, wrapped FROM tenant_keys ORDER BY key_id, version')
      .all() as Raw[];
    return Object.fromEntries(
      rows.map((r) => [`${r.key_id as string}.${r.version as number}`, (r.wrapped as Buffer)[1] as number]),
    );
  } finally {
    db.close();
  }
}

test('legacy 0x11 rows: they keep working, are upgraded to 0x13 at first use; a swapped public key in one is refused and not upgraded', async () => {
  const d = env.dataDir();
  cpSync(base, d, { recursive: true });
  await downgrade(d);
  assert.ok(
    Object.values(formats(d)).every((t) => t === WrappedType.tenantKey),
    'every row is 0x11 now',
  );
  // An older store, with the public key of one legacy row swapped.
  const evil = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' });
  const db = new Database(tenantFile(d), { fileMustExist: true });
  db.prepare("UPDATE tenant_keys SET public_key = ? WHERE key_id = 'ed'").run(
    Buffer.from(evil.x as string, 'base64url'),
  );
  db.close();
  await withBroker(d, async (kb) => {
    const a = asym(kb);
    for (const [id, , owner] of KEYS) {
      if (id === 'ed') continue;
      await a.describeKey(owner, id);
    }
    const s = await a.sign(T, 'sig', bytes('m'), none);
    assert.ok(
      (await a.verify(T, 'sig', undefined, { message: bytes('m'), signature: s.signature }, none)).valid,
    );
    const box = await a.sealBox(C1, 'c1-kem', bytes('legacy'), none, none);
    assert.equal(
      text((await a.openBox(C1, 'c1-kem', undefined, box.sealed, none, none)).plaintext),
      'legacy',
    );
    const got = await uses(kb, T, 'ed', 'sig');
    assert.deepEqual(got, all(got, 'KEY_INTEGRITY'), 'the legacy row with a swapped public key');
  });
  const f = formats(d);
  assert.equal(f['ed.1'], WrappedType.tenantKey, 'the refused row is not upgraded');
  for (const [k, t] of Object.entries(f))
    if (k !== 'ed.1') assert.equal(t, WrappedType.boundTenantKey, `${k} upgraded to 0x13`);
});

test('a TEK rotation rewraps 0x13 rows as 0x13 (and legacy rows as 0x11); both keep working', async () => {
  const d = env.dataDir();
  cpSync(base, d, { recursive: true });
  await downgrade(d);
  await withBroker(d, async (kb) => {
    await asym(kb).describeKey(T, 'sig'); // upgrades sig.1 and sig.2 only
    await kb.rotateTenantKey(T);
  });
  const f = formats(d);
  assert.deepEqual(
    [f['sig.1'], f['sig.2'], f['kem.1']],
    [WrappedType.boundTenantKey, WrappedType.boundTenantKey, WrappedType.tenantKey],
  );
  assert.equal(f['c1-kem.1'], WrappedType.tenantKey, 'customer rows are not touched by a TEK rotation');
  await withBroker(d, async (kb) => {
    const a = asym(kb);
    for (const [id, , owner] of KEYS) await a.describeKey(owner, id);
    const s = await a.sign(T, 'sig', bytes('after'), none);
    assert.ok(
      (await a.verify(T, 'sig', undefined, { message: bytes('after'), signature: s.signature }, none)).valid,
    );
    const e = await a.encapsulate(T, 'kem');
    const back = await a.decapsulate(T, 'kem', e.version, e.cipherText);
    assert.deepEqual(back.sharedSecret, e.sharedSecret);
    assert.equal(
      text((await a.openBox(C1, 'c1-kem', undefined, await sealOffline(a, C1), none, none)).plaintext),
      'offline',
    );
  });
  const g = formats(d);
  assert.ok(
    Object.values(g).every((t) => t === WrappedType.boundTenantKey),
    `every row is 0x13 after its first use: ${JSON.stringify(g)}`,
  );
});

async function sealOffline(a: NonNullable<KeyBroker['asymmetric']>, o: KeyOwner): Promise<Uint8Array> {
  const pk = await a.publicKey(o, 'c1-kem');
  return sealBox('x-wing', pk.publicKey, bytes('offline'));
}
