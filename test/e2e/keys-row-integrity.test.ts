/**
 * Review M5 / reproduction E9 against the real daemon over gRPC + mTLS: with the daemon stopped,
 * the stored public keys of an ML-DSA-65 and an ML-KEM-768 key are swapped for an attacker's in
 * the tenant's SQLite file. After the restart GetPublicKey, Verify (of the attacker's signature),
 * GetJwks, Encapsulate and SealBox refuse with DATA_LOSS "stored key failed its integrity check"
 * (naming the key), and Sign refuses too; an untouched key of the tenant keeps working.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { ServiceError } from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import { GrpcCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
const dirs: string[] = [];
after(() => {
  for (const d of dirs) removeDataDir(d);
});

async function failure(call: () => Promise<unknown>): Promise<[string, string]> {
  try {
    await call();
    return ['OK', ''];
  } catch (err) {
    const e = err as ServiceError;
    if (typeof e.code !== 'number') throw err;
    return [GrpcCode[e.code] ?? String(e.code), e.details];
  }
}

test('E9 over gRPC: swapped public keys are refused by every public-key RPC (DATA_LOSS), Sign too', async () => {
  let d = await startDaemon();
  const dataDir = d.dataDir;
  dirs.push(dataDir);
  let svc = d.client('service');
  await svc.keys.unary('CreateKey', { keyId: 'sig', algorithm: 'KEY_ALGORITHM_ML_DSA_65' });
  await svc.keys.unary('CreateKey', { keyId: 'kem', algorithm: 'KEY_ALGORITHM_ML_KEM_768' });
  await svc.keys.unary('CreateKey', { keyId: 'ok', algorithm: 'KEY_ALGORITHM_ED25519' });
  assert.equal(await d.stop(), 0);

  const evilSig = generateKeyPairSync('ml-dsa-65');
  const evilKem = generateKeyPairSync('ml-kem-768');
  const dir = join(dataDir, 'tenants', 'acme');
  const file = readdirSync(dir).find((f) => f.startsWith('alpha.') && f.endsWith('.db'));
  assert.ok(file, 'the tenant file');
  const db = new Database(join(dir, file), { fileMustExist: true });
  db.prepare("UPDATE tenant_keys SET public_key = ? WHERE key_id = 'sig'").run(
    evilSig.publicKey.export({ format: 'raw-public' }),
  );
  db.prepare("UPDATE tenant_keys SET public_key = ? WHERE key_id = 'kem'").run(
    evilKem.publicKey.export({ format: 'raw-public' }),
  );
  db.close();

  d = await startDaemon({ dataDir });
  try {
    svc = d.client('service');
    const msg = Buffer.from('pay 1,000,000 to mallory');
    const refused = (key: string): [string, string] => [
      'DATA_LOSS',
      `stored key failed its integrity check: key ${key} version 1`,
    ];
    const calls: [string, () => Promise<unknown>, string][] = [
      [
        'GetPublicKey sig',
        () => svc.keys.unary('GetPublicKey', { keyId: 'sig', format: 'PUBLIC_KEY_FORMAT_RAW' }),
        'sig',
      ],
      [
        'GetPublicKey kem',
        () => svc.keys.unary('GetPublicKey', { keyId: 'kem', format: 'PUBLIC_KEY_FORMAT_RAW' }),
        'kem',
      ],
      [
        "Verify of the attacker's signature",
        () =>
          svc.keys.unary('Verify', {
            keyId: 'sig',
            message: msg,
            signature: sign(null, msg, evilSig.privateKey),
          }),
        'sig',
      ],
      ['GetJwks', () => svc.keys.unary('GetJwks', {}), 'sig'],
      ['Encapsulate', () => svc.keys.unary('Encapsulate', { keyId: 'kem' }), 'kem'],
      [
        'SealBox',
        () => svc.keys.unary('SealBox', { keyId: 'kem', plaintext: Buffer.from('for mallory') }),
        'kem',
      ],
      ['Sign', () => svc.keys.unary('Sign', { keyId: 'sig', message: msg }), 'sig'],
    ];
    for (const [what, p, key] of calls) assert.deepEqual(await failure(p), refused(key), what);
    const s = await svc.keys.unary<R>('Sign', { keyId: 'ok', message: msg });
    const v = await svc.keys.unary<R>('Verify', { keyId: 'ok', message: msg, signature: s.signature });
    assert.equal(v.valid, true, 'an untouched key of the tenant keeps working');
    // The log line of the last refusal may arrive just after its answer.
    await d.waitFor((l) => l.rpc === 'keybroker.v1.Keys/Sign' && l.error === 'KEY_INTEGRITY', 10_000);
    const logged = d.lines.filter((l) => l.error === 'KEY_INTEGRITY');
    assert.ok(logged.length >= 7, `each refusal is logged for the operator (${logged.length})`);
    assert.ok(
      logged.every((l) => l.level === 'error'),
      `server errors are logged at error: ${JSON.stringify(logged[0])}`,
    );
  } finally {
    assert.equal(await d.stop(), 0);
  }
});
