// Checkpoints signed by a non-extractable key in a real SoftHSM2 token (Pkcs11Hsm), verified
// offline with only the exported public key.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { verifyAuditFile } from '../../daemon/src/audit/audit-verifier.ts';
import { FileAuditSink } from '../../daemon/src/audit/file-audit-sink.ts';
import { hsmCheckpointSigner } from '../../daemon/src/audit/hsm-checkpoint-signer.ts';
import { loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';
import { Pkcs11Hsm } from '../../daemon/src/hsm/pkcs11-hsm.ts';
import { createTestToken } from '../support/softhsm-token.ts';
import type { TestToken } from '../support/softhsm-token.ts';
import { rec } from './audit-fixtures.ts';

describe('audit checkpoints signed in SoftHSM2', () => {
  let token: TestToken;
  let hsm: Pkcs11Hsm;
  let dir: string;
  before(async () => {
    token = createTestToken('kb-audit');
    hsm = await Pkcs11Hsm.open({ profile: loadProfile('softhsm2'), pin: token.pin, tokenLabel: token.label });
    dir = mkdtempSync(join(tmpdir(), 'kb-audit-hsm-'));
  });
  after(async () => {
    await hsm.close();
    token.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a chain checkpointed by the HSM key verifies; the same key is found again after reopen', async () => {
    const signer = await hsmCheckpointSigner(hsm);
    assert.equal(signer.alg, hsm.capabilities.signing[0]);
    const path = join(dir, 'audit.log');
    let sink = await FileAuditSink.open({ path, signer, checkpointEvery: 5 });
    await Promise.all(Array.from({ length: 12 }, (_, i) => sink.append(rec(i))));
    for (let i = 12; i < 17; i++) await sink.append(rec(i));
    await sink.close();

    const again = await hsmCheckpointSigner(hsm);
    assert.equal(again.publicKeyPem, signer.publicKeyPem, 'the existing key is reused, not regenerated');
    sink = await FileAuditSink.open({ path, signer: again, checkpointEvery: 5 });
    await sink.append(rec(99));
    await sink.close();

    const r = await verifyAuditFile(path, { publicKeys: [signer.publicKeyPem] });
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.equal(r.records, 18);
    assert.ok(r.checkpointsVerified >= 3, `verified ${r.checkpointsVerified} HSM-signed checkpoints`);
    assert.equal(r.checkpointsVerified, r.checkpoints);
  });
});
