/**
 * A small mTLS client for keybroker.v1, used by the CLI, the e2e tests and benchmarks. Messages
 * are plain objects shaped like the proto (camelCase fields, bytes as Buffer).
 */
import { readFileSync } from 'node:fs';
import { Metadata, credentials, loadPackageDefinition } from '@grpc/grpc-js';
import type { Client, ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { loadKeybrokerPackage } from './proto-definitions.ts';

export interface ClientOptions {
  /** host:port */
  readonly address: string;
  readonly caPem: Buffer;
  readonly certPem?: Buffer;
  readonly keyPem?: Buffer;
  /** TLS server name to verify (defaults to the host of `address`). */
  readonly serverName?: string;
  readonly maxMessageBytes?: number;
  /** Extra grpc-js channel options (e.g. a connection of its own: grpc.use_local_subchannel_pool). */
  readonly channelOptions?: Readonly<Record<string, string | number>>;
}

/** Read client credentials from PEM files. */
export function clientOptionsFromFiles(
  address: string,
  caFile: string,
  certFile?: string,
  keyFile?: string,
): ClientOptions {
  return {
    address,
    caPem: readFileSync(caFile),
    ...(certFile !== undefined ? { certPem: readFileSync(certFile) } : {}),
    ...(keyFile !== undefined ? { keyPem: readFileSync(keyFile) } : {}),
  };
}

type Unary = (
  req: object,
  md: Metadata,
  opts: { deadline: Date },
  cb: (err: ServiceError | null, res: object) => void,
) => void;
type Bidi = (md: Metadata, opts: { deadline: Date }) => ClientDuplexStream<object, object>;

export interface CallOptions {
  readonly deadlineMs?: number;
  readonly requestId?: string;
}

/** A connected client of one service. */
export class ServiceClient {
  readonly raw: Client;

  constructor(raw: Client) {
    this.raw = raw;
  }

  #md(o: CallOptions): Metadata {
    const md = new Metadata();
    if (o.requestId !== undefined) md.set('x-request-id', o.requestId);
    return md;
  }

  /** Call a unary RPC by its proto name (e.g. "Encrypt"). Rejects with the grpc ServiceError. */
  unary<T = Record<string, unknown>>(method: string, req: object, o: CallOptions = {}): Promise<T> {
    const fn = (this.raw as unknown as Record<string, Unary>)[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`no RPC ${method}`));
    return new Promise((resolve, reject) => {
      fn.call(
        this.raw,
        req,
        this.#md(o),
        { deadline: new Date(Date.now() + (o.deadlineMs ?? 30_000)) },
        (err, res) => (err ? reject(err) : resolve(res as T)),
      );
    });
  }

  /** Open a bidi stream by its proto name (e.g. "EncryptStream"). */
  stream(method: string, o: CallOptions = {}): ClientDuplexStream<object, object> {
    const fn = (this.raw as unknown as Record<string, Bidi>)[method];
    if (typeof fn !== 'function') throw new Error(`no RPC ${method}`);
    return fn.call(this.raw, this.#md(o), { deadline: new Date(Date.now() + (o.deadlineMs ?? 300_000)) });
  }

  close(): void {
    this.raw.close();
  }
}

type Ctor = new (address: string, creds: ReturnType<typeof credentials.createSsl>, opts: object) => Client;

/** Clients for Admin, Crypto and Keys over one mTLS configuration. */
export function connectKeybroker(o: ClientOptions): {
  admin: ServiceClient;
  crypto: ServiceClient;
  approvals: ServiceClient;
  policy: ServiceClient;
  keys: ServiceClient;
  certificates: ServiceClient;
  blindIndexes: ServiceClient;
  secrets: ServiceClient;
  close(): void;
} {
  const pkg = loadPackageDefinition(loadKeybrokerPackage()) as unknown as {
    keybroker: { v1: Record<string, Ctor> };
  };
  const creds = credentials.createSsl(o.caPem, o.keyPem ?? null, o.certPem ?? null);
  const max = o.maxMessageBytes ?? 64 * 1024 * 1024;
  // A loopback IP as TLS server name draws a deprecation warning (RFC 6066 forbids IPs in SNI);
  // the dev server certificate also names localhost, so verify against that.
  const host = o.address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  const serverName = o.serverName ?? (host === '127.0.0.1' || host === '::1' ? 'localhost' : undefined);
  const opts = {
    'grpc.max_receive_message_length': max,
    'grpc.max_send_message_length': max,
    'grpc-node.flow_control_window': 8 * 1024 * 1024,
    ...(serverName !== undefined ? { 'grpc.ssl_target_name_override': serverName } : {}),
    ...o.channelOptions,
  };
  const make = (name: string) => {
    const C = pkg.keybroker.v1[name];
    if (C === undefined) throw new Error(`service ${name} missing from the proto package`);
    return new ServiceClient(new C(o.address, creds, opts));
  };
  const admin = make('Admin');
  const crypto = make('Crypto');
  const approvals = make('Approvals');
  const policy = make('Policy');
  const keys = make('Keys');
  const certificates = make('Certificates');
  const blindIndexes = make('BlindIndexes');
  const secrets = make('Secrets');
  return {
    admin,
    crypto,
    approvals,
    policy,
    keys,
    certificates,
    blindIndexes,
    secrets,
    close() {
      admin.close();
      crypto.close();
      approvals.close();
      policy.close();
      keys.close();
      certificates.close();
      blindIndexes.close();
      secrets.close();
    },
  };
}
