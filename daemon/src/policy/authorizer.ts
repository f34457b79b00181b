/**
 * The one place every call is authorised. The API layer builds an AuthzRequest from the
 * authenticated identity (never from request fields) and asks an Authorizer; the policy engine
 * implements it. Fail-closed: anything but an explicit allow is a deny.
 */
import type { ErrorCode } from '../errors.ts';
import type { CustomerId, OrgId, TenantId } from '../ids.ts';

export type Role = 'viewer' | 'operator' | 'admin';

/** Who is calling, as proven by the mTLS client certificate. */
export interface CallerIdentity {
  /** The SAN URI, e.g. spiffe://<org>/<tenant>/<service>, or spiffe://<org>/admin/<name>. */
  readonly uri: string;
  readonly org: OrgId;
  /** Absent for org-level admin identities. */
  readonly tenant?: TenantId;
  readonly service: string;
  readonly roles: readonly Role[];
}

export interface AuthzRequest {
  readonly identity: CallerIdentity;
  /** Fully qualified RPC, e.g. "keybroker.v1.Crypto/Encrypt". */
  readonly rpc: string;
  /** The org/tenant the call acts on (for data-plane calls: the identity's own). */
  readonly org?: OrgId;
  readonly tenant?: TenantId;
  readonly customer?: CustomerId;
  readonly algorithm?: string;
  readonly keyName?: string;
  /**
   * Fields the call carries but learns only later (a ciphertext's customer, each listed key's
   * name): the call gate's check skips deny rules on them and lets allow rules and ceilings pass
   * provisionally; the handler then authorizes each value once known (CallContext).
   */
  readonly pending?: readonly PendingField[];
}

/** A constraint list whose value a call learns only after the gate's check. */
export type PendingField = 'customers' | 'keys';

export interface Decision {
  readonly allow: boolean;
  /** Why; safe to return to the caller and to audit. Never contains secrets. */
  readonly reason: string;
  /** Which rule decided, for the audit record. */
  readonly rule?: string;
  /**
   * For a deny: the error to return (PERMISSION_DENIED when absent; ALGORITHM_NOT_ALLOWED for
   * FIPS refusals). Added by the policy engine; see `decisionError` in policy-engine.ts.
   */
  readonly code?: ErrorCode;
}

export interface Authorizer {
  authorize(req: AuthzRequest): Decision;
}
