/** Assertions shared by the e2e tests: gRPC status codes and stream round trips. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { SpawnSyncReturns } from 'node:child_process';
import { once } from 'node:events';
import { status as GrpcCode } from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, credentials, loadPackageDefinition } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import type { ServiceClient } from '../../daemon/src/api/api-client.ts';
import { REPO_ROOT } from '../support/daemon-harness.ts';

export { GrpcCode };

/** `keybroker ARGS...` as a child process on this runtime (output as text, 60 s bound). */
export function runCli(...args: string[]): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [join(REPO_ROOT, 'daemon/src/cli/main.ts'), ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    // `audit verify --timeline` of a busy log prints megabytes (the default 1 MiB kills the child).
    maxBuffer: 64 * 1024 * 1024,
  });
}

/** Await `p`, expect it to fail with `code`; returns the error for more checks. */
export async function expectCode(p: Promise<unknown>, code: number, what: string): Promise<ServiceError> {
  let v: unknown;
  try {
    v = await p;
  } catch (err) {
    const e = err as ServiceError;
    if (typeof e.code !== 'number') throw err;
    assert.equal(
      e.code,
      code,
      `${what}: expected ${GrpcCode[code]}, got ${GrpcCode[e.code] ?? e.code} (${e.details ?? e.message})`,
    );
    return e;
  }
  assert.fail(`${what}: expected ${GrpcCode[code]}, got success ${JSON.stringify(v)?.slice(0, 200)}`);
}

/** Run a bidi stream: send `msgs`, half-close, collect responses; rejects with the status error. */
export async function bidi(client: ServiceClient, method: string, msgs: Iterable<object>): Promise<object[]> {
  const s = client.stream(method);
  const got: object[] = [];
  s.on('data', (m: object) => got.push(m));
  const done = new Promise<void>((resolve, reject) => {
    s.on('error', reject);
    s.on('status', (st: { code: number }) => {
      if (st.code === 0) resolve();
    });
  });
  try {
    for (const m of msgs) if (!s.write(m)) await once(s, 'drain');
  } catch {
    // A server error mid-write surfaces through `done`.
  }
  s.end();
  await done;
  return got;
}

export interface Sealed {
  header: Buffer;
  chunks: Buffer[];
}

/** EncryptStream `data` in `piece`-sized messages. */
export async function streamEncrypt(
  c: ServiceClient,
  data: Buffer,
  aad: Buffer,
  piece = 256 * 1024,
): Promise<Sealed> {
  function* msgs() {
    yield { init: { aad } };
    for (let i = 0; i < data.length; i += piece) yield { plaintext: data.subarray(i, i + piece) };
  }
  const out = (await bidi(c, 'EncryptStream', msgs())) as { header?: Buffer; chunk?: Buffer; msg: string }[];
  const [first, ...rest] = out;
  assert.equal(first?.msg, 'header', 'EncryptStream: first response must be the header');
  assert.ok(
    rest.every((m) => m.msg === 'chunk'),
    'EncryptStream: then only chunks',
  );
  return { header: first.header as Buffer, chunks: rest.map((m) => m.chunk as Buffer) };
}

/** DecryptStream the given header + chunks. */
export async function streamDecrypt(
  c: ServiceClient,
  header: Buffer,
  chunks: Buffer[],
  aad: Buffer,
): Promise<Buffer> {
  function* msgs() {
    yield { init: { header, aad } };
    for (const chunk of chunks) yield { chunk };
  }
  const out = (await bidi(c, 'DecryptStream', msgs())) as { plaintext: Buffer }[];
  return Buffer.concat(out.map((m) => m.plaintext));
}

type HealthCtor = new (a: string, c: unknown, o: object) => Client;

/** grpc.health.v1.Health/Check over mTLS with the daemon's service identity; returns the status name. */
export async function healthCheck(
  address: string,
  pki: (f: string) => string,
  service: string,
): Promise<string> {
  const pkg = loadPackageDefinition(loadSync(healthProtoPath, { enums: String })) as unknown as {
    grpc: { health: { v1: { Health: HealthCtor } } };
  };
  const creds = credentials.createSsl(
    readFileSync(pki('ca.pem')),
    readFileSync(pki('service-key.pem')),
    readFileSync(pki('service.pem')),
  );
  const client = new pkg.grpc.health.v1.Health(address, creds, {
    'grpc.ssl_target_name_override': 'localhost',
  });
  try {
    const r = await new Promise<{ status: string }>((resolve, reject) =>
      (
        client as unknown as {
          check: (q: object, cb: (e: ServiceError | null, r: { status: string }) => void) => void;
        }
      ).check({ service }, (e, res) => (e ? reject(e) : resolve(res))),
    );
    return r.status;
  } finally {
    client.close();
  }
}
