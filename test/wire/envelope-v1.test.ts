// Format v1 envelopes (ciphertexts, wrapped data keys) and the wrapped-key formats, key-level.
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import {
  BlobType,
  MAX_PLAINTEXT_BYTES,
  openEnvelope,
  parseEnvelope,
  sealEnvelope,
} from '../../daemon/src/wire/envelope-v1.ts';
import type { EnvelopeHeader } from '../../daemon/src/wire/envelope-v1.ts';
import { deriveTek, unwrapCek, wrapCek } from '../../daemon/src/wire/wrapped-key-v1.ts';
import { REPO_ROOT } from '../support/softhsm-token.ts';

const VECTORS = resolve(REPO_ROOT, '../shared/vectors/wycheproof');
const H: EnvelopeHeader = {
  type: BlobType.ciphertext,
  org: 'acme',
  tenant: 't1',
  customer: 'default',
  cekVersion: 3,
};
const cek = randomBytes(32);
const aad = new TextEncoder().encode('context');

function isDecryptionFailed(err: unknown): boolean {
  return err instanceof KbError && err.code === 'DECRYPTION_FAILED';
}

function openAll(blob: Uint8Array, k: Uint8Array, a: Uint8Array): Uint8Array {
  return openEnvelope(k, parseEnvelope(blob), a);
}

test('envelope round trip for every type and plaintext size edge', () => {
  for (const type of [BlobType.ciphertext, BlobType.wrappedDataKey]) {
    for (const size of [0, 1, 16, 1024]) {
      const pt = randomBytes(size);
      const blob = sealEnvelope(cek, { ...H, type }, pt, aad);
      const p = parseEnvelope(blob);
      assert.deepEqual(
        { type: p.type, org: p.org, tenant: p.tenant, customer: p.customer, v: p.cekVersion },
        { type, org: 'acme', tenant: 't1', customer: 'default', v: 3 },
      );
      assert.deepEqual(Buffer.from(openEnvelope(cek, p, aad)), pt, `type ${type} size ${size}`);
    }
  }
});

test('tamper loop: every bit flip and every truncation fails with DECRYPTION_FAILED', () => {
  const blob = sealEnvelope(cek, H, new TextEncoder().encode('sixteen byte msg'), aad);
  for (let i = 0; i < blob.length * 8; i++) {
    const t = Uint8Array.from(blob);
    t[i >> 3] = (t[i >> 3] as number) ^ (1 << (i & 7));
    assert.throws(
      () => openAll(t, cek, aad),
      isDecryptionFailed,
      `flip bit ${i} of ${blob.length * 8} was accepted`,
    );
  }
  for (let n = 0; n < blob.length; n++) {
    assert.throws(
      () => openAll(blob.subarray(0, n), cek, aad),
      isDecryptionFailed,
      `truncation to ${n} bytes was accepted`,
    );
  }
  assert.throws(
    () => openAll(Uint8Array.from([...blob, 0]), cek, aad),
    isDecryptionFailed,
    'one byte appended was accepted',
  );
});

test('wrong AAD, AAD boundary shift and wrong key fail with DECRYPTION_FAILED', () => {
  const blob = sealEnvelope(cek, H, new TextEncoder().encode('x'), aad);
  const cases: [string, Uint8Array, Uint8Array][] = [
    ['empty aad', cek, new Uint8Array(0)],
    ['aad with extra byte', cek, Uint8Array.from([...aad, 0])],
    ['aad one byte short', cek, aad.subarray(1)],
    ['other key', randomBytes(32), aad],
  ];
  for (const [name, k, a] of cases) assert.throws(() => openAll(blob, k, a), isDecryptionFailed, name);
});

test('the key commitment is checked before the AEAD (a valid tag under a different key is not enough)', () => {
  // Same DEK path, but the stored commitment replaced: GCM alone would still accept this blob.
  const blob = sealEnvelope(cek, H, new TextEncoder().encode('x'), aad);
  const p = parseEnvelope(blob);
  const forged = { ...p, commitment: randomBytes(32) };
  assert.throws(() => openEnvelope(cek, forged, aad), isDecryptionFailed);
});

test('header bounds: bad version, type, algorithm, names and oversized bodies are refused at parse', () => {
  const blob = sealEnvelope(cek, H, new Uint8Array(4), aad);
  const cases: [string, (b: Uint8Array) => Uint8Array][] = [
    ['version 2', (b) => Uint8Array.from([2, ...b.subarray(1)])],
    ['type 0x03 (stream header)', (b) => Uint8Array.from([b[0] as number, 3, ...b.subarray(2)])],
    ['algorithm 9', (b) => Uint8Array.from([...b.subarray(0, 2), 9, ...b.subarray(3)])],
    ['org length 0', (b) => Uint8Array.from([...b.subarray(0, 3), 0, ...b.subarray(4)])],
    ['org length 200', (b) => Uint8Array.from([...b.subarray(0, 3), 200, ...b.subarray(4)])],
    ['upper-case org', (b) => Uint8Array.from([...b.subarray(0, 4), 0x41, ...b.subarray(5)])],
  ];
  for (const [name, f] of cases) assert.throws(() => parseEnvelope(f(blob)), isDecryptionFailed, name);
  assert.throws(() => sealEnvelope(cek, { ...H, org: 'x'.repeat(64) }, new Uint8Array(0), aad), RangeError);
  assert.ok(MAX_PLAINTEXT_BYTES >= 1024 * 1024);
});

