// Writes test/fixtures/golden/v1.json ONCE (run by hand when a new format version ships; never
// regenerate v1). The chain entry starts from a stand-in OEK (AES-KWP key bytes) so the whole
// hierarchy opens with no HSM: RFC 5649 in Node is byte-identical to SoftHSM's AES_KEY_WRAP_PAD.
import { createCipheriv, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { BlobType, sealEnvelope } from '../../daemon/src/wire/envelope-v1.ts';
import { StreamSealer } from '../../daemon/src/wire/stream-v1.ts';
import { deriveTek, frameWrappedTek, wrapCek } from '../../daemon/src/wire/wrapped-key-v1.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const oek = randomBytes(32);
const rawTek = randomBytes(32);
const id = { org: 'golden-org', tenant: 'golden-tenant', customer: 'golden-customer' };
const c = createCipheriv('id-aes256-wrap-pad', oek, Buffer.from('a65959a6', 'hex'));
const wrappedTek = frameWrappedTek('aes-kwp', Buffer.concat([c.update(rawTek), c.final()]));
const tek = deriveTek(rawTek, id.org, id.tenant, 2);
const cek = randomBytes(32);
const wrappedCek = wrapCek(tek, { ...id, cekVersion: 5, tekVersion: 2 }, cek);
const aad = new TextEncoder().encode('golden encryption context');
const pt = new TextEncoder().encode('keybroker format v1 golden plaintext');
const dataKey = randomBytes(32);
const parts = [randomBytes(32), randomBytes(32), randomBytes(7)];
const s = new StreamSealer(cek, { ...id, cekVersion: 5 }, aad, 32);
const chunks = parts.map((p, i) => s.seal(p, i === parts.length - 1));

const golden = {
  note: 'Format v1 golden blobs. Never regenerate: they must decrypt forever (test/wire/golden.test.ts).',
  identity: { ...id, tekVersion: 2, cekVersion: 5 },
  oekKwpKey: hex(oek),
  wrappedTek: hex(wrappedTek),
  rawTek: hex(rawTek),
  effectiveTek: hex(tek),
  wrappedCek: hex(wrappedCek),
  cek: hex(cek),
  aad: hex(aad),
  ciphertext: {
    plaintext: hex(pt),
    blob: hex(sealEnvelope(cek, { type: BlobType.ciphertext, ...id, cekVersion: 5 }, pt, aad)),
  },
  wrappedDataKey: {
    plaintext: hex(dataKey),
    blob: hex(sealEnvelope(cek, { type: BlobType.wrappedDataKey, ...id, cekVersion: 5 }, dataKey, aad)),
  },
  stream: { chunkBytes: 32, header: hex(s.header), chunks: chunks.map(hex), plaintext: parts.map(hex) },
};
writeFileSync(
  resolve(import.meta.dirname, '../fixtures/golden/v1.json'),
  JSON.stringify(golden, null, 2) + '\n',
);
