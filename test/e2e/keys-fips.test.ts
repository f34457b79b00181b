/**
 * FIPS mode (config policy.fipsMode) and the Keys service: X-Wing (contains X25519) and Ed25519
 * are refused at creation and, for keys made before the mode was switched on, at every use;
 * ML-KEM, ML-DSA, ECDSA P-256 and the ML-DSA-65+ECDSA-P256 composite stay allowed. The
 * decision is the policy engine's, reached through the call gate with the key's algorithm.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

let d: DaemonHandle;
let dataDir: string;
const FIPS = { KB_POLICY_FIPS_MODE: 'true' };

before(async () => {
  // Keys made while FIPS mode is off, then the daemon restarts with it on.
  const pre = await startDaemon();
  dataDir = pre.dataDir;
  const svc = pre.client('service');
  await svc.keys.unary('CreateKey', { keyId: 'old-xwing', algorithm: 'KEY_ALGORITHM_X_WING' });
  await svc.keys.unary('CreateKey', { keyId: 'old-ed', algorithm: 'KEY_ALGORITHM_ED25519' });
  assert.equal(await pre.stop(), 0);
  d = await startDaemon({ dataDir, env: FIPS });
});
after(async () => {
  await d.stop();
  removeDataDir(dataDir);
});

test('FIPS mode: X-Wing and Ed25519 cannot be created; approved algorithms can', async () => {
  const svc = d.client('service');
  const cases = [
    { alg: 'KEY_ALGORITHM_X_WING', allowed: false },
    { alg: 'KEY_ALGORITHM_ED25519', allowed: false },
    { alg: 'KEY_ALGORITHM_ML_KEM_768', allowed: true },
    { alg: 'KEY_ALGORITHM_ML_DSA_65', allowed: true },
    { alg: 'KEY_ALGORITHM_ECDSA_P256', allowed: true },
    { alg: 'KEY_ALGORITHM_COMPOSITE_MLDSA65_ECDSA_P256', allowed: true },
  ];
  for (const c of cases) {
    const keyId = `k-${c.alg.slice(14).toLowerCase().replace(/_/g, '-')}`;
    const p = svc.keys.unary('CreateKey', { keyId, algorithm: c.alg });
    if (c.allowed) await p;
    else {
      const e = await expectCode(p, GrpcCode.FAILED_PRECONDITION, `CreateKey ${c.alg} in FIPS mode`);
      assert.match(String(e.details), /algorithm not allowed/, `${c.alg}: ${e.details}`);
    }
  }
});

test('FIPS mode: keys of refused algorithms made earlier cannot be used', async () => {
  const svc = d.client('service');
  await expectCode(
    svc.keys.unary('Encapsulate', { keyId: 'old-xwing' }),
    GrpcCode.FAILED_PRECONDITION,
    'Encapsulate X-Wing',
  );
  await expectCode(
    svc.keys.unary('EncapsulateBatch', { keyId: 'old-xwing', count: 4 }),
    GrpcCode.FAILED_PRECONDITION,
    'EncapsulateBatch X-Wing',
  );
  await expectCode(
    svc.keys.unary('OpenBox', { keyId: 'old-xwing', sealed: Buffer.alloc(1200) }),
    GrpcCode.FAILED_PRECONDITION,
    'OpenBox X-Wing',
  );
  await expectCode(
    svc.keys.unary('Sign', { keyId: 'old-ed', message: Buffer.from('m') }),
    GrpcCode.FAILED_PRECONDITION,
    'Sign Ed25519',
  );
  const ok = await svc.keys.unary<{ signature: Buffer }>('Sign', {
    keyId: 'k-ml-dsa-65',
    message: Buffer.from('m'),
  });
  assert.equal(ok.signature.length, 3309, 'ML-DSA-65 signs in FIPS mode');
});
