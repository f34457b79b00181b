/**
 * A CLI command for every RPC: the proto is walked and every RPC must have a command in
 * RPC_COMMANDS that exists; the Keys, batch and rewrap commands then run against a real daemon
 * (SoftHSM2, mTLS), their outputs checked offline; errors carry the gRPC code and a hint.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createPublicKey, verify as nodeVerify, randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { RPC_COMMANDS } from '../../daemon/src/cli/rpc-commands.ts';
import { REPO_ROOT, removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';

const CLI = join(REPO_ROOT, 'daemon/src/cli/main.ts');
let d: DaemonHandle;

function kb(args: string[], input?: Buffer) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    input,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

function kbAsync(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Every `service X { rpc Y(...) }` of the proto folder, as "X/Y". */
function protoRpcs(): string[] {
  const dir = join(REPO_ROOT, 'proto/keybroker/v1');
  const out: string[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.proto'))) {
    let service: string | undefined;
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      const s = /^service (\w+) \{/.exec(line);
      if (s) service = s[1];
      else if (/^\}/.test(line)) service = undefined;
      const r = /^\s*rpc (\w+)\(/.exec(line);
      if (r && service !== undefined) out.push(`${service}/${r[1]}`);
    }
  }
  return out.sort();
}

test('every RPC of the proto has a CLI command, and every listed command exists', async () => {
  const rpcs = protoRpcs();
  assert.ok(rpcs.length > 40, `walked ${rpcs.length} RPCs`);
  const missing = rpcs.filter((r) => RPC_COMMANDS[r] === undefined);
  assert.deepEqual(missing, [], `RPCs without a CLI command: ${missing.join(', ')}`);
  const stale = Object.keys(RPC_COMMANDS).filter((r) => !rpcs.includes(r));
  assert.deepEqual(stale, [], `RPC_COMMANDS names RPCs the proto does not have: ${stale.join(', ')}`);
  // Each command path has its own help: yargs answers --help for an unknown subcommand with the
  // parent's help (exit 0), so the usage line must name the whole path.
  const paths = [...new Set(Object.values(RPC_COMMANDS).map((c) => c.split(' --')[0]!))];
  for (let i = 0; i < paths.length; i += 6) {
    const batch = paths.slice(i, i + 6);
    const got = await Promise.all(batch.map((p) => kbAsync([...p.split(' '), '--help'])));
    got.forEach((r, j) => {
      const path = batch[j]!;
      assert.equal(r.status, 0, `keybroker ${path} --help: ${r.stderr}`);
      // `cert ca create`: "create" is the positional action of `cert ca <action>`.
      const shown = path === 'cert ca create' || path === 'cert ca get' ? 'cert ca' : path;
      assert.ok(
        r.stdout.split('\n')[0]!.startsWith(`keybroker ${shown}`),
        `keybroker ${path} --help shows another command's help: ${r.stdout.split('\n')[0]}`,
      );
    });
  }
});

before(async () => {
  d = await startDaemon();
});
after(async () => {
  if (d !== undefined) {
    assert.equal(await d.stop(), 0);
    removeDataDir(d.dataDir);
  }
});

const json = <T>(r: { status: number | null; stdout: Buffer; stderr: string }, what: string): T => {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
  return JSON.parse(r.stdout.toString()) as T;
};

