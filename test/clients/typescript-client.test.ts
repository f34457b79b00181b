/**
 * The TypeScript client library (clients/typescript) against the real daemon (SoftHSM2, SQLite,
 * gRPC + mTLS on 127.0.0.1): typed calls, every helper round trips, a tamper loop on the local
 * envelope format, the data-key cache limits (GenerateDataKey calls counted by the client and by
 * the daemon's own metrics), failover from a dead address, and the package installed with npm
 * into another directory and used from there.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { EnvelopeEncryptor } from '../../clients/typescript/src/envelope-encryptor.ts';
import { EnvelopeError } from '../../clients/typescript/src/envelope-format.ts';
import type { KeybrokerClient } from '../../clients/typescript/src/keybroker-client.ts';
import type { RpcName } from '../../clients/typescript/src/retry-policy.ts';
import { blindIndex, getSecret, putSecret } from '../../clients/typescript/src/secret-helpers.ts';
import { REPO_ROOT, removeDataDir, startDaemon } from '../support/daemon-harness.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';
import { deadAddress, libraryClient, rpcCount } from './client-fixtures.ts';

let d: DaemonHandle;
let svc: KeybrokerClient;
let admin: KeybrokerClient;
const opened: KeybrokerClient[] = [];
const te = (s: string) => Buffer.from(s);

/** Counts attempts per RPC through the client's observer. */
function counting(c: KeybrokerClient): Map<RpcName, number> {
  const n = new Map<RpcName, number>();
  c.observer = (e) => n.set(e.rpc, (n.get(e.rpc) ?? 0) + 1);
  return n;
}

before(async () => {
  d = await startDaemon({ init: { org: 'acme', tenant: 'alpha' } });
  svc = libraryClient(d);
  admin = libraryClient(d, 'admin');
  opened.push(svc, admin);
});
after(async () => {
  for (const c of opened) c.close();
  assert.equal(await d.stop(), 0, 'daemon exit code after SIGTERM');
  removeDataDir(d.dataDir);
});

describe('typed calls', () => {
  test('Crypto, Admin and Keys round trip through the generated methods', async () => {
    const ct = await svc.crypto.encrypt({ plaintext: te('hello'), aad: te('ctx') });
    assert.ok(ct.ciphertext.length > 5, 'Encrypt returns a ciphertext');
    const pt = await svc.crypto.decrypt({ ciphertext: ct.ciphertext, aad: te('ctx') });
    assert.equal(pt.plaintext.toString(), 'hello', 'Decrypt returns the plaintext');
    const orgs = await admin.admin.listOrgs({});
    assert.ok(
      orgs.orgs.some((o) => o.org === 'acme'),
      `ListOrgs names acme: ${JSON.stringify(orgs.orgs.map((o) => o.org))}`,
    );
    const key = await svc.keys.createKey({ keyId: 'signer', algorithm: 'KEY_ALGORITHM_ML_DSA_65' });
    const sig = await svc.keys.sign({ keyId: key.key?.keyId ?? 'signer', message: te('m') });
    const ok = await svc.keys.verify({ keyId: 'signer', message: te('m'), signature: sig.signature });
    assert.equal(ok.valid, true, 'Verify accepts the signature of Sign');
  });

  test('a refused call rejects with the gRPC status and is not retried', async () => {
    const n = counting(svc);
    await assert.rejects(
      svc.crypto.decrypt({ ciphertext: te('not a ciphertext'), aad: te('') }),
      (e: ServiceError) => e.code === status.INVALID_ARGUMENT,
    );
    assert.equal(n.get('Crypto.Decrypt'), 1, 'INVALID_ARGUMENT is tried once');
    svc.observer = undefined;
  });
});

