/** Shared set-up of the client-library tests: a KeybrokerClient for a daemon identity, metric reads. */
import { createServer } from 'node:net';
import { KeybrokerClient } from '../../clients/typescript/src/keybroker-client.ts';
import type { KeybrokerClientOptions } from '../../clients/typescript/src/keybroker-client.ts';
import type { DaemonHandle } from '../support/daemon-harness.ts';

type Extra = Partial<Omit<KeybrokerClientOptions, 'tls'>>;

/** A library client as the daemon's "service" (or "admin") identity, mTLS from the data dir's files. */
export function libraryClient(
  d: DaemonHandle,
  who: 'service' | 'admin' = 'service',
  o: Extra = {},
): KeybrokerClient {
  return new KeybrokerClient({
    addresses: [d.address],
    tls: { caFile: d.pki('ca.pem'), certFile: d.pki(`${who}.pem`), keyFile: d.pki(`${who}-key.pem`) },
    ...o,
  });
}

/** A 127.0.0.1 address nothing listens on (a port that was free a moment ago). */
export async function deadAddress(): Promise<string> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return `127.0.0.1:${port}`;
}

/** Sum of keybroker_rpc_requests_total over every label set naming `rpc` (e.g. "GenerateDataKey"). */
export async function rpcCount(d: DaemonHandle, rpc: string): Promise<number> {
  const { body } = await d.metrics();
  let n = 0;
  for (const line of body.split('\n'))
    if (line.startsWith('keybroker_rpc_requests_total{') && new RegExp(`rpc="[^"]*\\b${rpc}"`).test(line))
      n += Number(line.slice(line.lastIndexOf(' ') + 1));
  return n;
}
