// `keybroker doctor` run as the CLI (a child process) against real tokens: it passes for the
// softhsm2 and opencryptoki profiles and fails, naming the mechanism and why it matters, for
// profiles that ask a token for something it lacks.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PROFILES_DIR } from '../../daemon/src/hsm/hsm-profile.ts';
import {
  OPENCRYPTOKI_MODULE,
  createOpenCryptokiToken,
  openCryptokiUnavailable,
} from '../support/opencryptoki-token.ts';
import type { OpenCryptokiToken } from '../support/opencryptoki-token.ts';
import { REPO_ROOT, createTestToken } from '../support/softhsm-token.ts';
import type { TestToken } from '../support/softhsm-token.ts';

interface Run {
  status: number | null;
  out: string;
}

function doctor(args: string[], env: Record<string, string>): Run {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'daemon/src/cli/main.ts'), 'doctor', ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** A copy of a shipped profile with `change` applied, written to `dir`. */
function variant(dir: string, base: string, name: string, change: Record<string, unknown>): string {
  const profile = JSON.parse(readFileSync(join(PROFILES_DIR, `${base}.json`), 'utf8')) as Record<
    string,
    unknown
  >;
  delete profile.$schema;
  const file = join(dir, `${name}.json`);
  writeFileSync(file, JSON.stringify({ ...profile, name, ...change }));
  return file;
}

const tmp = mkdtempSync(join(tmpdir(), 'kb-doctor-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('keybroker doctor on SoftHSM2', () => {
  let token: TestToken;
  let env: Record<string, string>;
  before(() => {
    token = createTestToken('kb-doctor');
    env = { SOFTHSM2_CONF: token.conf, KB_HSM_PIN: token.pin };
  });
  after(() => token?.cleanup());

  it('passes for the softhsm2 profile and lists every required mechanism', () => {
    const r = doctor(['--profile', 'softhsm2', '--token-label', token.label], env);
    assert.equal(r.status, 0, `doctor --profile softhsm2 exited ${r.status}:\n${r.out}`);
    for (const line of [
      'PASS  mechanism CKM_AES_KEY_WRAP_PAD: wrap, unwrap',
      'PASS  mechanism CKM_AES_GCM: encrypt, decrypt',
      'PASS  mechanism CKM_ECDSA: sign',
      'PASS  root key: generated; sensitive, never extractable, CKA_VALUE read gives CKR_ATTRIBUTE_SENSITIVE',
      'PASS  wrap/unwrap',
      'PASS  aes-gcm',
      'PASS  sign ecdsa-p256',
      'PASS  cleanup: 2 scratch key(s) destroyed',
      'doctor: OK',
    ]) {
      assert.ok(r.out.includes(line), `missing "${line}" in:\n${r.out}`);
    }
    assert.ok(!r.out.includes(token.pin), 'the PIN appeared in the report');
  });

  it('fails naming a mechanism the token lacks, with why it matters', () => {
    const file = variant(tmp, 'softhsm2', 'softhsm2-made-up', {
      extraMechanisms: [{ mechanism: '0x8000beef', why: 'made-up vendor mechanism for this test' }],
    });
    const r = doctor(['--profile', file, '--token-label', token.label], env);
    assert.equal(r.status, 1, `doctor exited ${r.status}:\n${r.out}`);
    assert.match(
      r.out,
      /FAIL {2}mechanism 0x8000beef: absent from the token\n {6}why it matters: made-up vendor mechanism/,
    );
    assert.match(r.out, /doctor: FAILED \(\d+ passed, 1 failed/);
  });

  it('fails for CBC-PAD wrapping on SoftHSM 2.6.1 (the Barbican case): present, but not for wrap', () => {
    const file = variant(tmp, 'softhsm2', 'softhsm2-cbc-pad', { wrap: 'aes-cbc-pad-hmac-sha256' });
    const r = doctor(['--profile', file, '--token-label', token.label], env);
    assert.equal(r.status, 1, r.out);
    assert.match(
      r.out,
      /FAIL {2}mechanism CKM_AES_CBC_PAD: present but not for wrap, unwrap\n {6}why it matters: profile wrap "aes-cbc-pad-hmac-sha256"/,
    );
    assert.match(r.out, /SKIP {2}wrap\/unwrap: needs CKM_AES_CBC_PAD/);
    assert.match(r.out, /PASS {2}cleanup/);
  });

  it('fails with a wrong PIN without printing it, and refuses to run without a PIN', () => {
    const wrongPin = 'wrong-pin-0x1234';
    const r = doctor(['--profile', 'softhsm2', '--token-label', token.label], {
      ...env,
      KB_HSM_PIN: wrongPin,
    });
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /FAIL {2}open: .*CKR_PIN_INCORRECT/);
    assert.ok(!r.out.includes(wrongPin), 'the wrong PIN appeared in the output');
    const none = doctor(['--profile', 'softhsm2'], { SOFTHSM2_CONF: token.conf, KB_HSM_PIN: '' });
    assert.notEqual(none.status, 0);
    assert.match(none.out, /no PIN/);
  });

  it('--json prints a machine-readable report', () => {
    const r = doctor(['--profile', 'softhsm2', '--token-label', token.label, '--json'], env);
    assert.equal(r.status, 0, r.out);
    const report = JSON.parse(r.out) as { ok: boolean; checks: { status: string; name: string }[] };
    assert.equal(report.ok, true);
    assert.ok(report.checks.some((c) => c.name === 'wrap/unwrap' && c.status === 'pass'));
  });
});

