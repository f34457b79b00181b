/**
 * How every client command talks to the daemon: resolve address and credentials, call, print
 * JSON, and on failure print one error format on stderr (`keybroker: <RPC> failed: <CODE>:
 * <message>` plus a `hint:` line) and exit 1. The gRPC client and the config loader are imported
 * on first use, so that `--help` and usage errors never pay for them (CLI start-up time).
 */
import type { ServiceError } from '@grpc/grpc-js';

export interface ConnArgs {
  'data-dir'?: string;
  addr?: string;
  ca?: string;
  cert?: string;
  key?: string;
}

export type ServiceName =
  'admin' | 'crypto' | 'approvals' | 'policy' | 'keys' | 'certificates' | 'secrets' | 'blindIndexes';

/** What a connected CLI client offers: the services by name and the address it dialled. */
export interface CliClient {
  readonly address: string;
  service(name: ServiceName): import('../api/api-client.ts').ServiceClient;
}

/** gRPC status names by number, without loading grpc-js for it. */
const STATUS = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
] as const;

/** A connection-level failure (nothing answered, or something that is not our gRPC server did). */
const NOT_CONNECTED =
  /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|No connection established|failed to connect|Connection dropped|wrong version number|packet length too long|http_request|Protocol error|Received HTTP status code/i;

/** The hint line for a failed call: what to check or do next. */
export function hintFor(code: string, details: string, address: string): string | undefined {
  if (code === 'UNAVAILABLE' && NOT_CONNECTED.test(details))
    return `is the daemon running on ${address}? is this its gRPC port (not the metrics/health port)? (--addr, or the data dir's ready file)`;
  if (
    /plaintext|message|request|over the size limit|too large/i.test(details) &&
    /limit|large/i.test(details)
  )
    return 'the input is over the unary size limit: use --stream (EncryptStream/DecryptStream) for large inputs';
  if (code === 'UNAVAILABLE' && /certificate|handshake|SSL|TLS|alert/i.test(details))
    return 'the TLS handshake failed: does --ca hold the CA that signed the daemon certificate, and did the daemon accept this client certificate (--cert/--key; the daemon log names the cause)?';
  if (/decryption failed/i.test(details))
    return 'the ciphertext, its AAD/context or the key version does not match (every failed decryption gives this one error)';
  switch (code) {
    case 'UNAVAILABLE':
      return 'the daemon or its HSM/audit log is not ready: retry, and check /readyz and the daemon log';
    case 'UNAUTHENTICATED':
      return 'the daemon did not accept this client certificate: check --cert/--key (a spiffe:// URI SAN, clientAuth usage, not expired or revoked)';
    case 'PERMISSION_DENIED':
      return 'the policy refused this identity for this call: use an identity with the right role (admin commands use <data-dir>/pki/admin.pem) or ask an admin to change the policy';
    case 'RESOURCE_EXHAUSTED':
      return 'a rate limit, quota or size bound was hit: retry later (see retry-after-ms) or send less per call';
    case 'INVALID_ARGUMENT':
      return 'the request was refused as malformed: check the arguments (--help)';
    case 'NOT_FOUND':
      return 'no such org, tenant, customer, key or version for this identity: check the names (list commands show them)';
    case 'FAILED_PRECONDITION':
      return 'the target is disabled, destroyed or below its minimum version, or an approval is missing: describe it first';
    case 'DEADLINE_EXCEEDED':
      return 'the call took longer than its deadline: retry; large inputs want --stream where the command has it';
    default:
      return undefined;
  }
}

/** Print a failed call in the one CLI error format and exit 1. */
export function failCall(method: string, err: unknown, address: string): never {
  const e = err as Partial<ServiceError>;
  const code = typeof e.code === 'number' ? (STATUS[e.code] ?? String(e.code)) : 'ERROR';
  const details = e.details ?? (err instanceof Error ? err.message : String(err));
  process.stderr.write(`keybroker: ${method} failed: ${code}: ${details}\n`);
  const hint = hintFor(code, details, address);
  if (hint !== undefined) process.stderr.write(`hint: ${hint}\n`);
  process.exit(1);
}

/** Connect as the data dir's identity (or --cert/--key), run `fn`, close. */
export async function withClient<T>(
  a: ConnArgs,
  as: 'admin' | 'service',
  fn: (c: CliClient) => Promise<T>,
): Promise<T> {
  const [{ resolveClientConfig }, { clientOptionsFromFiles, connectKeybroker }] = await Promise.all([
    import('../config/client-config.ts'),
    import('../api/api-client.ts'),
  ]);
  const c = resolveClientConfig({
    as,
    ...(a['data-dir'] !== undefined ? { dataDir: a['data-dir'] } : {}),
    ...(a.addr !== undefined ? { addr: a.addr } : {}),
    ...(a.ca !== undefined ? { ca: a.ca } : {}),
    ...(a.cert !== undefined ? { cert: a.cert } : {}),
    ...(a.key !== undefined ? { key: a.key } : {}),
  });
  const client = connectKeybroker(clientOptionsFromFiles(c.address, c.caFile, c.certFile, c.keyFile));
  try {
    return await fn({ address: c.address, service: (name) => client[name] });
  } finally {
    client.close();
  }
}

/** Call one unary RPC and return its answer; on failure print the error (with a hint) and exit 1. */
export async function runClientCall(
  a: ConnArgs,
  as: 'admin' | 'service',
  service: ServiceName,
  method: string,
  req: object,
): Promise<Record<string, unknown>> {
  return withClient(a, as, (c) =>
    c
      .service(service)
      .unary(method, req)
      .catch((err: unknown) => failCall(method, err, c.address)),
  );
}

/** JSON for the terminal: bytes print as base64 strings. */
export function printJson(v: unknown): void {
  const text = JSON.stringify(
    v,
    (_k, x: unknown) => {
      if (x !== null && typeof x === 'object' && (x as { type?: unknown }).type === 'Buffer') {
        const data = (x as { data?: unknown }).data;
        if (Array.isArray(data)) return Buffer.from(data as number[]).toString('base64');
      }
      return x;
    },
    2,
  );
  process.stdout.write(text + '\n');
}
