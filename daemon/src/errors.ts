/**
 * The error registry: every error that may reach a caller is a KbError with a registered code.
 * Each code has one gRPC status and one safe message; detail for operators goes to the log only.
 * Numeric gRPC status values are used so that core code does not import grpc-js.
 */

/** gRPC status codes (grpc/status.proto), restated to keep core code free of grpc-js. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

interface ErrorSpec {
  readonly status: GrpcStatusCode;
  readonly message: string;
  /** User errors are reported per item in a batch; internal errors abort the whole call. */
  readonly user: boolean;
}

const S = GrpcStatus;
/** The registry. Codes are stable identifiers: never rename or reuse one. */
export const ERRORS = {
  INVALID_ARGUMENT: { status: S.INVALID_ARGUMENT, message: 'invalid argument', user: true },
  TOO_LARGE: { status: S.INVALID_ARGUMENT, message: 'request field too large', user: true },
  /** Every decrypt/unwrap failure, whatever its cause: one opaque error so nothing leaks. */
  DECRYPTION_FAILED: { status: S.INVALID_ARGUMENT, message: 'decryption failed', user: true },
  NOT_FOUND: { status: S.NOT_FOUND, message: 'not found', user: true },
  ALREADY_EXISTS: { status: S.ALREADY_EXISTS, message: 'already exists', user: true },
  PERMISSION_DENIED: { status: S.PERMISSION_DENIED, message: 'permission denied', user: true },
  UNAUTHENTICATED: { status: S.UNAUTHENTICATED, message: 'unauthenticated', user: true },
  DISABLED: { status: S.FAILED_PRECONDITION, message: 'key or entity is disabled', user: true },
  VERSION_BELOW_MINIMUM: {
    status: S.FAILED_PRECONDITION,
    message: 'key version below the allowed minimum',
    user: true,
  },
  FAILED_PRECONDITION: { status: S.FAILED_PRECONDITION, message: 'failed precondition', user: true },
  APPROVAL_REQUIRED: {
    status: S.FAILED_PRECONDITION,
    message: 'approval by a second admin required',
    user: true,
  },
  ALGORITHM_NOT_ALLOWED: { status: S.FAILED_PRECONDITION, message: 'algorithm not allowed', user: true },
  RATE_LIMITED: { status: S.RESOURCE_EXHAUSTED, message: 'rate limit exceeded', user: true },
  POOL_EXHAUSTED: { status: S.RESOURCE_EXHAUSTED, message: 'resource exhausted', user: false },
  /** A configured per-tenant bound (keys, versions, HSM objects); the message names it. */
  LIMIT_REACHED: { status: S.RESOURCE_EXHAUSTED, message: 'limit reached', user: true },
  HSM_UNAVAILABLE: { status: S.UNAVAILABLE, message: 'key store unavailable', user: false },
  AUDIT_UNAVAILABLE: { status: S.UNAVAILABLE, message: 'audit log unavailable', user: false },
  SHUTTING_DOWN: { status: S.UNAVAILABLE, message: 'server shutting down', user: false },
  DEADLINE_EXCEEDED: { status: S.DEADLINE_EXCEEDED, message: 'deadline exceeded', user: false },
  UNIMPLEMENTED: { status: S.UNIMPLEMENTED, message: 'not implemented', user: true },
  INTERNAL: { status: S.INTERNAL, message: 'internal error', user: false },
  /** A stored key row does not match its wrapped key (the store was edited or corrupted). */
  KEY_INTEGRITY: { status: S.DATA_LOSS, message: 'stored key failed its integrity check', user: false },
  /** A key found in the HSM has unsafe attributes (e.g. extractable): it is never used. */
  HSM_KEY_REFUSED: { status: S.INTERNAL, message: 'HSM key refused: unsafe attributes', user: false },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/**
 * The only error class that crosses the API boundary. `safeMessage` may name a field or a limit,
 * never a key byte, plaintext, PIN or whether some other tenant's object exists.
 * `detail` and `cause` are for the log.
 */
export class KbError extends Error {
  readonly code: ErrorCode;
  readonly status: GrpcStatusCode;
  readonly safeMessage: string;
  readonly detail: string | undefined;

  constructor(code: ErrorCode, safeDetail?: string, opts?: { detail?: string; cause?: unknown }) {
    const spec = ERRORS[code];
    const safe = safeDetail ? `${spec.message}: ${safeDetail}` : spec.message;
    super(safe, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'KbError';
    this.code = code;
    this.status = spec.status;
    this.safeMessage = safe;
    this.detail = opts?.detail;
  }

  get isUserError(): boolean {
    return ERRORS[this.code].user;
  }
}

/** Any thrown value as a KbError; unknown errors become INTERNAL with the original as cause. */
export function toKbError(err: unknown): KbError {
  if (err instanceof KbError) return err;
  return new KbError('INTERNAL', undefined, {
    cause: err,
    detail: err instanceof Error ? err.message : String(err),
  });
}

/** The one decrypt error. Callers must not be able to tell tamper, wrong key or wrong AAD apart. */
export function decryptionFailed(cause?: unknown): KbError {
  return new KbError('DECRYPTION_FAILED', undefined, cause === undefined ? undefined : { cause });
}