describe('envelope helpers', () => {
  test('encryptRecord / decryptRecord round trip, with and without key context and AAD', async () => {
    const env = new EnvelopeEncryptor(svc);
    const cases = [
      { name: 'empty record', pt: Buffer.alloc(0), o: {} },
      { name: '1 KiB, AAD', pt: Buffer.alloc(1024, 7), o: { aad: te('row-1') } },
      {
        name: 'key context + AAD',
        pt: te('x'.repeat(100)),
        o: { keyContext: te('table=users'), aad: te('row-2') },
      },
      { name: '1 MiB', pt: Buffer.alloc(1 << 20, 1), o: { customer: 'default' } },
    ];
    for (const c of cases) {
      const rec = await env.encryptRecord(c.pt, c.o);
      const back = await env.decryptRecord(rec, { ...('aad' in c.o ? { aad: c.o.aad } : {}) });
      assert.ok(back.equals(c.pt), `${c.name}: decrypted bytes differ`);
      // A fresh encryptor (nothing cached) decrypts it too: the record is self-describing.
      const cold = await new EnvelopeEncryptor(svc).decryptRecord(rec, {
        ...('aad' in c.o ? { aad: c.o.aad } : {}),
      });
      assert.ok(cold.equals(c.pt), `${c.name}: cold decrypt differs`);
    }
  });

  test('tamper loop: every byte region flipped, truncations, wrong AAD -> one EnvelopeError', async () => {
    const env = new EnvelopeEncryptor(svc, { maxEntries: 0 });
    const aad = te('row-42');
    const keyContext = te('table=orders');
    const rec = await env.encryptRecord(te('the record body, 32 bytes long!!'), { aad, keyContext });
    const c = keyContext.length;
    const w = rec.readUInt16BE(3 + c);
    const regions: [string, number, number][] = [
      ['version', 0, 1],
      ['key context length', 1, 3],
      ['key context', 3, 3 + c],
      ['wrapped key length', 3 + c, 5 + c],
      ['wrapped key', 5 + c, 5 + c + w],
      ['nonce', 5 + c + w, 17 + c + w],
      ['ciphertext', 17 + c + w, rec.length - 16],
      ['tag', rec.length - 16, rec.length],
    ];
    let tried = 0;
    for (const [name, from, to] of regions) {
      // Each byte of small regions, a sample of large ones (the wrapped key is a few hundred bytes).
      const step = Math.max(1, Math.floor((to - from) / 24));
      for (let i = from; i < to; i += step) {
        const bad = Buffer.from(rec);
        bad[i] = (bad[i] ?? 0) ^ 0x01;
        await assert.rejects(env.decryptRecord(bad, { aad }), EnvelopeError, `${name} byte ${i} flipped`);
        tried++;
      }
    }
    for (const len of [0, 1, 3, 5 + c, 17 + c + w, rec.length - 1])
      await assert.rejects(
        env.decryptRecord(rec.subarray(0, len), { aad }),
        EnvelopeError,
        `truncated to ${len}`,
      );
    await assert.rejects(env.decryptRecord(rec, { aad: te('row-43') }), EnvelopeError, 'wrong AAD');
    await assert.rejects(env.decryptRecord(rec), EnvelopeError, 'missing AAD');
    await assert.rejects(
      env.decryptRecord(Buffer.concat([rec, te('x')]), { aad }),
      EnvelopeError,
      'appended byte',
    );
    assert.ok(tried > 40, `tampered ${tried} positions`);
    assert.equal((await env.decryptRecord(rec, { aad })).toString(), 'the record body, 32 bytes long!!');
  });

  test('cache limits: messages, bytes, age and entries bound GenerateDataKey calls (client and daemon count)', async () => {
    let now = 1_000_000;
    const clock = () => now;
    const cases: {
      name: string;
      limits: { maxMessages?: number; maxBytes?: number; maxAgeMs?: number; maxEntries?: number };
      run: (env: EnvelopeEncryptor) => Promise<void>;
      want: number;
    }[] = [
      {
        name: '100 records, maxMessages 10',
        limits: { maxMessages: 10 },
        run: async (env) => {
          for (let i = 0; i < 100; i++) await env.encryptRecord(Buffer.alloc(1024));
        },
        want: 10,
      },
      {
        name: '20 records of 1 KiB, maxBytes 4 KiB',
        limits: { maxBytes: 4096 },
        run: async (env) => {
          for (let i = 0; i < 20; i++) await env.encryptRecord(Buffer.alloc(1024));
        },
        // 4 records per key: a key protects at most maxBytes of plaintext in all.
        want: 5,
      },
      {
        name: 'maxAgeMs 1000, clock moves 600 ms per record',
        limits: { maxAgeMs: 1000 },
        run: async (env) => {
          for (let i = 0; i < 10; i++) {
            await env.encryptRecord(te('r'));
            now += 600;
          }
        },
        want: 5,
      },
      {
        name: 'maxEntries 2, three key contexts in turn',
        limits: { maxEntries: 2 },
        run: async (env) => {
          for (let i = 0; i < 9; i++) await env.encryptRecord(te('r'), { keyContext: te(`ctx-${i % 3}`) });
        },
        want: 9,
      },
      {
        name: 'maxEntries 3, three key contexts in turn',
        limits: { maxEntries: 3 },
        run: async (env) => {
          for (let i = 0; i < 9; i++) await env.encryptRecord(te('r'), { keyContext: te(`ctx-${i % 3}`) });
        },
        want: 3,
      },
      {
        name: '1000 concurrent records share one in-flight GenerateDataKey',
        limits: {},
        run: async (env) => {
          await Promise.all(Array.from({ length: 1000 }, () => env.encryptRecord(Buffer.alloc(1024))));
        },
        want: 1,
      },
    ];
    for (const c of cases) {
      const n = counting(svc);
      const before = await rpcCount(d, 'GenerateDataKey');
      const env = new EnvelopeEncryptor(svc, c.limits, clock);
      await c.run(env);
      const daemonSaw = (await rpcCount(d, 'GenerateDataKey')) - before;
      assert.equal(n.get('Crypto.GenerateDataKey'), c.want, `${c.name}: GenerateDataKey calls (client)`);
      assert.equal(daemonSaw, c.want, `${c.name}: GenerateDataKey calls (daemon metrics)`);
      assert.equal(env.stats.generated, c.want, `${c.name}: stats.generated`);
    }
    svc.observer = undefined;
  });

  test('decrypt caches unwrapped keys by wrapped key, within the same limits', async () => {
    const enc = new EnvelopeEncryptor(svc);
    const recs = [];
    for (let i = 0; i < 30; i++) recs.push(await enc.encryptRecord(te(`r${i}`), { aad: te(String(i)) }));
    const dec = new EnvelopeEncryptor(svc, { maxMessages: 10 });
    const n = counting(svc);
    for (const [i, r] of recs.entries())
      assert.equal((await dec.decryptRecord(r, { aad: te(String(i)) })).toString(), `r${i}`);
    assert.equal(n.get('Crypto.DecryptDataKey'), 3, '30 records of one data key, 10 per cached unwrap');
    assert.equal(dec.stats.decryptHits, 27, 'cache hits');
    svc.observer = undefined;
  });
});

