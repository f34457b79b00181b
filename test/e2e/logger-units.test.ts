/** The redacting logger: secret-named fields are censored at any depth up to three. */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLoggers } from '../../daemon/src/obs/logger.ts';

test('secret fields are redacted; the request logger writes its fixed fields as given', () => {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString();
      cb();
    },
  });
  const { log, request } = createLoggers('debug', sink);
  log.info(
    {
      plaintext: 'PT-SECRET',
      pin: '123456-PIN',
      req: { ciphertext: 'CT-SECRET', aad: 'AAD-SECRET' },
      a: { b: { wrappedKey: 'WK-SECRET', plaintextKey: 'DK-SECRET', keyPem: 'PEM-SECRET' } },
      items: ['ITEM-SECRET'],
      keep: 'visible',
    },
    'x',
  );
  for (const s of [
    'PT-SECRET',
    '123456-PIN',
    'CT-SECRET',
    'AAD-SECRET',
    'WK-SECRET',
    'DK-SECRET',
    'PEM-SECRET',
    'ITEM-SECRET',
  ]) {
    assert.ok(!out.includes(s), `${s} must be redacted: ${out}`);
  }
  assert.ok(out.includes('visible') && out.includes('[redacted]'), out);
  out = '';
  request({ requestId: 'r1', rpc: 'keybroker.v1.Crypto/Encrypt', code: 'OK', latencyMs: 1.5 });
  const line = JSON.parse(out) as Record<string, unknown>;
  assert.equal(line.requestId, 'r1');
  assert.equal(line.msg, 'rpc');
});