test('wrapped CEK is bound to org, tenant, customer, CEK version and TEK version', () => {
  const tek = deriveTek(randomBytes(32), 'acme', 't1', 1);
  const id = { org: 'acme', tenant: 't1', customer: 'c1', cekVersion: 2, tekVersion: 1 };
  const k = randomBytes(32);
  const w = wrapCek(tek, id, k);
  assert.deepEqual(Buffer.from(unwrapCek(tek, id, w)), k);
  for (const [name, other] of [
    ['other org', { ...id, org: 'acmf' }],
    ['other tenant', { ...id, tenant: 't2' }],
    ['other customer', { ...id, customer: 'c2' }],
    ['other CEK version', { ...id, cekVersion: 3 }],
    ['other TEK version', { ...id, tekVersion: 2 }],
  ] as const) {
    assert.throws(() => unwrapCek(tek, other, w), isDecryptionFailed, name);
  }
});

test('effective TEK differs per org, tenant and version (swapped wrapped TEKs are useless)', () => {
  const raw = randomBytes(32);
  const base = Buffer.from(deriveTek(raw, 'acme', 't1', 1)).toString('hex');
  for (const [o, t, v] of [
    ['acme', 't2', 1],
    ['acmf', 't1', 1],
    ['acme', 't1', 2],
  ] as const) {
    assert.notEqual(Buffer.from(deriveTek(raw, o, t, v)).toString('hex'), base, `${o}/${t}/v${v}`);
  }
});

// The primitives the formats are built on, against Wycheproof (read unmodified from ../shared/vectors).
interface WyGroup {
  keySize?: number;
  ivSize?: number;
  tagSize?: number;
  tests: {
    tcId: number;
    key?: string;
    iv?: string;
    aad?: string;
    msg?: string;
    ct?: string;
    tag?: string;
    ikm?: string;
    salt?: string;
    info?: string;
    size?: number;
    okm?: string;
    result: string;
  }[];
}
const load = (f: string): { testGroups: WyGroup[] } =>
  JSON.parse(readFileSync(resolve(VECTORS, f), 'utf8')) as { testGroups: WyGroup[] };

test('HKDF-SHA256 (DEK and commitment derivation) matches Wycheproof', () => {
  let n = 0;
  for (const g of load('hkdf_sha256_test.json').testGroups) {
    for (const t of g.tests) {
      const args = [
        Buffer.from(t.ikm ?? '', 'hex'),
        Buffer.from(t.salt ?? '', 'hex'),
        Buffer.from(t.info ?? '', 'hex'),
        t.size ?? 0,
      ] as const;
      if (t.result === 'valid') {
        assert.equal(Buffer.from(hkdfSync('sha256', ...args)).toString('hex'), t.okm, `tcId ${t.tcId}`);
        n++;
      } else {
        assert.throws(() => hkdfSync('sha256', ...args), `tcId ${t.tcId} invalid but accepted`);
      }
    }
  }
  assert.ok(n > 10, `only ${n} HKDF vectors ran`);
});

test('AES-256-GCM (envelope AEAD) with 96-bit IVs matches Wycheproof', () => {
  let n = 0;
  for (const g of load('aes_gcm_test.json').testGroups) {
    if (g.keySize !== 256 || g.ivSize !== 96 || g.tagSize !== 128) continue;
    for (const t of g.tests) {
      const key = Buffer.from(t.key ?? '', 'hex');
      const iv = Buffer.from(t.iv ?? '', 'hex');
      const d = createDecipheriv('aes-256-gcm', key, iv);
      d.setAAD(Buffer.from(t.aad ?? '', 'hex'));
      d.setAuthTag(Buffer.from(t.tag ?? '', 'hex'));
      const out = d.update(Buffer.from(t.ct ?? '', 'hex'));
      let ok = true;
      try {
        d.final();
      } catch {
        ok = false;
      }
      if (t.result === 'valid') {
        assert.ok(ok, `tcId ${t.tcId} rejected`);
        assert.equal(out.toString('hex'), t.msg, `tcId ${t.tcId}`);
        const c = createCipheriv('aes-256-gcm', key, iv);
        c.setAAD(Buffer.from(t.aad ?? '', 'hex'));
        assert.equal(
          Buffer.concat([c.update(Buffer.from(t.msg ?? '', 'hex')), c.final()]).toString('hex'),
          t.ct,
        );
        n++;
      } else if (t.result === 'invalid') {
        assert.ok(!ok, `tcId ${t.tcId} invalid but accepted`);
      }
    }
  }
  assert.ok(n > 5, `only ${n} GCM vectors ran`);
});

test('a sealed envelope owns its ArrayBuffer (no shared pool slab with other requests bytes)', () => {
  const blob = sealEnvelope(cek, H, new Uint8Array(10), aad);
  assert.equal(blob.byteOffset, 0);
  assert.equal(blob.buffer.byteLength, blob.length);
});
