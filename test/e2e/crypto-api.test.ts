/**
 * Every Crypto RPC against the real daemon (SoftHSM2, SQLite, mTLS on 127.0.0.1:0), as the
 * tenant's service identity: happy paths, batches with per-item errors, streams of every edge
 * size round trip, and truncated / reordered / swapped streams fail with the one opaque error.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { startDaemon, removeDataDir } from '../support/daemon-harness.ts';
import type { DaemonHandle, KeybrokerClient } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode, streamDecrypt, streamEncrypt } from './e2e-helpers.ts';

type R = Record<string, unknown>;
let d: DaemonHandle;
let svc: KeybrokerClient;
const CHUNK = 64 * 1024;

before(async () => {
  d = await startDaemon();
  svc = d.client('service');
  // A second customer for customer-scoped calls.
  await d.client('admin').admin.unary('CreateCustomer', { org: 'acme', tenant: 'alpha', customer: 'bob' });
});
after(async () => {
  const code = await d.stop();
  assert.equal(code, 0, `daemon exit code after SIGTERM: ${code}\n${d.output.slice(-2000)}`);
  removeDataDir(d.dataDir);
});

describe('unary', () => {
  test('Encrypt then Decrypt round trips, for the default and a named customer, with and without AAD', async () => {
    const cases = [
      { name: 'default customer, aad', customer: '', aad: Buffer.from('ctx') },
      { name: 'named customer, no aad', customer: 'bob', aad: Buffer.alloc(0) },
      { name: 'empty plaintext', customer: '', aad: Buffer.from('x'), plaintext: Buffer.alloc(0) },
      { name: 'one MiB plaintext', customer: '', aad: Buffer.alloc(0), plaintext: randomBytes(1024 * 1024) },
    ];
    for (const c of cases) {
      const plaintext = c.plaintext ?? randomBytes(100);
      const enc = await svc.crypto.unary<R>('Encrypt', { customer: c.customer, plaintext, aad: c.aad });
      assert.equal(enc.keyVersion, 1, `${c.name}: Encrypt keyVersion`);
      const dec = await svc.crypto.unary<R>('Decrypt', { ciphertext: enc.ciphertext, aad: c.aad });
      assert.deepEqual(dec.plaintext, plaintext, `${c.name}: Decrypt plaintext`);
      assert.equal(dec.customer, c.customer === '' ? 'default' : c.customer, `${c.name}: Decrypt customer`);
    }
  });

  test('Decrypt with the wrong AAD or a flipped bit fails with the one opaque error', async () => {
    const enc = await svc.crypto.unary<R>('Encrypt', {
      plaintext: Buffer.from('secret'),
      aad: Buffer.from('a'),
    });
    const ct = enc.ciphertext as Buffer;
    const e1 = await expectCode(
      svc.crypto.unary('Decrypt', { ciphertext: ct, aad: Buffer.from('b') }),
      GrpcCode.INVALID_ARGUMENT,
      'Decrypt wrong aad',
    );
    assert.equal(e1.details, 'decryption failed');
    for (const i of [0, 5, ct.length >> 1, ct.length - 1]) {
      const bad = Buffer.from(ct);
      bad[i] = (bad[i] ?? 0) ^ 1;
      const e = await expectCode(
        svc.crypto.unary('Decrypt', { ciphertext: bad, aad: Buffer.from('a') }),
        GrpcCode.INVALID_ARGUMENT,
        `Decrypt bit flip at ${i}`,
      );
      assert.equal(e.details, 'decryption failed', `bit flip at ${i}: message`);
    }
  });

  test('EncryptBatch / DecryptBatch: results in order, user errors per item', async () => {
    const items = Array.from({ length: 20 }, (_, i) => ({
      plaintext: Buffer.from(`item ${i}`),
      aad: Buffer.from('b'),
    }));
    const enc = await svc.crypto.unary<{ results: R[] }>('EncryptBatch', { items });
    assert.equal(enc.results.length, 20);
    const cts = enc.results.map((r, i) => {
      assert.equal(r.outcome, 'result', `EncryptBatch item ${i}: ${JSON.stringify(r.error)}`);
      return (r.result as R).ciphertext as Buffer;
    });
    const decItems = cts.map((ciphertext) => ({ ciphertext, aad: Buffer.from('b') }));
    decItems[3] = { ciphertext: Buffer.from('garbage garbage garbage garbage'), aad: Buffer.from('b') };
    decItems[7] = { ciphertext: cts[7] as Buffer, aad: Buffer.from('wrong') };
    const dec = await svc.crypto.unary<{ results: R[] }>('DecryptBatch', { items: decItems });
    dec.results.forEach((r, i) => {
      if (i === 3 || i === 7) {
        assert.equal(r.outcome, 'error', `DecryptBatch item ${i} should fail`);
        assert.deepEqual(r.error, {
          code: GrpcCode.INVALID_ARGUMENT,
          reason: 'DECRYPTION_FAILED',
          message: 'decryption failed',
        });
      } else {
        assert.equal(r.outcome, 'result', `DecryptBatch item ${i}`);
        assert.equal(((r.result as R).plaintext as Buffer).toString(), `item ${i}`);
      }
    });
  });

  test('GenerateDataKey / DecryptDataKey round trip for 16 and 32 byte keys', async () => {
    for (const length of [0, 16, 32]) {
      const g = await svc.crypto.unary<R>('GenerateDataKey', { aad: Buffer.from('obj-1'), length });
      const want = length === 0 ? 32 : length;
      assert.equal((g.plaintextKey as Buffer).length, want, `GenerateDataKey length ${length}`);
      const u = await svc.crypto.unary<R>('DecryptDataKey', {
        wrappedKey: g.wrappedKey,
        aad: Buffer.from('obj-1'),
      });
      assert.deepEqual(u.plaintextKey, g.plaintextKey, `DecryptDataKey length ${length}`);
      await expectCode(
        svc.crypto.unary('DecryptDataKey', { wrappedKey: g.wrappedKey, aad: Buffer.from('obj-2') }),
        GrpcCode.INVALID_ARGUMENT,
        'DecryptDataKey wrong aad',
      );
    }
  });

  test('Rewrap moves a ciphertext to the new primary version after a rotation, plaintext unchanged', async () => {
    const admin = d.client('admin');
    await admin.admin.unary('CreateCustomer', { org: 'acme', tenant: 'alpha', customer: 'rw' });
    const enc = await svc.crypto.unary<R>('Encrypt', {
      customer: 'rw',
      plaintext: Buffer.from('move me'),
      aad: Buffer.from('r'),
    });
    await admin.admin.unary('RotateCustomerKey', { org: 'acme', tenant: 'alpha', customer: 'rw' });
    const rw = await svc.crypto.unary<R>('Rewrap', { ciphertext: enc.ciphertext, aad: Buffer.from('r') });
    assert.equal(rw.keyVersion, 2, 'Rewrap keyVersion after rotation');
    const dec = await svc.crypto.unary<R>('Decrypt', { ciphertext: rw.ciphertext, aad: Buffer.from('r') });
    assert.equal((dec.plaintext as Buffer).toString(), 'move me');
    assert.equal(dec.keyVersion, 2);
  });
});

describe('streams', () => {
  const aad = Buffer.from('stream-ctx');
  const sizes = [
    { name: '0 bytes', n: 0 },
    { name: '1 byte', n: 1 },
    { name: 'exactly one chunk', n: CHUNK },
    { name: 'one chunk + 1', n: CHUNK + 1 },
    { name: '64 MiB', n: 64 * 1024 * 1024 },
  ];
  for (const s of sizes) {
    test(`EncryptStream/DecryptStream round trip: ${s.name}`, async () => {
      const data = s.n > 1024 * 1024 ? Buffer.alloc(s.n, 0xa5) : randomBytes(s.n);
      if (s.n > 1024 * 1024) randomBytes(4096).copy(data, s.n >> 1);
      const sealed = await streamEncrypt(svc.crypto, data, aad);
      const expectChunks = Math.max(1, Math.ceil(s.n / CHUNK));
      assert.equal(sealed.chunks.length, expectChunks, `${s.name}: sealed chunk count`);
      const back = await streamDecrypt(svc.crypto, sealed.header, sealed.chunks, aad);
      assert.equal(back.length, s.n, `${s.name}: decrypted length`);
      assert.ok(back.equals(data), `${s.name}: decrypted bytes differ`);
    });
  }

  test('truncated, reordered, swapped and tampered streams fail with "decryption failed"', async () => {
    const a = await streamEncrypt(svc.crypto, randomBytes(3 * CHUNK + 10), aad);
    const b = await streamEncrypt(svc.crypto, randomBytes(3 * CHUNK + 10), aad);
    const [c0, c1, c2, c3] = a.chunks as [Buffer, Buffer, Buffer, Buffer];
    const flipped = Buffer.from(c1);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] ?? 0) ^ 1;
    const cases = [
      { name: 'drop final chunk', header: a.header, chunks: [c0, c1, c2] },
      { name: 'only the header', header: a.header, chunks: [] },
      { name: 'reorder 1 and 2', header: a.header, chunks: [c0, c2, c1, c3] },
      { name: 'chunk from another stream', header: a.header, chunks: [c0, b.chunks[1] as Buffer, c2, c3] },
      { name: 'header of another stream', header: b.header, chunks: [c0, c1, c2, c3] },
      { name: 'duplicate chunk', header: a.header, chunks: [c0, c0, c1, c2, c3] },
      { name: 'bit flip', header: a.header, chunks: [c0, flipped, c2, c3] },
      { name: 'extra chunk after final', header: a.header, chunks: [c0, c1, c2, c3, c3] },
    ];
    for (const c of cases) {
      const e = await expectCode(
        streamDecrypt(svc.crypto, c.header, c.chunks, aad),
        GrpcCode.INVALID_ARGUMENT,
        `DecryptStream ${c.name}`,
      );
      assert.equal(e.details, 'decryption failed', `${c.name}: message`);
    }
    await expectCode(
      streamDecrypt(svc.crypto, a.header, a.chunks, Buffer.from('other')),
      GrpcCode.INVALID_ARGUMENT,
      'DecryptStream wrong aad',
    );
  });
});