describe('secrets and blind indexes', () => {
  test('putSecret / getSecret round trip, versions and check-and-set', async () => {
    const v1 = await putSecret(svc, 'app/db-password', 'hunter2', { cas: 0 });
    const v2 = await putSecret(svc, 'app/db-password', te('hunter3'));
    assert.deepEqual([v1, v2], [1, 2], 'versions written');
    assert.deepEqual(
      await getSecret(svc, 'app/db-password'),
      { value: te('hunter3'), version: 2 },
      'current version',
    );
    assert.equal((await getSecret(svc, 'app/db-password', { version: 1 })).value.toString(), 'hunter2');
    await assert.rejects(
      putSecret(svc, 'app/db-password', 'x', { cas: 1 }),
      (e: ServiceError) => e.code === status.FAILED_PRECONDITION || e.code === status.ABORTED,
    );
  });

  test('blindIndex gives one stable token per normalized value', async () => {
    await admin.admin.createBlindIndex({
      org: 'acme',
      tenant: 'alpha',
      index: 'email',
      normalization: ['BLIND_INDEX_NORMALIZATION_LOWERCASE', 'BLIND_INDEX_NORMALIZATION_TRIM'],
      outputBytes: 16,
    });
    const a = await blindIndex(svc, 'email', ' Alice@Example.com ');
    const b = await blindIndex(svc, 'email', 'alice@example.com');
    const c = await blindIndex(svc, 'email', 'bob@example.com');
    assert.equal(a.length, 1, 'one token (primary version)');
    assert.equal(a[0]?.token.length, 16, 'output bytes');
    assert.ok(a[0]?.token.equals(b[0]?.token ?? Buffer.alloc(0)), 'normalized values give the same token');
    assert.ok(!a[0]?.token.equals(c[0]?.token ?? Buffer.alloc(0)), 'other values give another token');
  });
});

