/**
 * Sends one unary call whose request body is raw bytes (`0a 00` repeated: empty items of field 1),
 * from its own process so the sender's TLS and serialization work does not stall the test's event
 * loop. Usage: node raw-unary-sender.ts <address> <pki dir> <rpc path> <repeats>. Prints one JSON
 * line: {"code": n, "details": "...", "ms": n}.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Metadata, credentials } from '@grpc/grpc-js';
import type { ServiceError } from '@grpc/grpc-js';

const [address, pki, path, repeats] = process.argv.slice(2) as [string, string, string, string];
const creds = credentials.createSsl(
  readFileSync(join(pki, 'ca.pem')),
  readFileSync(join(pki, 'service-key.pem')),
  readFileSync(join(pki, 'service.pem')),
);
const client = new Client(address, creds, {
  'grpc.ssl_target_name_override': 'localhost',
  'grpc.max_send_message_length': 64 * 1024 * 1024,
});
const body = Buffer.alloc(Number(repeats) * 2);
for (let i = 0; i < body.length; i += 2) body[i] = 0x0a;
await new Promise<void>((resolve) => client.waitForReady(Date.now() + 10_000, () => resolve()));
const t0 = performance.now();
client.makeUnaryRequest(
  path,
  (b: Buffer) => b,
  (b: Buffer) => b,
  body,
  new Metadata(),
  { deadline: new Date(Date.now() + 60_000) },
  (err: ServiceError | null) => {
    console.log(
      JSON.stringify({ code: err?.code ?? 0, details: err?.details ?? '', ms: performance.now() - t0 }),
    );
    client.close();
  },
);