describe('keybroker doctor on opencryptoki', () => {
  const why = openCryptokiUnavailable();
  let token: OpenCryptokiToken | undefined;
  before(() => {
    if (!why) token = createOpenCryptokiToken('kb-doctor');
  });
  after(() => token?.cleanup());

  it('passes for the opencryptoki profile', (t) => {
    if (why || !token) return t.skip(why ?? 'no token');
    const r = doctor(['--profile', 'opencryptoki', '--token-label', token.label], { KB_HSM_PIN: token.pin });
    assert.equal(r.status, 0, `doctor --profile opencryptoki exited ${r.status}:\n${r.out}`);
    for (const line of [
      'PASS  mechanism CKM_AES_CBC_PAD: wrap, unwrap',
      'PASS  mechanism CKM_SHA256_HMAC: sign, verify',
      'PASS  wrap/unwrap: aes-cbc-pad-hmac-sha256',
      'PASS  sign rsa-pss-sha256-3072',
      'INFO  aes-gcm: not declared',
      'doctor: OK',
    ]) {
      assert.ok(r.out.includes(line), `missing "${line}" in:\n${r.out}`);
    }
  });

  it('fails precisely for a profile that asks opencryptoki for AES-GCM', (t) => {
    if (why || !token) return t.skip(why ?? 'no token');
    const file = variant(tmp, 'opencryptoki', 'opencryptoki-with-gcm', { aesGcm: true });
    const r = doctor(['--profile', file, '--token-label', token.label], { KB_HSM_PIN: token.pin });
    assert.equal(r.status, 1, r.out);
    assert.match(
      r.out,
      /FAIL {2}mechanism CKM_AES_GCM: absent from the token\n {6}why it matters: profile declares aesGcm: true/,
    );
    assert.match(r.out, /SKIP {2}aes-gcm: needs CKM_AES_GCM/);
    assert.match(r.out, /PASS {2}wrap\/unwrap/, 'the rest of the profile still checks out');
  });

  it("fails precisely for softhsm2's mechanism choices on opencryptoki (no AES key wrap, no EC)", (t) => {
    if (why || !token) return t.skip(why ?? 'no token');
    const file = variant(tmp, 'softhsm2', 'softhsm2-choices-on-ock', {
      module: { paths: [OPENCRYPTOKI_MODULE] },
      allowedMechanisms: false,
    });
    const r = doctor(['--profile', file, '--token-label', token.label], { KB_HSM_PIN: token.pin });
    assert.equal(r.status, 1, r.out);
    for (const m of ['CKM_AES_KEY_WRAP_PAD', 'CKM_AES_GCM', 'CKM_EC_KEY_PAIR_GEN', 'CKM_ECDSA']) {
      assert.ok(
        r.out.includes(`FAIL  mechanism ${m}: absent from the token`),
        `${m} not reported:\n${r.out}`,
      );
    }
    assert.match(r.out, /SKIP {2}wrap\/unwrap: needs CKM_AES_KEY_WRAP_PAD/);
  });

  it('names the profile flag when the token rejects CKA_ALLOWED_MECHANISMS (opencryptoki 3.8.1 does)', (t) => {
    if (why || !token) return t.skip(why ?? 'no token');
    const file = variant(tmp, 'opencryptoki', 'ock-with-allowed-mechanisms', { allowedMechanisms: true });
    const r = doctor(['--profile', file, '--token-label', token.label], { KB_HSM_PIN: token.pin });
    assert.equal(r.status, 1, r.out);
    assert.match(r.out, /FAIL {2}root key: .*CKR_ATTRIBUTE_TYPE_INVALID/);
    assert.match(r.out, /"allowedMechanisms": false/, 'the operator is told which flag to turn off');
  });
});
