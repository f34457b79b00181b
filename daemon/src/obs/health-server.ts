/**
 * The operations HTTP listener: /metrics (Prometheus), /healthz (process alive), /readyz (HSM
 * reachable, stores open, not draining). Separate from the API port; loopback by default.
 */
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface Readiness {
  readonly ready: boolean;
  readonly degraded: boolean;
  readonly reason?: string;
  /** FIPS algorithm policy on (shown in /readyz). */
  readonly fipsMode?: boolean;
}

export class HealthServer {
  readonly #server: Server;

  constructor(registry: Registry, readiness: () => Readiness) {
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      const send = (status: number, type: string, body: string) => {
        res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
        res.end(body);
      };
      if (req.method !== 'GET' && req.method !== 'HEAD')
        return send(405, 'text/plain', 'method not allowed\n');
      if (path === '/healthz') return send(200, 'application/json', '{"status":"alive"}\n');
      if (path === '/readyz') {
        const r = readiness();
        const body = {
          status: r.ready ? 'ready' : 'not ready',
          degraded: r.degraded,
          reason: r.reason,
          ...(r.fipsMode !== undefined ? { fipsMode: r.fipsMode } : {}),
        };
        return send(r.ready ? 200 : 503, 'application/json', JSON.stringify(body) + '\n');
      }
      if (path === '/metrics') {
        registry.metrics().then(
          (text) => send(200, registry.contentType, text),
          (err: unknown) => send(500, 'text/plain', `metrics failed: ${String(err)}\n`),
        );
        return;
      }
      send(404, 'text/plain', 'not found\n');
    });
  }

  /** Listen; resolves with the bound port (port 0 picks a free one). */
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
