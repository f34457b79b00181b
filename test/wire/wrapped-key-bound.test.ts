// Stored tenant-owned keys: the 0x11 and 0x13 golden blobs keep opening; 0x13 (review M5, L4)
// opens only under its exact identity, binding and KEK kind: a tamper loop over every byte,
// every length and every identity field, and no confusion with 0x11 or with a CEK used directly.
import assert from 'node:assert/strict';
import { createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { test } from 'node:test';
import {
  unwrapBoundKey,
  unwrapTenantKey,
  wrapBoundKey,
  wrappedTypeOf,
  WrappedType,
  type BoundKeyIdentity,
  type TenantKeyIdentity,
} from '../../daemon/src/wire/wrapped-key-v1.ts';

interface BoundJson extends Omit<BoundKeyIdentity, 'binding'> {
  binding: string;
}
interface Golden {
  tek: string;
  cek: string;
  secret: string;
  legacyUnderTek: { identity: TenantKeyIdentity; blob: string };
  legacyUnderCek: { identity: TenantKeyIdentity; blob: string };
  boundUnderTek: { identity: BoundJson; blob: string };
  boundUnderCek: { identity: BoundJson; blob: string };
}
const g = JSON.parse(
  readFileSync(resolve(import.meta.dirname, '../fixtures/golden/tkey-v1.json'), 'utf8'),
) as Golden;
const b = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex');
const bound = (j: BoundJson): BoundKeyIdentity => ({ ...j, binding: b(j.binding) });

/** The code of what `fn` throws ('opened' if it does not). */
function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'opened';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

test('golden 0x11 (under a TEK, under a CEK) and 0x13 (under a TEK, under a CEK-derived key) open', () => {
  assert.equal(hex(unwrapTenantKey(b(g.tek), g.legacyUnderTek.identity, b(g.legacyUnderTek.blob))), g.secret);
  assert.equal(hex(unwrapTenantKey(b(g.cek), g.legacyUnderCek.identity, b(g.legacyUnderCek.blob))), g.secret);
  const t = bound(g.boundUnderTek.identity);
  const c = bound(g.boundUnderCek.identity);
  assert.equal(hex(unwrapBoundKey(b(g.tek), t, b(g.boundUnderTek.blob))), g.secret);
  assert.equal(hex(unwrapBoundKey(b(g.cek), c, b(g.boundUnderCek.blob))), g.secret);
  assert.deepEqual(
    [g.legacyUnderTek.blob, g.boundUnderTek.blob].map((x) => wrappedTypeOf(b(x))),
    [WrappedType.tenantKey, WrappedType.boundTenantKey],
  );
});

test('the 0x13 layout as FORMAT.md draws it (built by hand, not by the code under test)', () => {
  const id = bound(g.boundUnderCek.identity);
  const lp = (s: string) => Buffer.concat([Buffer.of(Buffer.byteLength(s)), Buffer.from(s)]);
  const u32 = (n: number) => {
    const x = Buffer.alloc(4);
    x.writeUInt32BE(n);
    return x;
  };
  const kek = Buffer.from(
    hkdfSync(
      'sha256',
      b(g.cek),
      Buffer.alloc(0),
      Buffer.concat([
        Buffer.from('keybroker cek-kek v1'),
        lp(id.org),
        lp(id.tenant),
        lp(id.customer),
        u32(id.kekVersion),
      ]),
      32,
    ),
  );
  const aad = Buffer.concat([
    Buffer.from('keybroker tkey v2'),
    Buffer.of(0x02),
    lp(id.org),
    lp(id.tenant),
    lp(id.customer),
    lp(id.keyId),
    u32(id.keyVersion),
    u32(id.kekVersion),
    id.binding,
  ]);
  const blob = b(g.boundUnderCek.blob);
  assert.deepEqual([blob[0], blob[1]], [0x01, 0x13]);
  const d = createDecipheriv('aes-256-gcm', kek, blob.subarray(2, 14));
  d.setAAD(aad);
  d.setAuthTag(blob.subarray(blob.length - 16));
  const out = Buffer.concat([d.update(blob.subarray(14, blob.length - 16)), d.final()]);
  assert.equal(out.toString('hex'), g.secret);
});

test('0x13 tamper loop: every bit flip, every truncation, appended bytes', () => {
  const id = bound(g.boundUnderTek.identity);
  const blob = b(g.boundUnderTek.blob);
  for (let bit = 0; bit < blob.length * 8; bit++) {
    const bad = Uint8Array.from(blob);
    bad[bit >> 3] = (bad[bit >> 3] ?? 0) ^ (1 << (bit & 7));
    assert.equal(
      codeOf(() => unwrapBoundKey(b(g.tek), id, bad)),
      'DECRYPTION_FAILED',
      `bit ${bit}`,
    );
  }
  for (let len = 0; len < blob.length; len++)
    assert.equal(
      codeOf(() => unwrapBoundKey(b(g.tek), id, blob.subarray(0, len))),
      'DECRYPTION_FAILED',
      `len ${len}`,
    );
  for (const extra of [Uint8Array.of(0), randomBytes(16)])
    assert.equal(
      codeOf(() => unwrapBoundKey(b(g.tek), id, Buffer.concat([blob, extra]))),
      'DECRYPTION_FAILED',
      `+${extra.length}`,
    );
});

test('0x13 opens under its own identity only: each field, the KEK kind, the customer, the binding', () => {
  const secret = randomBytes(32);
  const cek = randomBytes(32);
  const id: BoundKeyIdentity = {
    org: 'o',
    tenant: 't',
    kek: 'cek',
    customer: 'c1',
    keyId: 'k',
    keyVersion: 1,
    kekVersion: 1,
    binding: randomBytes(32),
  };
  const blob = wrapBoundKey(cek, id, secret);
  assert.deepEqual(unwrapBoundKey(cek, id, blob), new Uint8Array(secret));
  const flipped = Uint8Array.from(id.binding);
  flipped[31] = (flipped[31] ?? 0) ^ 1;
  const cases: [string, BoundKeyIdentity][] = [
    ['org', { ...id, org: 'o2' }],
    ['tenant', { ...id, tenant: 't2' }],
    ['customer (moved to another customer)', { ...id, customer: 'c2' }],
    ['KEK kind (moved to the tenant level)', { ...id, kek: 'tek', customer: '' }],
    ['key id', { ...id, keyId: 'k2' }],
    ['key version', { ...id, keyVersion: 2 }],
    ['KEK version', { ...id, kekVersion: 2 }],
    ['binding (one bit)', { ...id, binding: flipped }],
  ];
  for (const [what, other] of cases)
    assert.equal(
      codeOf(() => unwrapBoundKey(cek, other, blob)),
      'DECRYPTION_FAILED',
      what,
    );
  // Not the CEK itself as the AES key (L4): the 0x13 wrap uses the derived key.
  const direct = { ...id, kek: 'tek' as const, customer: '' };
  assert.equal(
    codeOf(() => unwrapBoundKey(cek, direct, wrapBoundKey(cek, direct, secret))),
    'opened',
  );
  assert.equal(
    codeOf(() => unwrapBoundKey(cek, direct, blob)),
    'DECRYPTION_FAILED',
    'CEK used directly',
  );
  // No confusion with the legacy type, either way.
  const legacyId = { org: 'o', tenant: 't', keyId: 'k', keyVersion: 1, tekVersion: 1 };
  assert.equal(
    codeOf(() => unwrapTenantKey(cek, legacyId, blob)),
    'DECRYPTION_FAILED',
    '0x13 read as 0x11',
  );
  assert.equal(
    codeOf(() => unwrapBoundKey(b(g.tek), bound(g.boundUnderTek.identity), b(g.legacyUnderTek.blob))),
    'DECRYPTION_FAILED',
    '0x11 read as 0x13',
  );
  assert.throws(
    () => wrapBoundKey(cek, { ...id, customer: '' }, secret),
    RangeError,
    "kek 'cek' needs a customer",
  );
  assert.throws(() => wrapBoundKey(cek, { ...id, binding: new Uint8Array(31) }, secret), RangeError);
});
