// Format v1 streams: STREAM chunked AEAD. Truncation, reordering, chunk swaps, bit flips, wrong AAD.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import {
  MAX_CHUNK_BYTES,
  parseStreamHeader,
  StreamOpener,
  StreamSealer,
} from '../../daemon/src/wire/stream-v1.ts';

const ID = { org: 'acme', tenant: 't1', customer: 'default', cekVersion: 1 };
const cek = randomBytes(32);
const aad = new TextEncoder().encode('stream ctx');
const failed = (e: unknown): boolean => e instanceof KbError && e.code === 'DECRYPTION_FAILED';

function sealAll(parts: Uint8Array[], chunk = 16): { header: Uint8Array; chunks: Uint8Array[] } {
  const s = new StreamSealer(cek, ID, aad, chunk);
  return { header: s.header, chunks: parts.map((p, i) => s.seal(p, i === parts.length - 1)) };
}

function openAll(header: Uint8Array, chunks: Uint8Array[], a = aad, k: Uint8Array = cek): Uint8Array[] {
  const o = new StreamOpener(k, parseStreamHeader(header), a);
  const out = chunks.map((c) => o.open(c).plaintext);
  o.finish();
  return out;
}

const parts = [randomBytes(16), randomBytes(16), randomBytes(5)];

test('stream round trip, including an empty final chunk and a single-chunk stream', () => {
  for (const ps of [parts, [randomBytes(16), new Uint8Array(0)], [randomBytes(3)]]) {
    const { header, chunks } = sealAll(ps);
    assert.deepEqual(
      openAll(header, chunks).map((b) => Buffer.from(b).toString('hex')),
      ps.map((b) => Buffer.from(b).toString('hex')),
    );
  }
});

test('truncation, reordering, duplication and cross-stream swaps fail', () => {
  const a = sealAll(parts);
  const b = sealAll(parts);
  const c0 = a.chunks[0] as Uint8Array;
  const c1 = a.chunks[1] as Uint8Array;
  const c2 = a.chunks[2] as Uint8Array;
  const cases: [string, Uint8Array, Uint8Array[]][] = [
    ['final chunk dropped', a.header, [c0, c1]],
    ['only the first chunk', a.header, [c0]],
    ['chunks swapped', a.header, [c1, c0, c2]],
    ['chunk duplicated', a.header, [c0, c0, c1, c2]],
    ['chunk from another stream', a.header, [c0, b.chunks[1] as Uint8Array, c2]],
    ['header of another stream', b.header, a.chunks],
    ['chunk after final', a.header, [c0, c1, c2, c2]],
  ];
  for (const [name, h, cs] of cases) assert.throws(() => openAll(h, cs), failed, name);
});

test('every bit flip of header and chunks, every truncation of a chunk, and wrong AAD fail', () => {
  const { header, chunks } = sealAll(parts);
  for (let i = 0; i < header.length * 8; i++) {
    const h = Uint8Array.from(header);
    h[i >> 3] = (h[i >> 3] as number) ^ (1 << (i & 7));
    assert.throws(() => openAll(h, chunks), failed, `header bit ${i}`);
  }
  for (let ci = 0; ci < chunks.length; ci++) {
    const c = chunks[ci] as Uint8Array;
    for (let i = 0; i < c.length * 8; i++) {
      const t = chunks.map((x) => Uint8Array.from(x));
      const tc = t[ci] as Uint8Array;
      tc[i >> 3] = (tc[i >> 3] as number) ^ (1 << (i & 7));
      assert.throws(() => openAll(header, t), failed, `chunk ${ci} bit ${i}`);
    }
    for (let n = 0; n < c.length; n++) {
      const t = [...chunks];
      t[ci] = c.subarray(0, n);
      assert.throws(() => openAll(header, t), failed, `chunk ${ci} truncated to ${n}`);
    }
  }
  assert.throws(() => openAll(header, chunks, new Uint8Array(0)), failed, 'empty AAD');
  assert.throws(() => openAll(header, chunks, aad, randomBytes(32)), failed, 'other key');
});

test('chunk size bounds: over-size chunks are refused on both sides', () => {
  assert.throws(() => new StreamSealer(cek, ID, aad, MAX_CHUNK_BYTES + 1), /chunk size/);
  const s = new StreamSealer(cek, ID, aad, 16);
  assert.throws(
    () => s.seal(randomBytes(17), false),
    (e: unknown) => e instanceof KbError && e.code === 'TOO_LARGE',
  );
  const { header } = sealAll(parts);
  const o = new StreamOpener(cek, parseStreamHeader(header), aad);
  assert.throws(() => o.open(randomBytes(1 + 17 + 16)), failed, 'oversized sealed chunk');
});
