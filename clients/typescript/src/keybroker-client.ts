/**
 * The keybroker client: one typed method per RPC (client.crypto.encrypt(...), client.keys.sign(...)),
 * mTLS from files, a deadline per call, retries with exponential backoff and jitter, and failover
 * over several broker addresses. Messages are plain objects shaped like the proto (camelCase
 * fields, bytes as Buffer, enums as names).
 */
import { readFileSync } from 'node:fs';
import { Metadata, credentials, loadPackageDefinition, status } from '@grpc/grpc-js';
import type { ChannelCredentials, Client, ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { BrokerPool } from './broker-pool.ts';
import type { FailoverMode } from './broker-pool.ts';
import { RPC_TABLE } from './generated/keybroker-v1.ts';
import type { RpcTypes } from './generated/keybroker-v1.ts';
import { loadKeybrokerProtos } from './proto-files.ts';
import { RETRY_CLASS, RETRY_DEFAULTS, backoffMs } from './retry-policy.ts';
import type { RetryOptions, RpcName } from './retry-policy.ts';

/** A request as the caller may write it: every field optional, bytes as any Uint8Array. */
export type Input<T> = T extends Buffer
  ? Uint8Array
  : T extends readonly (infer U)[]
    ? readonly Input<U>[]
    : T extends object
      ? { readonly [K in keyof T]?: Input<T[K]> }
      : T;

export type ServiceName = keyof typeof RPC_TABLE;

/** mTLS material: PEM file paths or PEM bytes. */
export interface TlsFiles {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}
export interface TlsPems {
  readonly caPem: Uint8Array;
  readonly certPem: Uint8Array;
  readonly keyPem: Uint8Array;
}

export interface KeybrokerClientOptions {
  /** Broker addresses, host:port; more than one enables failover. */
  readonly addresses: readonly string[];
  readonly tls: TlsFiles | TlsPems;
  /** TLS name to verify (default: the address's host; "localhost" for a loopback IP). */
  readonly serverName?: string;
  /** Deadline of a call, retries included (default 30 s). */
  readonly deadlineMs?: number;
  readonly retry?: RetryOptions;
  readonly failover?: FailoverMode;
  /** Skip period of a broker after UNAVAILABLE (default 1 s, doubling to 30 s). */
  readonly brokerDownMs?: number;
  readonly maxMessageBytes?: number;
}

export interface CallOptions {
  readonly deadlineMs?: number;
  readonly requestId?: string;
  /** Per-call override of the client's retry options. */
  readonly retry?: RetryOptions;
}

/** What a call was told, for callers that count or log attempts. */
export interface CallObserver {
  (event: {
    rpc: RpcName;
    broker: string;
    attempt: number;
    code: number | 'ok';
    /** The broker's retry-after-ms trailer, when it sent one. */
    retryAfterMs?: number;
    /** The wait before the next attempt, when there is one. */
    waitMs?: number;
  }): void;
}

type Unary = (
  req: object,
  md: Metadata,
  opts: { deadline: Date },
  cb: (err: ServiceError | null, res: object) => void,
) => void;
type Bidi = (md: Metadata, opts: { deadline: Date }) => ClientDuplexStream<object, object>;
type Ctor = new (address: string, creds: ChannelCredentials, opts: object) => Client;

type UnaryMethod<K extends RpcName> = (
  req: Input<RpcTypes[K]['req']>,
  o?: CallOptions,
) => Promise<RpcTypes[K]['res']>;
type StreamMethod<K extends RpcName> = (
  o?: CallOptions,
) => ClientDuplexStream<Input<RpcTypes[K]['req']>, RpcTypes[K]['res']>;

/** The typed methods of one service: lowerCamelCase RPC names. */
export type ServiceApi<S extends ServiceName> = {
  [M in keyof (typeof RPC_TABLE)[S] & string as Uncapitalize<M>]: `${S}.${M}` extends infer K extends RpcName
    ? (typeof RPC_TABLE)[S][M] extends { readonly stream: true }
      ? StreamMethod<K>
      : UnaryMethod<K>
    : never;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** UNAVAILABLE before anything reached a broker: safe to send elsewhere, mutation or not. */
function notDelivered(e: ServiceError): boolean {
  return (
    e.code === status.UNAVAILABLE && /No connection established|ECONNREFUSED|connect/i.test(e.details ?? '')
  );
}

function retryAfterMs(e: ServiceError): number | undefined {
  const v = e.metadata?.get('retry-after-ms')[0];
  const n = typeof v === 'string' ? Number(v) : NaN;
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

function pems(tls: TlsFiles | TlsPems): TlsPems {
  if ('caPem' in tls) return tls;
  return {
    caPem: readFileSync(tls.caFile),
    certPem: readFileSync(tls.certFile),
    keyPem: readFileSync(tls.keyFile),
  };
}

export class KeybrokerClient {
  readonly addresses: readonly string[];
  readonly admin!: ServiceApi<'Admin'>;
  readonly approvals!: ServiceApi<'Approvals'>;
  readonly blindIndexes!: ServiceApi<'BlindIndexes'>;
  readonly certificates!: ServiceApi<'Certificates'>;
  readonly crypto!: ServiceApi<'Crypto'>;
  readonly keys!: ServiceApi<'Keys'>;
  readonly policy!: ServiceApi<'Policy'>;
  readonly secrets!: ServiceApi<'Secrets'>;
  /** Called after every attempt (tests and metrics). */
  observer: CallObserver | undefined;
  readonly #pool: BrokerPool;
  /** [broker][service] -> grpc client. */
  readonly #clients: Map<ServiceName, Client>[];
  readonly #deadlineMs: number;
  readonly #retry: Required<RetryOptions>;

  constructor(o: KeybrokerClientOptions) {
    if (o.addresses.length === 0) throw new Error('KeybrokerClient: at least one address is needed');
    this.addresses = [...o.addresses];
    this.#pool = new BrokerPool(o.addresses.length, {
      mode: o.failover ?? 'ordered',
      ...(o.brokerDownMs !== undefined ? { downMs: o.brokerDownMs } : {}),
    });
    this.#deadlineMs = o.deadlineMs ?? 30_000;
    this.#retry = { ...RETRY_DEFAULTS, ...o.retry };
    const pkg = loadPackageDefinition(loadKeybrokerProtos()) as unknown as {
      keybroker: { v1: Record<string, Ctor> };
    };
    const t = pems(o.tls);
    const creds = credentials.createSsl(Buffer.from(t.caPem), Buffer.from(t.keyPem), Buffer.from(t.certPem));
    const max = o.maxMessageBytes ?? 64 * 1024 * 1024;
    this.#clients = o.addresses.map((address) => {
      const host = address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      // RFC 6066 forbids IPs as SNI; the dev server certificate names localhost.
      const serverName = o.serverName ?? (host === '127.0.0.1' || host === '::1' ? 'localhost' : undefined);
      const opts = {
        'grpc.max_receive_message_length': max,
        'grpc.max_send_message_length': max,
        ...(serverName !== undefined ? { 'grpc.ssl_target_name_override': serverName } : {}),
      };
      const m = new Map<ServiceName, Client>();
      for (const s of Object.keys(RPC_TABLE) as ServiceName[]) {
        const C = pkg.keybroker.v1[s];
        if (C === undefined) throw new Error(`service ${s} missing from the protos`);
        m.set(s, new C(address, creds, opts));
      }
      return m;
    });
    for (const s of Object.keys(RPC_TABLE) as ServiceName[]) {
      const api: Record<string, unknown> = {};
      for (const [m, shape] of Object.entries(RPC_TABLE[s])) {
        const rpc = `${s}.${m}` as RpcName;
        const name = m.charAt(0).toLowerCase() + m.slice(1);
        api[name] = shape.stream
          ? (co?: CallOptions) => this.stream(rpc, co)
          : (req: object, co?: CallOptions) => this.call(rpc, req, co);
      }
      (this as unknown as Record<string, unknown>)[s.charAt(0).toLowerCase() + s.slice(1)] = api;
    }
  }

  /** Call a unary RPC by name ("Crypto.Encrypt"), with deadline, retries and failover. */
  async call<K extends RpcName>(
    rpc: K,
    req: Input<RpcTypes[K]['req']> | object,
    o: CallOptions = {},
  ): Promise<RpcTypes[K]['res']> {
    const [service, method] = rpc.split('.') as [ServiceName, string];
    const retry = { ...this.#retry, ...o.retry };
    const deadline = Date.now() + (o.deadlineMs ?? this.#deadlineMs);
    const idempotent = RETRY_CLASS[rpc] === 'idempotent' || retry.retryMutations;
    const tried = new Set<number>();
    for (let attempt = 1; ; attempt++) {
      const b = this.#pool.pick(tried);
      tried.add(b);
      try {
        const res = await this.#unary(b, service, method, req, o, deadline);
        this.#pool.markUp(b);
        this.observer?.({ rpc, broker: this.addresses[b] as string, attempt, code: 'ok' });
        return res as RpcTypes[K]['res'];
      } catch (err) {
        const e = err as ServiceError;
        const event = { rpc, broker: this.addresses[b] as string, attempt, code: e.code };
        let floor = 0;
        let retryable = false;
        if (e.code === status.UNAVAILABLE) {
          this.#pool.markDown(b);
          retryable = idempotent || notDelivered(e);
        } else if (e.code === status.RESOURCE_EXHAUSTED) {
          // Only an admission refusal (it carries retry-after-ms) happened before any effect.
          const after = retryAfterMs(e);
          retryable = after !== undefined;
          floor = after ?? 0;
        }
        const after = retryAfterMs(e);
        const last = !retryable || attempt >= retry.maxAttempts;
        // Another broker is tried at once; the same one again after a backoff.
        const other = tried.size < this.#pool.size && e.code === status.UNAVAILABLE;
        const wait = other ? 0 : backoffMs(attempt, retry, floor);
        this.observer?.({
          ...event,
          ...(after !== undefined ? { retryAfterMs: after } : {}),
          ...(last ? {} : { waitMs: wait }),
        });
        if (last || Date.now() + wait >= deadline) throw e;
        if (wait > 0) await sleep(wait);
        if (!other) tried.clear();
      }
    }
  }

  /** Open a bidi stream ("Crypto.EncryptStream") on the current broker; streams are not retried. */
  stream<K extends RpcName>(
    rpc: K,
    o: CallOptions = {},
  ): ClientDuplexStream<Input<RpcTypes[K]['req']>, RpcTypes[K]['res']> {
    const [service, method] = rpc.split('.') as [ServiceName, string];
    const raw = this.#clients[this.#pool.pick()]?.get(service) as unknown as Record<string, Bidi>;
    const fn = raw[method];
    if (typeof fn !== 'function') throw new Error(`no RPC ${rpc}`);
    return fn.call(raw, this.#md(o), {
      deadline: new Date(Date.now() + (o.deadlineMs ?? 300_000)),
    }) as ClientDuplexStream<Input<RpcTypes[K]['req']>, RpcTypes[K]['res']>;
  }

  close(): void {
    for (const m of this.#clients) for (const c of m.values()) c.close();
  }

  #md(o: CallOptions): Metadata {
    const md = new Metadata();
    if (o.requestId !== undefined) md.set('x-request-id', o.requestId);
    return md;
  }

  #unary(
    b: number,
    service: ServiceName,
    method: string,
    req: object,
    o: CallOptions,
    deadline: number,
  ): Promise<object> {
    const raw = this.#clients[b]?.get(service) as unknown as Record<string, Unary>;
    const fn = raw[method];
    if (typeof fn !== 'function') return Promise.reject(new Error(`no RPC ${service}.${method}`));
    return new Promise((resolve, reject) => {
      fn.call(raw, req, this.#md(o), { deadline: new Date(deadline) }, (err, res) =>
        err ? reject(err) : resolve(res),
      );
    });
  }
}
