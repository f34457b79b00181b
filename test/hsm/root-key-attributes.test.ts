// Review L3 on a real SoftHSM2 2.6.1 token: root keys are wrap-only (no CKA_ENCRYPT/DECRYPT) and
// restricted by CKA_ALLOWED_MECHANISMS to the wrap mechanism (signing keys to their one mechanism)
// where the profile says the token supports it; a key planted under a root label with unsafe
// attributes is refused at first use (HSM_KEY_REFUSED), also by the broker; a root key made by an
// older broker (encrypt/decrypt allowed) still works, with a warning.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import pkcs11js from 'pkcs11js';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KbError } from '../../daemon/src/errors.ts';
import { loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';
import { KeyHandles } from '../../daemon/src/hsm/key-handles.ts';
import type { SessionCtx } from '../../daemon/src/hsm/pkcs11-connection.ts';
import { Pkcs11Hsm } from '../../daemon/src/hsm/pkcs11-hsm.ts';
import { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import type { CustomerId, OrgId, TenantId } from '../../daemon/src/ids.ts';
import { createTestToken, type TestToken } from '../support/softhsm-token.ts';

const P = pkcs11js;
let token: TestToken;
let hsm: Pkcs11Hsm;
const warnings: { obj: object; msg: string }[] = [];
const errors: { obj: object; msg: string }[] = [];

before(async () => {
  token = createTestToken('kb-rootattr');
  hsm = await Pkcs11Hsm.open({
    profile: loadProfile('softhsm2'),
    pin: token.pin,
    tokenLabel: token.label,
    probeIntervalMs: 0,
    logger: {
      info: () => undefined,
      warn: (obj, msg) => warnings.push({ obj, msg }),
      error: (obj, msg) => errors.push({ obj, msg }),
    },
  });
});
after(async () => {
  await hsm.close();
  token.cleanup();
});

const withSession = <T>(fn: (s: SessionCtx, p: pkcs11js.PKCS11) => T): Promise<T> =>
  hsm.connection.withSession((s) => Promise.resolve(fn(s, hsm.connection.pkcs11)));

function find(s: SessionCtx, p: pkcs11js.PKCS11, label: string, cls: number): Buffer {
  p.C_FindObjectsInit(s.handle, [
    { type: P.CKA_CLASS, value: cls },
    { type: P.CKA_LABEL, value: label },
  ]);
  try {
    const [o] = p.C_FindObjects(s.handle, 2);
    assert.ok(o, `no object ${label}`);
    return o;
  } finally {
    p.C_FindObjectsFinal(s.handle);
  }
}

/** Attributes of a key object: booleans, and CKA_ALLOWED_MECHANISMS as a list of numbers. */
const SECRET_ATTRS = [
  'SENSITIVE',
  'EXTRACTABLE',
  'NEVER_EXTRACTABLE',
  'ENCRYPT',
  'DECRYPT',
  'WRAP',
  'UNWRAP',
];
function attrs(label: string, cls = P.CKO_SECRET_KEY, names: readonly string[] = SECRET_ATTRS) {
  return withSession((s, p) => {
    const o = find(s, p, label, cls);
    const a = p.C_GetAttributeValue(
      s.handle,
      o,
      names.map((n) => ({ type: (P as unknown as Record<string, number>)[`CKA_${n}`] as number })),
    );
    const out: Record<string, boolean | number[]> = {};
    names.forEach((n, i) => (out[n] = (a[i]?.value?.[0] ?? 0) !== 0));
    const m =
      p.C_GetAttributeValue(s.handle, o, [{ type: P.CKA_ALLOWED_MECHANISMS }])[0]?.value ?? Buffer.alloc(0);
    // A set: SoftHSM gives it back sorted.
    out.ALLOWED = Array.from({ length: m.length / 8 }, (_, i) => Number(m.readBigUInt64LE(8 * i))).sort(
      (x, y) => x - y,
    );
    return out;
  });
}

/** An AES key planted under `label` outside the broker (as a token writer could). */
function plant(
  label: string,
  t: { extractable?: boolean; sensitive?: boolean; encrypt?: boolean; thenLock?: boolean },
) {
  return withSession((s, p) => {
    const k = p.C_GenerateKey(s.handle, { mechanism: P.CKM_AES_KEY_GEN }, [
      { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
      { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
      { type: P.CKA_VALUE_LEN, value: 32 },
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_PRIVATE, value: true },
      { type: P.CKA_SENSITIVE, value: t.sensitive ?? true },
      { type: P.CKA_EXTRACTABLE, value: t.extractable ?? false },
      { type: P.CKA_WRAP, value: true },
      { type: P.CKA_UNWRAP, value: true },
      { type: P.CKA_ENCRYPT, value: t.encrypt ?? false },
      { type: P.CKA_DECRYPT, value: t.encrypt ?? false },
      { type: P.CKA_LABEL, value: label },
      { type: P.CKA_ID, value: Buffer.from(label) },
    ]);
    // Made extractable, then locked: CKA_NEVER_EXTRACTABLE stays false (its value may have left).
    if (t.thenLock === true) p.C_SetAttributeValue(s.handle, k, [{ type: P.CKA_EXTRACTABLE, value: false }]);
  });
}

async function codeOf(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
    return { code: 'no error', message: '' };
  } catch (err) {
    return err instanceof KbError
      ? { code: err.code, message: err.safeMessage }
      : { code: String(err), message: '' };
  }
}

test('a new root key (OEK) is wrap-only: no encrypt/decrypt, allowed only CKM_AES_KEY_WRAP_PAD; in-HSM GCM is refused', async () => {
  const root = await hsm.generateRootKey('oek-new');
  assert.deepEqual(await attrs('oek-new'), {
    SENSITIVE: true,
    EXTRACTABLE: false,
    NEVER_EXTRACTABLE: true,
    ENCRYPT: false,
    DECRYPT: false,
    WRAP: true,
    UNWRAP: true,
    ALLOWED: [P.CKM_AES_KEY_WRAP_PAD],
  });
  const key = randomBytes(32);
  assert.deepEqual(
    Buffer.from(await hsm.unwrapKey(root, await hsm.wrapKey(root, key))),
    key,
    'wraps and unwraps',
  );
  assert.notEqual(
    (await codeOf(hsm.encryptGcm(root, randomBytes(16), randomBytes(4)))).code,
    'no error',
    'GCM refused',
  );
  // The same label again (a cold handle cache): the check passes, nothing logged.
  assert.ok(await hsm.findKey('oek-new', 'root'));
  assert.deepEqual(errors, []);
});

test('a root key made for in-HSM GCM gets encrypt/decrypt and CKM_AES_GCM, nothing else', async () => {
  await hsm.generateRootKey('gcm-root', { gcm: true });
  const a = await attrs('gcm-root');
  assert.deepEqual(
    [a.ENCRYPT, a.DECRYPT, a.ALLOWED],
    [true, true, [P.CKM_AES_KEY_WRAP_PAD, P.CKM_AES_GCM].sort((x, y) => x - y)],
  );
});

test('signing keys are restricted to their one mechanism (CKM_ECDSA) and still sign', async () => {
  const { ref } = await hsm.generateSigningKey('sig-ec', 'ecdsa-p256');
  const a = await attrs('sig-ec', P.CKO_PRIVATE_KEY, ['SENSITIVE', 'EXTRACTABLE', 'NEVER_EXTRACTABLE']);
  assert.deepEqual(a, {
    SENSITIVE: true,
    EXTRACTABLE: false,
    NEVER_EXTRACTABLE: true,
    ALLOWED: [P.CKM_ECDSA],
  });
  assert.equal((await hsm.sign(ref, randomBytes(10))).alg, 'ecdsa-p256');
});

test('a profile with allowedMechanisms off makes keys without CKA_ALLOWED_MECHANISMS', async () => {
  const profile = { ...loadProfile('softhsm2'), allowedMechanisms: false };
  const handles = new KeyHandles(hsm.connection, profile);
  await hsm.connection.withSession((s) => handles.createRoot(s, 'no-allowed'));
  const a = await attrs('no-allowed');
  assert.deepEqual([a.ENCRYPT, a.ALLOWED], [false, []], 'no list: every mechanism the key type allows');
});

test('a key planted under a root label with unsafe attributes is refused at first use, naming the attribute', async () => {
  const cases: [string, Parameters<typeof plant>[1], RegExp][] = [
    ['extractable', { extractable: true }, /CKA_EXTRACTABLE is true/],
    ['not sensitive', { sensitive: false }, /CKA_SENSITIVE is false/],
    [
      'once extractable, then locked',
      { extractable: true, thenLock: true },
      /CKA_NEVER_EXTRACTABLE is false/,
    ],
  ];
  for (const [what, t, named] of cases) {
    const label = `planted-${what.replace(/[^a-z]+/g, '-')}`;
    await plant(label, t);
    for (const [op, p] of [
      ['findKey', hsm.findKey(label, 'root')],
      ['wrapKey', hsm.wrapKey({ label, kind: 'root' }, randomBytes(32))],
      ['unwrapKey', hsm.unwrapKey({ label, kind: 'root' }, randomBytes(40))],
    ] as const) {
      const r = await codeOf(p);
      assert.equal(r.code, 'HSM_KEY_REFUSED', `${what}: ${op}`);
      assert.match(r.message, /^HSM key refused: unsafe attributes: /, `${what}: ${op}`);
      assert.match(r.message, named, `${what}: ${op} names the attribute`);
      assert.doesNotMatch(r.message, new RegExp(label), `${what}: the label stays in the log`);
    }
  }
  assert.ok(
    errors.some((e) => e.msg === 'root key refused: unsafe attributes'),
    'logged as an error',
  );
});

test('a legacy root key (encrypt/decrypt allowed, as made before) still works, with one warning', async () => {
  await plant('legacy-oek', { encrypt: true });
  const before = warnings.length;
  const root = { label: 'legacy-oek', kind: 'root' } as const;
  const key = randomBytes(32);
  assert.deepEqual(Buffer.from(await hsm.unwrapKey(root, await hsm.wrapKey(root, key))), key);
  await hsm.wrapKey(root, key);
  const w = warnings.slice(before);
  assert.equal(w.length, 1, 'warned once (the handle is cached after the check)');
  assert.match(w[0]?.msg ?? '', /older broker allows encrypt\/decrypt/);
});

test("the broker refuses an org's OEK replaced by an extractable key of the same label", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kb-rootattr-'));
  try {
    const acme = 'acme' as OrgId;
    let kb = await KeyBroker.open({ hsm, dataDir: dir });
    await kb.createOrg(acme);
    await kb.createTenant(acme, 't1' as TenantId);
    await kb.close();
    const db = new Database(join(dir, 'registry.db'), { readonly: true });
    const { hsm_label: label } = db
      .prepare("SELECT hsm_label FROM oek_versions WHERE org = 'acme'")
      .get() as {
      hsm_label: string;
    };
    db.close();
    await hsm.destroyKey({ label, kind: 'root' });
    await plant(label, { extractable: true });
    kb = await KeyBroker.open({ hsm, dataDir: dir });
    try {
      const r = await codeOf(kb.createTenant(acme, 't2' as TenantId));
      assert.equal(r.code, 'HSM_KEY_REFUSED', `createTenant under the planted OEK: ${r.message}`);
      // t1's TEK is wrapped under that label: loading it is refused too.
      const c = await codeOf(kb.createCustomer({ org: acme, tenant: 't1' as TenantId }, 'c1' as CustomerId));
      assert.equal(c.code, 'HSM_KEY_REFUSED', `createCustomer (unwraps t1's TEK): ${c.message}`);
    } finally {
      await kb.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
