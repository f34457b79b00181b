/**
 * A policy set over the API is durable: written into the data dir (no policy.file configured),
 * loaded again after a restart, and never replaced by a refused document.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DEFAULT_POLICY_TEXT } from '../../daemon/src/policy/default-policy.ts';
import { removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import { GrpcCode, expectCode } from './e2e-helpers.ts';

type R = Record<string, unknown>;
const sha = (t: string) => createHash('sha256').update(t, 'utf8').digest('hex');

test('SetPolicy without policy.file persists into the data dir and survives a restart', async () => {
  // acme is the operator org: its admins replace the daemon-wide policy.
  const d = await startDaemon({ env: { KB_POLICY_OPERATOR_ORG: 'acme' } });
  const persisted = join(d.dataDir, 'policy.json');
  const admin = d.client('admin');
  try {
    assert.equal(existsSync(persisted), false, 'no persisted policy before any SetPolicy');
    await expectCode(
      admin.policy.unary('SetPolicy', { policyJson: '{"version":1,"rules":[{"id":"x"}]}' }),
      GrpcCode.INVALID_ARGUMENT,
      'SetPolicy with an invalid document',
    );
    assert.equal(existsSync(persisted), false, 'a refused document was written');
    const text = JSON.stringify({ ...JSON.parse(DEFAULT_POLICY_TEXT), fipsMode: true });
    const set = await admin.policy.unary<R>('SetPolicy', { policyJson: text });
    assert.equal(set.policySha256, sha(text));
    assert.equal(readFileSync(persisted, 'utf8'), text, 'the persisted text');
  } finally {
    assert.equal(await d.stop(), 0);
  }
  const again = await startDaemon({ dataDir: d.dataDir, env: { KB_POLICY_OPERATOR_ORG: 'acme' } });
  try {
    const now = await again.client('admin').policy.unary<R>('GetPolicy', {});
    assert.deepEqual(
      [now.policySha256, now.fipsMode],
      [sha(JSON.stringify({ ...JSON.parse(DEFAULT_POLICY_TEXT), fipsMode: true })), true],
    );
  } finally {
    assert.equal(await again.stop(), 0);
    removeDataDir(again.dataDir);
  }
});