test('keys: create an ML-DSA-65 key, sign, verify (and a tampered message fails), export and verify offline', () => {
  const dd = ['--data-dir', d.dataDir];
  const created = json<{ key: { keyId: string; algorithm: string } }>(
    kb(['keys', 'create', 'signer', '--alg', 'ml-dsa-65', ...dd]),
    'create',
  );
  assert.equal(created.key.algorithm, 'KEY_ALGORITHM_ML_DSA_65');
  const msgFile = join(d.dataDir, 'msg.txt');
  const sigFile = join(d.dataDir, 'msg.sig');
  writeFileSync(msgFile, 'pay 10 to bob');
  assert.equal(kb(['keys', 'sign', 'signer', msgFile, '--out', sigFile, ...dd]).status, 0);
  const ok = json<{ valid: boolean }>(
    kb(['keys', 'verify', 'signer', msgFile, '--signature', sigFile, ...dd]),
    'verify',
  );
  assert.equal(ok.valid, true);
  const bad = kb(['keys', 'verify', 'signer', '--signature', sigFile, ...dd], Buffer.from('pay 1000 to bob'));
  assert.equal(bad.status, 1, 'a signature over another message: exit 1');
  assert.equal((JSON.parse(bad.stdout.toString()) as { valid: boolean }).valid, false);
  const pemFile = join(d.dataDir, 'signer.pem');
  const pem = kb(['keys', 'public-key', 'signer', '--format', 'spki-pem', '--out', pemFile, ...dd]);
  assert.equal(pem.status, 0, pem.stderr);
  const pub = createPublicKey(readFileSync(pemFile));
  assert.equal(pub.asymmetricKeyType, 'ml-dsa-65');
  assert.ok(nodeVerify(null, readFileSync(msgFile), pub, readFileSync(sigFile)), 'verifies with node:crypto');
  const jwks = json<{ keys: { kid: string }[] }>(kb(['keys', 'jwks', ...dd]), 'jwks');
  assert.ok(
    jwks.keys.some((k) => k.kid.startsWith('signer')),
    JSON.stringify(jwks),
  );
  const rotated = json<{ key: { primaryVersion: number } }>(
    kb(['keys', 'rotate', 'signer', ...dd]),
    'rotate',
  );
  assert.equal(rotated.key.primaryVersion, 2);
  const off = kb(['keys', 'set-version', 'signer', '--key-version', '1', '--enabled', 'false', ...dd]);
  assert.equal(off.status, 0, off.stderr);
  const v1 = kb(['keys', 'verify', 'signer', msgFile, '--signature', sigFile, '--key-version', '1', ...dd]);
  assert.notEqual(v1.status, 0, 'a disabled version no longer verifies');
  const list = json<{ keys: { keyId: string }[] }>(kb(['keys', 'list', ...dd]), 'list');
  assert.ok(list.keys.some((k) => k.keyId === 'signer'));
  const lines = ['a', 'b', 'c'].map((m) => JSON.stringify({ message: Buffer.from(m).toString('base64') }));
  const batchFile = join(d.dataDir, 'sign.jsonl');
  writeFileSync(batchFile, lines.join('\n') + '\n');
  const sb = json<{ results: { signature: string }[] }>(
    kb(['keys', 'sign-batch', 'signer', batchFile, ...dd]),
    'sign-batch',
  );
  assert.equal(sb.results.length, 3);
  const vFile = join(d.dataDir, 'verify.jsonl');
  writeFileSync(
    vFile,
    sb.results
      .map((r, i) =>
        JSON.stringify({
          message: Buffer.from(['a', 'b', 'x'][i]!).toString('base64'),
          signature: r.signature,
        }),
      )
      .join('\n'),
  );
  const vb = json<{ results: { valid: boolean }[] }>(
    kb(['keys', 'verify-batch', 'signer', vFile, ...dd]),
    'verify-batch',
  );
  assert.deepEqual(
    vb.results.map((r) => r.valid),
    [true, true, false],
  );
});

test('keys: X-Wing encapsulate/decapsulate agree; sealed boxes open; a flipped byte does not', () => {
  const dd = ['--data-dir', d.dataDir];
  json(kb(['keys', 'create', 'box', '--alg', 'x-wing', ...dd]), 'create x-wing');
  const e = json<{ ciphertext: string; sharedSecret: string }>(
    kb(['keys', 'encapsulate', 'box', ...dd]),
    'encapsulate',
  );
  const dec = json<{ sharedSecret: string }>(
    kb(['keys', 'decapsulate', 'box', ...dd], Buffer.from(e.ciphertext, 'base64')),
    'decapsulate',
  );
  assert.equal(dec.sharedSecret, e.sharedSecret);
  const eb = json<{ results: { ciphertext: string; sharedSecret: string }[] }>(
    kb(['keys', 'encapsulate-batch', 'box', '--count', '3', ...dd]),
    'encapsulate-batch',
  );
  const ctFile = join(d.dataDir, 'cts.jsonl');
  writeFileSync(ctFile, eb.results.map((r) => JSON.stringify({ ciphertext: r.ciphertext })).join('\n'));
  const db = json<{ results: { sharedSecret: string }[] }>(
    kb(['keys', 'decapsulate-batch', 'box', ctFile, ...dd]),
    'decapsulate-batch',
  );
  assert.deepEqual(
    db.results.map((r) => r.sharedSecret),
    eb.results.map((r) => r.sharedSecret),
  );
  const secret = randomBytes(100);
  const boxFile = join(d.dataDir, 'box.bin');
  const openedFile = join(d.dataDir, 'opened.bin');
  const sealed = kb(['keys', 'seal', 'box', '--aad', 'ctx', '--out', boxFile, ...dd], secret);
  assert.equal(sealed.status, 0, sealed.stderr);
  const opened = kb(['keys', 'open', 'box', boxFile, '--aad', 'ctx', '--out', openedFile, ...dd]);
  assert.equal(opened.status, 0, opened.stderr);
  assert.ok(readFileSync(openedFile).equals(secret), 'sealed box round trip');
  const tampered = readFileSync(boxFile);
  tampered[tampered.length - 1]! ^= 1;
  const no = kb(['keys', 'open', 'box', '--aad', 'ctx', ...dd], tampered);
  assert.equal(no.status, 1);
  assert.match(no.stderr, /^keybroker: OpenBox failed: INVALID_ARGUMENT: decryption failed/m);
  assert.match(no.stderr, /^hint: the ciphertext, its AAD/m);
});

