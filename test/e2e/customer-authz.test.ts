/**
 * Customer and key restrictions on every Crypto and Keys RPC (review H1), in the real daemon over
 * gRPC + mTLS (SoftHSM2, SQLite): a matrix of each RPC × {customer deny rule, key deny rule,
 * tenant ceiling}. Encrypt-side calls refuse a restricted customer with PERMISSION_DENIED (per
 * item in batches); decrypt-side calls answer exactly what a tampered ciphertext gets, while the
 * audit record says denied with the rule and names the customer. ListKeys/GetJwks hide keys the
 * caller may not use. The README's allow rule with customers works for Decrypt.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { queryAudit } from '../../daemon/src/audit/audit-reader.ts';
import { DEFAULT_POLICY_TEXT } from '../../daemon/src/policy/default-policy.ts';
import { initTestDataDir, removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, bidi, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
const aad = Buffer.from('ctx');
const defaults = (JSON.parse(DEFAULT_POLICY_TEXT) as { rules: R[] }).rules;

/** The restrictions under test, for three identities of two tenants. */
const RESTRICTED = JSON.stringify({
  version: 1,
  rules: [
    {
      id: 'no-c9',
      effect: 'deny',
      identities: ['spiffe://acme/alpha/denyc'],
      rpcs: ['**'],
      customers: ['c9'],
    },
    {
      id: 'no-secret-keys',
      effect: 'deny',
      identities: ['spiffe://acme/alpha/denyk'],
      rpcs: ['**'],
      keys: ['secret-*'],
    },
    // The README's example: an allow rule naming customers (works for Decrypt now).
    {
      id: 'readme-t1-crypto',
      effect: 'allow',
      identities: ['spiffe://acme/alpha/readme'],
      rpcs: ['keybroker.v1.Crypto/*'],
      customers: ['default', 'c1'],
    },
    ...defaults.filter((r) => r.id !== 'default/data-plane'),
    {
      ...defaults.find((r) => r.id === 'default/data-plane'),
      identities: ['spiffe://acme/*/app', 'spiffe://acme/*/deny*'],
    },
  ],
  tenants: [{ org: 'acme', tenant: 'gamma', customers: ['default', 'c1'], keys: ['k-*'] }],
});

let d: DaemonHandle;
let policyFile: string;
let alphaApp: KeybrokerClient;
let gammaApp: KeybrokerClient;
let denyc: KeybrokerClient;
let denyk: KeybrokerClient;
let readme: KeybrokerClient;

/** Data made before the restrictions, per tenant and customer. */
interface Made {
  ct: Buffer;
  wrapped: Buffer;
  stream: { header: Buffer; chunks: Buffer[] };
}
const made: Record<string, Record<string, Made>> = { alpha: {}, gamma: {} };

async function reload(text: string): Promise<void> {
  const n = d.lines.filter((l) => l.msg === 'policy reloaded').length;
  writeFileSync(policyFile, text);
  d.proc.kill('SIGHUP');
  await d.waitFor(() => d.lines.filter((l) => l.msg === 'policy reloaded').length > n);
}

async function makeData(c: KeybrokerClient, customer: string): Promise<Made> {
  const ct = (
    await c.crypto.unary<R>('Encrypt', { customer, plaintext: Buffer.from(`for ${customer}`), aad })
  ).ciphertext as Buffer;
  const wrapped = (await c.crypto.unary<R>('GenerateDataKey', { customer, aad, length: 32 }))
    .wrappedKey as Buffer;
  const out = (await bidi(c.crypto, 'EncryptStream', [
    { init: { customer, aad } },
    { plaintext: Buffer.from(`stream for ${customer}`) },
  ])) as { header?: Buffer; chunk?: Buffer; msg: string }[];
  return {
    ct,
    wrapped,
    stream: { header: out[0]?.header as Buffer, chunks: out.slice(1).map((m) => m.chunk as Buffer) },
  };
}

