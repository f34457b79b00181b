// Every shipped v1 blob type must keep opening forever: golden files from test/fixtures/golden/.
import assert from 'node:assert/strict';
import { createDecipheriv } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { BlobType, openEnvelope, parseEnvelope } from '../../daemon/src/wire/envelope-v1.ts';
import { parseStreamHeader, StreamOpener } from '../../daemon/src/wire/stream-v1.ts';
import { deriveTek, unframeWrappedTek, unwrapCek } from '../../daemon/src/wire/wrapped-key-v1.ts';

interface Golden {
  identity: { org: string; tenant: string; customer: string; tekVersion: number; cekVersion: number };
  oekKwpKey: string;
  wrappedTek: string;
  rawTek: string;
  effectiveTek: string;
  wrappedCek: string;
  cek: string;
  aad: string;
  ciphertext: { plaintext: string; blob: string };
  wrappedDataKey: { plaintext: string; blob: string };
  stream: { chunkBytes: number; header: string; chunks: string[]; plaintext: string[] };
}
const g = JSON.parse(
  readFileSync(resolve(import.meta.dirname, '../fixtures/golden/v1.json'), 'utf8'),
) as Golden;
const b = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
const hex = (u: Uint8Array): string => Buffer.from(u).toString('hex');
const id = g.identity;

test('golden v1 chain: OEK (KWP) -> wrapped TEK -> effective TEK -> wrapped CEK -> CEK', () => {
  const d = createDecipheriv('id-aes256-wrap-pad', b(g.oekKwpKey), Buffer.from('a65959a6', 'hex'));
  const raw = Buffer.concat([d.update(unframeWrappedTek('aes-kwp', b(g.wrappedTek))), d.final()]);
  assert.equal(raw.toString('hex'), g.rawTek, 'wrapped TEK');
  assert.equal(hex(deriveTek(raw, id.org, id.tenant, id.tekVersion)), g.effectiveTek, 'TEK derivation');
  const cek = unwrapCek(b(g.effectiveTek), { ...id }, b(g.wrappedCek));
  assert.equal(hex(cek), g.cek, 'wrapped CEK');
});

test('golden v1 ciphertext and wrapped data key open', () => {
  for (const [name, entry, type] of [
    ['ciphertext', g.ciphertext, BlobType.ciphertext],
    ['wrapped data key', g.wrappedDataKey, BlobType.wrappedDataKey],
  ] as const) {
    const p = parseEnvelope(b(entry.blob));
    assert.deepEqual(
      [p.type, p.org, p.tenant, p.customer, p.cekVersion],
      [type, id.org, id.tenant, id.customer, id.cekVersion],
      name,
    );
    assert.equal(hex(openEnvelope(b(g.cek), p, b(g.aad))), entry.plaintext, name);
  }
});

test('golden v1 stream opens chunk by chunk and finishes', () => {
  const p = parseStreamHeader(b(g.stream.header));
  assert.equal(p.chunkBytes, g.stream.chunkBytes);
  const o = new StreamOpener(b(g.cek), p, b(g.aad));
  const out = g.stream.chunks.map((c, i) => {
    const r = o.open(b(c));
    assert.equal(r.final, i === g.stream.chunks.length - 1, `final flag of chunk ${i}`);
    return hex(r.plaintext);
  });
  o.finish();
  assert.deepEqual(out, g.stream.plaintext);
});