describe('failover', () => {
  test('two addresses, the first dead: calls succeed on the second, the dead one is skipped for a while', async () => {
    const dead = await deadAddress();
    const c = libraryClient(d, 'service', { addresses: [dead, d.address], brokerDownMs: 60_000 });
    opened.push(c);
    const seen: string[] = [];
    c.observer = (e) => seen.push(`${e.broker === dead ? 'dead' : 'live'}:${e.code}`);
    for (let i = 0; i < 5; i++) {
      const r = await c.crypto.encrypt({ plaintext: te(`p${i}`) });
      assert.ok(r.ciphertext.length > 0, `call ${i} served`);
    }
    assert.deepEqual(seen, [
      `dead:${status.UNAVAILABLE}`,
      'live:ok',
      'live:ok',
      'live:ok',
      'live:ok',
      'live:ok',
    ]);
    // A mutation is sent on to the live broker too: nothing reached the dead one.
    const m = libraryClient(d, 'service', { addresses: [dead, d.address] });
    opened.push(m);
    assert.equal(await putSecret(m, 'app/failover', 'v'), 1, 'PutSecret served by the second broker');
  });

  test('every address dead: the call fails UNAVAILABLE after bounded attempts', async () => {
    const c = libraryClient(d, 'service', {
      addresses: [await deadAddress(), await deadAddress()],
      retry: { maxAttempts: 3, baseDelayMs: 5 },
    });
    opened.push(c);
    const n = counting(c);
    await assert.rejects(
      c.crypto.encrypt({ plaintext: te('x') }),
      (e: ServiceError) => e.code === status.UNAVAILABLE,
    );
    assert.equal(n.get('Crypto.Encrypt'), 3, 'maxAttempts bounds the attempts');
  });
});

describe('package', () => {
  test('npm run build, npm install --install-links <path> in another directory, used from there', async () => {
    const pkg = join(REPO_ROOT, 'clients/typescript');
    execFileSync(process.execPath, [join(pkg, 'scripts/build.ts')], { stdio: 'pipe' });
    const dir = mkdtempSync(join(tmpdir(), 'kb-client-consumer-'));
    try {
      writeFileSync(
        join(dir, 'package.json'),
        JSON.stringify({ name: 'consumer', private: true, type: 'module' }),
      );
      execFileSync(
        'npm',
        ['install', '--install-links', '--prefer-offline', '--no-audit', '--no-fund', pkg],
        {
          cwd: dir,
          stdio: 'pipe',
          env: { ...process.env, PATH: `${join(process.execPath, '..')}:${process.env.PATH ?? ''}` },
        },
      );
      // The consumer runs outside the repository: the package's own dist/, proto/ and node_modules.
      writeFileSync(
        join(dir, 'use.mjs'),
        `import { KeybrokerClient, EnvelopeEncryptor, protoRoot } from '@keybroker/client';
const [address, ca, cert, key] = process.argv.slice(2);
const c = new KeybrokerClient({ addresses: [address], tls: { caFile: ca, certFile: cert, keyFile: key } });
const env = new EnvelopeEncryptor(c);
const rec = await env.encryptRecord(Buffer.from('from a consumer'), { aad: Buffer.from('a') });
const back = await env.decryptRecord(rec, { aad: Buffer.from('a') });
console.log(JSON.stringify({ back: back.toString(), protoRoot: protoRoot() }));
c.close();
`,
      );
      const out = execFileSync(
        process.execPath,
        ['use.mjs', d.address, d.pki('ca.pem'), d.pki('service.pem'), d.pki('service-key.pem')],
        { cwd: dir, encoding: 'utf8' },
      );
      const r = JSON.parse(out) as { back: string; protoRoot: string };
      assert.equal(r.back, 'from a consumer', 'round trip from the installed package');
      assert.ok(
        r.protoRoot.startsWith(join(dir, 'node_modules')),
        `protos from the installed copy: ${r.protoRoot}`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