before(async () => {
  const dir = await initTestDataDir({ org: 'acme', tenant: 'alpha' });
  policyFile = join(dir, 'policy.json');
  writeFileSync(policyFile, DEFAULT_POLICY_TEXT);
  d = await startDaemon({ dataDir: dir, env: { KB_POLICY_FILE: policyFile } });
  const admin = d.client('admin');
  await admin.admin.unary('CreateTenant', { org: 'acme', tenant: 'gamma' });
  for (const tenant of ['alpha', 'gamma'])
    for (const customer of ['c1', 'c9'])
      await admin.admin.unary('CreateCustomer', { org: 'acme', tenant, customer });
  alphaApp = d.client('service');
  gammaApp = d.client(await d.issueClient('spiffe://acme/gamma/app'));
  denyc = d.client(await d.issueClient('spiffe://acme/alpha/denyc'));
  denyk = d.client(await d.issueClient('spiffe://acme/alpha/denyk'));
  readme = d.client(await d.issueClient('spiffe://acme/alpha/readme'));
  for (const [tenant, c] of [
    ['alpha', alphaApp],
    ['gamma', gammaApp],
  ] as const) {
    for (const customer of ['c1', 'c9'])
      (made[tenant] as Record<string, Made>)[customer] = await makeData(c, customer);
    for (const [keyId, algorithm] of [
      ['k-sig', 'KEY_ALGORITHM_ML_DSA_65'],
      ['k-kem', 'KEY_ALGORITHM_ML_KEM_768'],
      ['secret-sig', 'KEY_ALGORITHM_ML_DSA_65'],
      ['secret-kem', 'KEY_ALGORITHM_ML_KEM_768'],
    ])
      await c.keys.unary('CreateKey', { keyId, algorithm });
  }
  await reload(RESTRICTED);
});
after(async () => {
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

const flip = (b: Buffer): Buffer => {
  const x = Buffer.from(b);
  x[x.length - 1] = (x[x.length - 1] ?? 0) ^ 1;
  return x;
};

/** Customer restrictions: who is restricted, in which tenant, and by which rule. */
const CUSTOMER_SCENARIOS = [
  { name: 'customer deny rule', tenant: 'alpha', who: () => denyc, rule: 'denied by rule no-c9' },
  {
    name: 'tenant ceiling',
    tenant: 'gamma',
    who: () => gammaApp,
    rule: "outside the tenant's allowed customers",
  },
] as const;

interface CryptoCase {
  readonly rpc: string;
  /** Call the RPC on customer `customer`'s data (or for that customer); `tamper` flips a byte. */
  readonly call: (c: KeybrokerClient, m: Made, customer: string, tamper?: boolean) => Promise<unknown>;
  readonly side: 'encrypt' | 'decrypt';
}

const CRYPTO: readonly CryptoCase[] = [
  {
    rpc: 'Encrypt',
    side: 'encrypt',
    call: (c, _m, customer) => c.crypto.unary('Encrypt', { customer, plaintext: Buffer.from('x'), aad }),
  },
  {
    rpc: 'GenerateDataKey',
    side: 'encrypt',
    call: (c, _m, customer) => c.crypto.unary('GenerateDataKey', { customer, aad, length: 32 }),
  },
  {
    rpc: 'EncryptStream',
    side: 'encrypt',
    call: (c, _m, customer) =>
      bidi(c.crypto, 'EncryptStream', [{ init: { customer, aad } }, { plaintext: Buffer.from('x') }]),
  },
  {
    rpc: 'Decrypt',
    side: 'decrypt',
    call: (c, m, _customer, tamper) =>
      c.crypto.unary('Decrypt', { ciphertext: tamper ? flip(m.ct) : m.ct, aad }),
  },
  {
    rpc: 'DecryptDataKey',
    side: 'decrypt',
    call: (c, m, _customer, tamper) =>
      c.crypto.unary('DecryptDataKey', { wrappedKey: tamper ? flip(m.wrapped) : m.wrapped, aad }),
  },
  {
    rpc: 'Rewrap',
    side: 'decrypt',
    call: (c, m, _customer, tamper) =>
      c.crypto.unary('Rewrap', { ciphertext: tamper ? flip(m.ct) : m.ct, aad }),
  },
  {
    rpc: 'DecryptStream',
    side: 'decrypt',
    call: (c, m, _customer, tamper) =>
      bidi(c.crypto, 'DecryptStream', [
        { init: { header: tamper ? flip(m.stream.header) : m.stream.header, aad } },
        ...m.stream.chunks.map((chunk) => ({ chunk })),
      ]),
  },
];

describe('Crypto RPCs × customer deny rule and tenant ceiling', () => {
  for (const s of CUSTOMER_SCENARIOS) {
    for (const k of CRYPTO) {
      test(`${s.name}: ${k.rpc} for c1 works, for c9 is refused (${k.side} side)`, async () => {
        const data = made[s.tenant] as Record<string, Made>;
        const c = s.who();
        await k.call(c, data.c1 as Made, 'c1');
        if (k.side === 'encrypt') {
          await expectCode(k.call(c, data.c9 as Made, 'c9'), GrpcCode.PERMISSION_DENIED, `${k.rpc} for c9`);
          return;
        }
        // The refusal is the one opaque decrypt error: the same as a tampered c1 ciphertext.
        const refused = await expectCode(
          k.call(c, data.c9 as Made, 'c9'),
          GrpcCode.INVALID_ARGUMENT,
          `${k.rpc} c9`,
        );
        const tampered = await expectCode(
          k.call(c, data.c1 as Made, 'c1', true),
          GrpcCode.INVALID_ARGUMENT,
          `${k.rpc} tampered c1`,
        );
        assert.equal(refused.details, tampered.details, `${k.rpc}: refused and tampered look alike`);
        assert.equal(refused.details, 'decryption failed');
        // The audit record says what happened: denied, which rule, which customer.
        const recs = await queryAudit(join(d.dataDir, 'audit/audit.log'), {
          rpc: `keybroker.v1.Crypto/${k.rpc}`,
          result: 'denied',
        });
        const mine = recs.filter((r) => r.tenant === s.tenant && r.customer === 'c9');
        assert.ok(mine.length > 0, `${k.rpc}: a denied record naming c9 in ${s.tenant}`);
        assert.match(
          mine.at(-1)?.reason ?? '',
          new RegExp(s.rule.replace(/[()']/g, '.')),
          `${k.rpc}: reason`,
        );
      });
    }

    test(`${s.name}: EncryptBatch refuses only the c9 items, with PERMISSION_DENIED`, async () => {
      const r = await s.who().crypto.unary<{ results: R[] }>('EncryptBatch', {
        items: [
          { customer: 'c1', plaintext: Buffer.from('a'), aad },
          { customer: 'c9', plaintext: Buffer.from('b'), aad },
          { plaintext: Buffer.from('c'), aad },
        ],
      });
      assert.ok(r.results[0]?.result, 'c1 item encrypted');
      assert.equal(
        (r.results[1]?.error as R | undefined)?.code,
        GrpcCode.PERMISSION_DENIED,
        'c9 item refused',
      );
      assert.ok(r.results[2]?.result, 'default-customer item encrypted');
    });

    test(`${s.name}: DecryptBatch refuses only the c9 items, as a bad ciphertext`, async () => {
      const data = made[s.tenant] as Record<string, Made>;
      const r = await s.who().crypto.unary<{ results: R[] }>('DecryptBatch', {
        items: [
          { ciphertext: data.c1?.ct, aad },
          { ciphertext: data.c9?.ct, aad },
          { ciphertext: flip(data.c1?.ct as Buffer), aad },
        ],
      });
      assert.equal(((r.results[0]?.result as R).plaintext as Buffer).toString(), 'for c1');
      assert.deepEqual(r.results[1]?.error, r.results[2]?.error, 'refused item = tampered item');
      assert.equal((r.results[1]?.error as R).reason, 'DECRYPTION_FAILED');
    });
  }

  test('customer deny rule: CreateKey of a c9 customer key is refused', async () => {
    await expectCode(
      denyc.keys.unary('CreateKey', { keyId: 'k-c9', algorithm: 'KEY_ALGORITHM_ML_DSA_65', customer: 'c9' }),
      GrpcCode.PERMISSION_DENIED,
      'CreateKey for customer c9',
    );
  });

  test('README example: an allow rule naming customers lets Decrypt through for them, not for others', async () => {
    const data = made.alpha as Record<string, Made>;
    const r = await readme.crypto.unary<R>('Decrypt', { ciphertext: data.c1?.ct, aad });
    assert.equal((r.plaintext as Buffer).toString(), 'for c1');
    assert.equal(r.customer, 'c1');
    await expectCode(
      readme.crypto.unary('Decrypt', { ciphertext: data.c9?.ct, aad }),
      GrpcCode.INVALID_ARGUMENT,
      'README rule: Decrypt of c9 data',
    );
    // The default customer is a customer like any other.
    const ct = (await readme.crypto.unary<R>('Encrypt', { plaintext: Buffer.from('d'), aad })).ciphertext;
    await readme.crypto.unary('Decrypt', { ciphertext: ct, aad });
  });
});

describe('audit records of batches, streams and data keys name customer and key version (review L7)', () => {
  const last = async (rpc: string) => {
    const recs = await queryAudit(join(d.dataDir, 'audit/audit.log'), {
      rpc: `keybroker.v1.Crypto/${rpc}`,
      identity: 'spiffe://acme/alpha/app',
    });
    const r = recs.at(-1);
    assert.ok(r, `${rpc}: a record`);
    return { customer: r.customer, keyVersion: r.keyVersion, result: r.result };
  };
  const data = () => made.alpha as Record<string, Made>;
  const CASES: {
    rpc: string;
    run: () => Promise<unknown>;
    want: { customer: string; keyVersion: number };
  }[] = [
    {
      rpc: 'EncryptBatch',
      run: () =>
        alphaApp.crypto.unary('EncryptBatch', {
          items: [
            { customer: 'c9', plaintext: Buffer.from('a'), aad },
            { plaintext: Buffer.from('b'), aad },
            { customer: 'c1', plaintext: Buffer.from('c'), aad },
          ],
        }),
      want: { customer: 'c1,c9,default', keyVersion: 1 },
    },
    {
      rpc: 'DecryptBatch',
      run: () =>
        alphaApp.crypto.unary('DecryptBatch', {
          items: [
            { ciphertext: data().c9?.ct, aad },
            { ciphertext: data().c1?.ct, aad },
          ],
        }),
      want: { customer: 'c1,c9', keyVersion: 1 },
    },
    {
      rpc: 'DecryptDataKey',
      run: () => alphaApp.crypto.unary('DecryptDataKey', { wrappedKey: data().c9?.wrapped, aad }),
      want: { customer: 'c9', keyVersion: 1 },
    },
    {
      rpc: 'EncryptStream',
      run: () =>
        bidi(alphaApp.crypto, 'EncryptStream', [
          { init: { customer: 'c1', aad } },
          { plaintext: Buffer.from('s') },
        ]),
      want: { customer: 'c1', keyVersion: 1 },
    },
    {
      rpc: 'DecryptStream',
      run: () =>
        bidi(alphaApp.crypto, 'DecryptStream', [
          { init: { header: data().c9?.stream.header, aad } },
          ...(data().c9?.stream.chunks ?? []).map((chunk) => ({ chunk })),
        ]),
      want: { customer: 'c9', keyVersion: 1 },
    },
  ];
  for (const c of CASES) {
    test(`${c.rpc}: the record names ${c.want.customer} and version ${c.want.keyVersion}`, async () => {
      await c.run();
      assert.deepEqual(await last(c.rpc), { ...c.want, result: 'ok' });
    });
  }
  test('a batch of many customers names as many as fit, then how many more', async () => {
    const admin = d.client('admin');
    const names = Array.from({ length: 12 }, (_v, i) => `customer-${String(i).padStart(2, '0')}`);
    for (const customer of names)
      await admin.admin.unary('CreateCustomer', { org: 'acme', tenant: 'alpha', customer });
    await alphaApp.crypto.unary('EncryptBatch', {
      items: names.map((customer) => ({ customer, plaintext: Buffer.from('x'), aad })),
    });
    const got = String((await last('EncryptBatch')).customer);
    assert.ok(got.length <= 64, `bounded: ${got}`);
    assert.match(got, /^customer-00,customer-01,customer-02,customer-03,customer-04,\+7$/);
  });
});

/** Keys RPCs that name a key, called with a signature key or a KEM key (`sig`/`kem`). */
const KEYS: readonly { rpc: string; purpose: 'sig' | 'kem'; req: (keyId: string) => R }[] = [
  { rpc: 'DescribeKey', purpose: 'sig', req: (keyId) => ({ keyId }) },
  { rpc: 'SetAsymmetricKeyPolicy', purpose: 'sig', req: (keyId) => ({ keyId, policy: {} }) },
  { rpc: 'RotateKey', purpose: 'sig', req: (keyId) => ({ keyId }) },
  {
    rpc: 'SetAsymmetricKeyVersionEnabled',
    purpose: 'sig',
    req: (keyId) => ({ keyId, version: 1, enabled: true }),
  },
  { rpc: 'GetPublicKey', purpose: 'sig', req: (keyId) => ({ keyId }) },
  { rpc: 'Sign', purpose: 'sig', req: (keyId) => ({ keyId, message: Buffer.from('m') }) },
  {
    rpc: 'Verify',
    purpose: 'sig',
    req: (keyId) => ({ keyId, message: Buffer.from('m'), signature: Buffer.alloc(3309) }),
  },
  { rpc: 'SignBatch', purpose: 'sig', req: (keyId) => ({ keyId, messages: [Buffer.from('m')] }) },
  {
    rpc: 'VerifyBatch',
    purpose: 'sig',
    req: (keyId) => ({ keyId, items: [{ message: Buffer.from('m'), signature: Buffer.alloc(3309) }] }),
  },
  { rpc: 'Encapsulate', purpose: 'kem', req: (keyId) => ({ keyId }) },
  { rpc: 'EncapsulateBatch', purpose: 'kem', req: (keyId) => ({ keyId, count: 2 }) },
  { rpc: 'Decapsulate', purpose: 'kem', req: (keyId) => ({ keyId, ciphertext: Buffer.alloc(1088) }) },
  { rpc: 'DecapsulateBatch', purpose: 'kem', req: (keyId) => ({ keyId, ciphertexts: [Buffer.alloc(1088)] }) },
  { rpc: 'SealBox', purpose: 'kem', req: (keyId) => ({ keyId, plaintext: Buffer.from('p') }) },
  { rpc: 'OpenBox', purpose: 'kem', req: (keyId) => ({ keyId, sealed: Buffer.alloc(1200) }) },
];

const KEY_SCENARIOS = [
  { name: 'key deny rule', who: () => denyk },
  { name: 'tenant ceiling', who: () => gammaApp },
] as const;

describe('Keys RPCs × key deny rule and tenant ceiling', () => {
  for (const s of KEY_SCENARIOS) {
    for (const k of KEYS) {
      test(`${s.name}: ${k.rpc} on k-${k.purpose} is not refused, on secret-${k.purpose} it is`, async () => {
        const c = s.who();
        const allowed = await c.keys.unary(k.rpc, k.req(`k-${k.purpose}`)).then(
          () => 0,
          (e: { code: number }) => e.code,
        );
        assert.notEqual(allowed, GrpcCode.PERMISSION_DENIED, `${k.rpc} on k-${k.purpose}`);
        await expectCode(
          c.keys.unary(k.rpc, k.req(`secret-${k.purpose}`)),
          GrpcCode.PERMISSION_DENIED,
          `${k.rpc} on secret-${k.purpose}`,
        );
      });
    }
    test(`${s.name}: CreateKey of a restricted name is refused`, async () => {
      await expectCode(
        s.who().keys.unary('CreateKey', { keyId: 'secret-new', algorithm: 'KEY_ALGORITHM_ML_DSA_65' }),
        GrpcCode.PERMISSION_DENIED,
        'CreateKey secret-new',
      );
    });
    test(`${s.name}: ListKeys and GetJwks hide the restricted keys`, async () => {
      const c = s.who();
      const listed = ((await c.keys.unary<{ keys: R[] }>('ListKeys', {})).keys ?? [])
        .map((x) => x.keyId)
        .sort();
      assert.deepEqual(listed, ['k-kem', 'k-sig']);
      const jwks = JSON.parse(String((await c.keys.unary<R>('GetJwks', {})).jwksJson)) as { keys: R[] };
      const kids = jwks.keys.map((x) => String(x.kid).replace(/\.\d+$/, ''));
      assert.ok(kids.includes('k-sig'), `GetJwks shows k-sig: ${kids.join(',')}`);
      assert.ok(!kids.some((x) => x.startsWith('secret-')), `GetJwks hides secret-*: ${kids.join(',')}`);
    });
  }
  test('an unrestricted identity still lists every key', async () => {
    const listed = ((await alphaApp.keys.unary<{ keys: R[] }>('ListKeys', {})).keys ?? []).map(
      (x) => x.keyId,
    );
    assert.ok(listed.includes('secret-sig') && listed.includes('k-sig'), listed.join(','));
  });
});
