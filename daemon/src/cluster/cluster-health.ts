/**
 * /healthz, /readyz and /metrics of `serve --workers N`, served by the primary on metrics.port:
 * readiness lists every worker by broker id (ready while at least one is: connections only reach
 * workers that listen), and /metrics merges the workers' registries, each series labelled
 * broker="wN" (counters of different workers stay apart, none is summed away).
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface WorkerStatus {
  readonly broker: string;
  readonly pid: number | undefined;
  readonly alive: boolean;
  readonly ready: boolean;
  readonly degraded: boolean;
  readonly reason?: string;
}

export class ClusterHealthServer {
  readonly #server: Server;

  constructor(
    statuses: () => readonly WorkerStatus[],
    metrics: () => Promise<{ type: string; text: string }>,
  ) {
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const send = (status: number, type: string, body: string) => {
        res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
        res.end(body);
      };
      if (req.method !== 'GET' && req.method !== 'HEAD')
        return send(405, 'text/plain', 'method not allowed\n');
      const json = (status: number, body: object) =>
        send(status, 'application/json', JSON.stringify(body) + '\n');
      if (path === '/healthz') {
        const brokers = statuses().map((s) => ({ broker: s.broker, pid: s.pid, alive: s.alive }));
        return json(200, { status: 'alive', brokers });
      }
      if (path === '/readyz') {
        const brokers = statuses();
        const ready = brokers.some((s) => s.alive && s.ready);
        return json(ready ? 200 : 503, {
          status: ready ? 'ready' : 'not ready',
          degraded: brokers.some((s) => s.degraded),
          brokers,
        });
      }
      if (path === '/metrics') {
        metrics().then(
          (m) => send(200, m.type, m.text),
          (err: unknown) => send(500, 'text/plain', `metrics failed: ${String(err)}\n`),
        );
        return;
      }
      send(404, 'text/plain', 'not found\n');
    });
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => resolve((this.#server.address() as AddressInfo).port));
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.closeAllConnections();
      this.#server.close(() => resolve());
    });
  }
}
