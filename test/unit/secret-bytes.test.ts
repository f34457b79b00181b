import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inspect } from 'node:util';
import { ERRORS, GrpcStatus, KbError, toKbError } from '../../daemon/src/errors.ts';
import { customerId, keyVersion, orgId } from '../../daemon/src/ids.ts';
import { SecretBytes } from '../../daemon/src/util/secret-bytes.ts';

test('SecretBytes never prints its bytes and is zeroed on destroy', () => {
  const raw = Uint8Array.from([0xde, 0xad, 0xbe, 0xef]);
  const s = new SecretBytes(raw);
  for (const shown of [JSON.stringify({ s }), inspect(s), String(s), `${s}`]) {
    assert.ok(!/de|ad|be|ef|222|173/.test(shown.replace('[secret]', '')), `leaked: ${shown}`);
    assert.ok(shown.includes('[secret]'), `no placeholder in ${shown}`);
  }
  s.destroy();
  assert.deepEqual([...raw], [0, 0, 0, 0]);
  assert.throws(() => s.expose(), /destroyed/);
});

test('every registered error maps to a non-OK gRPC status', () => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    assert.notEqual(spec.status, GrpcStatus.OK, code);
    assert.ok(spec.message.length > 0, code);
  }
  const e = toKbError(new Error('secret detail'));
  assert.equal(e.code, 'INTERNAL');
  assert.ok(!e.safeMessage.includes('secret detail'));
  assert.equal(new KbError('NOT_FOUND', 'tenant').safeMessage, 'not found: tenant');
});

test('ids reject unsafe names', () => {
  for (const bad of ['', 'A', '../x', 'a/b', 'x'.repeat(64), 3, null]) {
    assert.throws(() => orgId(bad), KbError, `orgId(${String(bad)})`);
  }
  assert.equal(customerId('cust-1'), 'cust-1');
  assert.throws(() => keyVersion(0), KbError);
  assert.equal(keyVersion(7), 7);
});
