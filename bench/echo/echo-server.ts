/**
 * The echo ceiling server, run as its own process (pinned like the daemon): gRPC over mTLS
 * (TLS 1.3, client certificate required), returns what it gets. Prints one JSON line
 * `{"event":"listening","port":N}` on stdout when ready; SIGTERM shuts it down.
 *
 * KB_BENCH_INJECT_DELAY_US=N makes every call spin N µs of CPU first: the harness's own proof
 * that the compare mode catches a server-side slowdown.
 *
 * Usage: node bench/echo/echo-server.ts --ca CA --cert CERT --key KEY [--port 0]
 */
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BENCH_MAX_MESSAGE_BYTES, loadProto, serviceConstructor } from '../lib/grpc-proto.ts';

const { values } = parseArgs({
  options: {
    ca: { type: 'string' },
    cert: { type: 'string' },
    key: { type: 'string' },
    port: { type: 'string', default: '0' },
  },
});
if (values.ca === undefined || values.cert === undefined || values.key === undefined) {
  process.stderr.write('usage: echo-server.ts --ca CA --cert CERT --key KEY [--port 0]\n');
  process.exit(2);
}

const injectDelayUs = Number(process.env.KB_BENCH_INJECT_DELAY_US ?? '0');
if (!Number.isFinite(injectDelayUs) || injectDelayUs < 0 || injectDelayUs > 1_000_000) {
  process.stderr.write('KB_BENCH_INJECT_DELAY_US must be 0..1000000\n');
  process.exit(2);
}

/** Burn CPU for `us` microseconds: a slowdown that shows in both latency and server CPU. */
function spin(us: number): void {
  if (us <= 0) return;
  const end = process.hrtime.bigint() + BigInt(Math.round(us * 1000));
  while (process.hrtime.bigint() < end) {
    // busy-wait on purpose
  }
}

interface EchoMessage {
  payload: Buffer;
  items: Buffer[];
}

const root = loadProto([join(import.meta.dirname, 'echo.proto')], [import.meta.dirname]);
const service = serviceConstructor(root, 'keybroker.bench.v1.EchoService').service;

const server = new grpc.Server({
  'grpc.max_receive_message_length': BENCH_MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': BENCH_MAX_MESSAGE_BYTES,
  // As the daemon's server (api-server.ts): the same gRPC set-up, so the echo stays its floor.
  'grpc.enable_channelz': 0,
});
server.addService(service, {
  echo: (call: grpc.ServerUnaryCall<EchoMessage, EchoMessage>, cb: grpc.sendUnaryData<EchoMessage>) => {
    spin(injectDelayUs);
    cb(null, { payload: call.request.payload, items: call.request.items });
  },
  echoStream: (call: grpc.ServerDuplexStream<{ data: Buffer }, { data: Buffer }>) => {
    call.on('data', (chunk: { data: Buffer }) => {
      spin(injectDelayUs);
      call.write(chunk);
    });
    call.on('end', () => call.end());
    call.on('error', (err) => process.stderr.write(`echo stream error: ${err.message}\n`));
  },
});

const creds = grpc.ServerCredentials.createSsl(
  readFileSync(values.ca),
  [{ cert_chain: readFileSync(values.cert), private_key: readFileSync(values.key) }],
  true,
);
server.bindAsync(`127.0.0.1:${values.port}`, creds, (err, port) => {
  if (err) {
    process.stderr.write(`echo server bind failed: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({ event: 'listening', port, pid: process.pid }) + '\n');
});

let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) process.exit(1);
  stopping = true;
  server.tryShutdown(() => process.exit(0));
  setTimeout(() => server.forceShutdown(), 2000).unref();
});
