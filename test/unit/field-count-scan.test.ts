/**
 * The pre-decode field count of requests (field-count-scan.ts): valid messages pass, floods of
 * empty items or of fields nested inside items are caught at the bound, and broken wire format is
 * malformed; every method of every service is wired through safeService.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nestedFieldsOf, scanFieldCount } from '../../daemon/src/api/field-count-scan.ts';
import {
  MALFORMED,
  TOO_MANY_FIELDS,
  loadKeybrokerPackage,
  maxRequestFields,
  safeService,
} from '../../daemon/src/api/proto-definitions.ts';

const pkg = loadKeybrokerPackage();
const types = nestedFieldsOf(pkg);
const BATCH = 'keybroker.v1.EncryptBatchRequest';
const serialize = (method: string, msg: object): Buffer =>
  (pkg['keybroker.v1.Crypto'] as unknown as Record<string, { requestSerialize: (m: object) => Buffer }>)[
    method
  ]!.requestSerialize(msg);

test('scan: valid, over the bound, malformed', () => {
  const items = (n: number) =>
    Array.from({ length: n }, () => ({ plaintext: Buffer.from('x'), aad: Buffer.from('a') }));
  const repeat = (bytes: number[], n: number) => Buffer.from(Array.from({ length: n }, () => bytes).flat());
  const cases: { name: string; buf: Uint8Array; type?: string; limit: number; want: string }[] = [
    { name: 'empty message', buf: new Uint8Array(0), limit: 10, want: 'ok' },
    {
      name: '1000 real items (3 tags each)',
      buf: serialize('EncryptBatch', { items: items(1000) }),
      limit: 3000,
      want: 'ok',
    },
    {
      name: 'the same, one tag short',
      buf: serialize('EncryptBatch', { items: items(1000) }),
      limit: 2999,
      want: 'too-many-fields',
    },
    { name: '3 M empty items', buf: repeat([0x0a, 0x00], 3_000_000), limit: 9024, want: 'too-many-fields' },
    // one item holding 5000 empty plaintext fields: the nested fields count too
    {
      name: 'fields nested in one item',
      buf: Buffer.concat([Buffer.from([0x0a, 0x90, 0x4e]), repeat([0x12, 0x00], 5000)]),
      limit: 1000,
      want: 'too-many-fields',
    },
    {
      name: 'bytes field holding tag-like bytes (not a message)',
      buf: serialize('Encrypt', { plaintext: repeat([0x0a, 0x00], 5000) }),
      type: 'keybroker.v1.EncryptRequest',
      limit: 10,
      want: 'ok',
    },
    { name: 'truncated varint', buf: Buffer.from([0x08, 0x80]), limit: 10, want: 'malformed' },
    { name: 'length past the end', buf: Buffer.from([0x0a, 0x05, 0x00]), limit: 10, want: 'malformed' },
    { name: 'fixed64 past the end', buf: Buffer.from([0x09, 0x00, 0x00]), limit: 10, want: 'malformed' },
    { name: 'wire type 7', buf: Buffer.from([0x0f]), limit: 10, want: 'malformed' },
  ];
  for (const c of cases) assert.equal(scanFieldCount(types, c.type ?? BATCH, c.buf, c.limit), c.want, c.name);
});

test('safeService: every method refuses a flood of empty fields undecoded, and decodes a valid request', () => {
  const flood = Buffer.alloc(2 * (maxRequestFields(1000) + 1));
  for (let i = 0; i < flood.length; i += 2) flood[i] = 0x0a;
  for (const name of ['Admin', 'Crypto', 'Keys', 'Approvals', 'Policy']) {
    const svc = safeService(pkg, `keybroker.v1.${name}`, 16 << 20, maxRequestFields(1000));
    for (const [method, def] of Object.entries(svc)) {
      const got = def.requestDeserialize(flood);
      assert.equal(got, TOO_MANY_FIELDS, `${name}/${method}`);
      const ok: unknown = def.requestDeserialize(Buffer.alloc(0));
      assert.notEqual(ok, MALFORMED, `${name}/${method}: empty request decodes`);
      assert.equal(typeof ok, 'object', `${name}/${method}: empty request decodes`);
    }
  }
});
