// Writes test/fixtures/golden/tkey-v1.json ONCE (run by hand; never regenerate): the stored forms
// of tenant-owned (asymmetric private) keys. 0x11 as written up to the bound format (under a TEK,
// and under a customer's CEK itself), and 0x13 (bound row, under a TEK and under the key derived
// from a CEK). The KEK bytes are given, so the blobs open with no HSM.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { wrapBoundKey, wrapTenantKey, type BoundKeyIdentity } from '../../daemon/src/wire/wrapped-key-v1.ts';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const tek = randomBytes(32);
const cek = randomBytes(32);
const secret = randomBytes(64);
const base = { org: 'golden-org', tenant: 'golden-tenant', keyId: 'golden-key', keyVersion: 3 };
const legacyTek = { ...base, tekVersion: 2 };
const legacyCek = { ...base, tekVersion: 5 };
const boundTek: BoundKeyIdentity = {
  ...base,
  kek: 'tek',
  customer: '',
  kekVersion: 2,
  binding: randomBytes(32),
};
const boundCek: BoundKeyIdentity = {
  ...base,
  kek: 'cek',
  customer: 'golden-customer',
  kekVersion: 5,
  binding: randomBytes(32),
};
const idJson = (id: BoundKeyIdentity) => ({ ...id, binding: hex(id.binding) });

const golden = {
  note: 'Stored tenant-owned key blobs (0x11, 0x13). Never regenerate: they must open forever (test/wire/wrapped-key-bound.test.ts).',
  tek: hex(tek),
  cek: hex(cek),
  secret: hex(secret),
  legacyUnderTek: { identity: legacyTek, blob: hex(wrapTenantKey(tek, legacyTek, secret)) },
  legacyUnderCek: { identity: legacyCek, blob: hex(wrapTenantKey(cek, legacyCek, secret)) },
  boundUnderTek: { identity: idJson(boundTek), blob: hex(wrapBoundKey(tek, boundTek, secret)) },
  boundUnderCek: { identity: idJson(boundCek), blob: hex(wrapBoundKey(cek, boundCek, secret)) },
};
writeFileSync(
  resolve(import.meta.dirname, '../fixtures/golden/tkey-v1.json'),
  JSON.stringify(golden, null, 2) + '\n',
);