test('encrypt-batch / decrypt-batch and rewrap after a customer key rotation', () => {
  const dd = ['--data-dir', d.dataDir];
  const inFile = join(d.dataDir, 'enc.jsonl');
  const items = ['one', 'two'].map((p) => ({
    plaintext: Buffer.from(p).toString('base64'),
    aad: Buffer.from('x').toString('base64'),
  }));
  writeFileSync(inFile, items.map((i) => JSON.stringify(i)).join('\n'));
  const enc = json<{ results: { result: { ciphertext: string } }[] }>(
    kb(['encrypt-batch', inFile, ...dd]),
    'encrypt-batch',
  );
  const decFile = join(d.dataDir, 'dec.jsonl');
  writeFileSync(
    decFile,
    enc.results
      .map((r) =>
        JSON.stringify({ ciphertext: r.result.ciphertext, aad: Buffer.from('x').toString('base64') }),
      )
      .join('\n'),
  );
  const dec = json<{ results: { result: { plaintext: string } }[] }>(
    kb(['decrypt-batch', decFile, ...dd]),
    'decrypt-batch',
  );
  assert.deepEqual(
    dec.results.map((r) => Buffer.from(r.result.plaintext, 'base64').toString()),
    ['one', 'two'],
  );
  const ct = kb(['encrypt', '--aad', 'a', ...dd], Buffer.from('rewrap me'));
  assert.equal(ct.status, 0, ct.stderr);
  const rot = kb(['admin', 'customer', 'rotate', 'acme', 'alpha', 'default', ...dd]);
  assert.equal(rot.status, 0, rot.stderr);
  const re = kb(['rewrap', '--aad', 'a', ...dd], ct.stdout);
  assert.equal(re.status, 0, re.stderr);
  assert.ok(!re.stdout.equals(ct.stdout), 'a new ciphertext');
  const pt = kb(['decrypt', '--aad', 'a', ...dd], re.stdout);
  assert.equal(pt.stdout.toString(), 'rewrap me');
});

test('errors: one format with the gRPC code and a hint; `admin key-version --version` parses', () => {
  const dd = ['--data-dir', d.dataDir];
  const kv = kb(['admin', 'key-version', 'acme', 'alpha', '--version', '1', '--enabled', 'true', ...dd]);
  assert.notEqual(kv.status, 2, `--version is the key version, not yargs' own flag: ${kv.stderr}`);
  assert.equal(kv.status, 0, kv.stderr);
  // The service identity may not call Admin: the code and a hint naming the admin identity.
  const svc = join(d.dataDir, 'pki');
  const denied = kb([
    'admin',
    'org',
    'list',
    '--cert',
    join(svc, 'service.pem'),
    '--key',
    join(svc, 'service-key.pem'),
    ...dd,
  ]);
  assert.equal(denied.status, 1);
  assert.match(denied.stderr, /^keybroker: ListOrgs failed: PERMISSION_DENIED: /m);
  assert.match(denied.stderr, /^hint: .*admin/m);
  // Nothing listens there: the hint asks whether the daemon runs on that address.
  const refused = kb(['keys', 'list', '--addr', '127.0.0.1:1', ...dd]);
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /^keybroker: ListKeys failed: UNAVAILABLE: /m);
  assert.match(refused.stderr, /hint: is the daemon running on 127\.0\.0\.1:1\?/);
});
