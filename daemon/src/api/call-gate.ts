/**
 * The one place every call passes: identity from the client certificate, request id,
 * authorisation, deadline, error mapping, audit (fail-closed), one log line and metrics.
 * Handlers only see calls that were authenticated and allowed, and only throw KbError.
 */
import { randomUUID } from 'node:crypto';
import { Metadata, status as GrpcCode } from '@grpc/grpc-js';
import type {
  ServerDuplexStream,
  ServerUnaryCall,
  handleBidiStreamingCall,
  handleUnaryCall,
  sendUnaryData,
} from '@grpc/grpc-js';
import { KbError, toKbError } from '../errors.ts';
import type { CustomerId, OrgId, TenantId } from '../ids.ts';
import type { AuditSink } from '../audit/audit-sink.ts';
import type { Authorizer, CallerIdentity, Decision, PendingField } from '../policy/authorizer.ts';
import type { Logger, RequestLine } from '../obs/logger.ts';
import type { Metrics } from '../obs/metrics.ts';
import type { Admission } from './admission.ts';
import { CallAuditor } from './call-auditor.ts';
import { callContext } from './call-context.ts';
import { abortCall, withDeadline } from './call-deadline.ts';
import type { AnyCall, Begun } from './call-deadline.ts';
import { PeerIdentityCache } from './peer-identity-cache.ts';
import type { RevocationCheck } from './peer-identity.ts';
import { MALFORMED, OVERSIZED, TOO_MANY_FIELDS } from './proto-definitions.ts';

/** What an allowed handler gets to know about its call. */
export interface CallContext {
  readonly requestId: string;
  readonly rpc: string;
  readonly identity: CallerIdentity;
  readonly log: Logger;
  /** Epoch ms after which the caller has given up. */
  readonly deadline: number;
  /** Aborted when the caller cancels or the deadline passes. */
  readonly signal: AbortSignal;
  /**
   * Authorize the call for a customer learnt after the gate's check (parsed ciphertext or stream
   * header, a batch item, stream init): the same engine and target, with the customer. The
   * customer joins the audit record; a deny is returned (the handler picks the error) and, if the
   * call then fails, its record says denied with the deciding rule.
   */
  authorizeCustomer(customer: CustomerId): Decision;
  /** Whether the caller may see key `keyName` (ListKeys, GetJwks filter what it may not). */
  mayUseKey(keyName: string, algorithm: string | undefined): boolean;
}

/** What a call acts on, for authorisation and audit; taken from the identity for data-plane calls. */
export interface CallTarget {
  readonly org?: OrgId;
  readonly tenant?: TenantId;
  readonly customer?: CustomerId;
  /** Algorithm the call would use (FIPS mode and algorithm rules), when the request names one. */
  readonly algorithm?: string;
  /** Fields learnt only in the handler, which authorizes them then (see AuthzRequest.pending). */
  readonly pending?: readonly PendingField[];
}

/** Facts a handler reports for the audit record. */
export interface AuditFacts {
  customer?: string;
  /** The named key the call used (Keys service), so the record says which key, not only which version. */
  keyName?: string;
  keyVersion?: number;
  /** Why, when the handler knows better than the policy decision (e.g. which approval was used). */
  reason?: string;
  /** Customers authorized one by one (batches, streams); the record names them (customerList). */
  customers?: Set<string>;
  /** The last refusal of a later authorization (CallContext.authorizeCustomer). */
  refusal?: Decision;
  /**
   * Mutating calls: undoes the call's own state change (compare-and-set) when its outcome record
   * cannot be written, e.g. an approval step; the intent record then stands alone.
   */
  undoIfUnrecorded?: () => void;
}

export interface UnarySpec<Req, Res> {
  /** Resolve the target from identity and request; may throw INVALID_ARGUMENT for bad names. */
  target(identity: CallerIdentity, req: Req): CallTarget;
  /** Rate-limit cost (batch: its item count); default 1. */
  cost?(req: Req): number;
  /**
   * The call changes state (Admin, Approvals, Policy, key lifecycle): refused while the audit log
   * is unhealthy, an `intent` record is made durable before the handler runs, and the handler is
   * never abandoned on the deadline, so its outcome record says what really happened.
   */
  readonly mutating?: boolean;
  handle(ctx: CallContext, req: Req, facts: AuditFacts): Promise<Res>;
}

export interface StreamSpec<Req, Res> {
  target(identity: CallerIdentity): CallTarget;
  handle(ctx: CallContext, call: ServerDuplexStream<Req, Res>, facts: AuditFacts): Promise<void>;
}

export interface CallGateOptions {
  readonly authorizer: () => Authorizer;
  readonly audit: AuditSink;
  readonly log: Logger;
  /** Writes the fixed-schema request lines (see obs/logger.ts). */
  readonly requestLog: (line: RequestLine) => void;
  readonly metrics: Metrics;
  readonly defaultDeadlineMs: number;
  /** Client deadlines further out are clamped to this (default: not clamped). */
  readonly maxDeadlineMs?: number;
  readonly shuttingDown: () => boolean;
  /** Rate limits, quotas, open streams, refusal summaries (see admission.ts for the order). */
  readonly admit?: Admission | undefined;
  /** Revoked client certificates, asked on every call (open connections included). */
  readonly revoked?: RevocationCheck | undefined;
  /** This broker process among several (`serve --workers`): sent as `x-broker-id`. */
  readonly brokerId?: string;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/;
export class CallGate {
  readonly #o: CallGateOptions;
  readonly #identities: PeerIdentityCache;
  readonly #auditor: CallAuditor;

  constructor(o: CallGateOptions) {
    this.#o = o;
    this.#identities = new PeerIdentityCache(o.log, o.metrics, o.revoked);
    this.#auditor = new CallAuditor(o.audit, o.log);
    o.admit?.attach(o.audit, o.log);
  }

  /**
   * Count a batch's items by outcome (a number: that many, all ok), one counter update per
   * outcome rather than one per item.
   */
  countItems(rpc: string, results: readonly { readonly ok: boolean }[] | number): void {
    const total = typeof results === 'number' ? results : results.length;
    let ok = total;
    if (typeof results !== 'number') for (const r of results) if (!r.ok) ok--;
    if (ok > 0) this.#o.metrics.batchItems.inc({ rpc, outcome: 'ok' }, ok);
    if (total > ok) this.#o.metrics.batchItems.inc({ rpc, outcome: 'error' }, total - ok);
  }

  /** Count bytes through a streaming RPC. */
  countStreamBytes(rpc: string, direction: 'in' | 'out', n: number): void {
    this.#o.metrics.streamBytes.inc({ rpc, direction }, n);
  }

  /** Wrap a unary handler. */
  unary<Req, Res>(
    rpc: string,
    spec: UnarySpec<Req, Res>,
  ): handleUnaryCall<Req | typeof MALFORMED | typeof OVERSIZED, Res> {
    return (call, callback: sendUnaryData<Res>) => {
      void this.#runUnary(
        rpc,
        spec,
        call as ServerUnaryCall<Req | typeof MALFORMED | typeof OVERSIZED, Res>,
        callback,
      );
    };
  }

  /** Wrap a bidi-streaming handler. */
  stream<Req, Res>(rpc: string, spec: StreamSpec<Req, Res>): handleBidiStreamingCall<Req, Res> {
    return (call) => {
      void this.#runStream(rpc, spec, call);
    };
  }

  #begin(rpc: string, call: AnyCall): Begun {
    const started = performance.now();
    const given = call.metadata.get('x-request-id')[0];
    const requestId = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    const dl = call.getDeadline();
    const deadlineMs = dl instanceof Date ? dl.getTime() : Number(dl);
    const now = Date.now();
    const deadline = Math.min(
      Number.isFinite(deadlineMs) ? deadlineMs : now + this.#o.defaultDeadlineMs,
      now + (this.#o.maxDeadlineMs ?? Number.POSITIVE_INFINITY),
    );
    const begun: Begun = {
      started,
      requestId,
      deadline,
      timer: setTimeout(
        () => abortCall(begun, new KbError('DEADLINE_EXCEEDED')),
        Math.max(0, deadline - now),
      ),
      call,
      // grpc-js also emits 'cancelled' after a normal end; #finish removes this listener first.
      onCancel: () => abortCall(begun, new KbError('DEADLINE_EXCEEDED', 'cancelled by the caller')),
      reason: undefined,
      ac: undefined,
      onAbort: undefined,
    };
    begun.timer.unref();
    call.on('cancelled', begun.onCancel);
    this.#o.metrics.rpcInFlight.inc({ rpc });
    return begun;
  }

  #identify(call: AnyCall): CallerIdentity {
    if (this.#o.shuttingDown()) throw new KbError('SHUTTING_DOWN');
    return this.#identities.identify(call);
  }

  #authorize(rpc: string, identity: CallerIdentity, target: CallTarget): Decision {
    return this.#o.authorizer().authorize({ identity, rpc, ...target });
  }

  /** A deny becomes the decision's error (PERMISSION_DENIED unless the policy names another). */
  #enforce(decision: Decision): void {
    if (!decision.allow) {
      throw new KbError(decision.code ?? 'PERMISSION_DENIED', undefined, { detail: decision.reason });
    }
  }

  #finish(
    rpc: string,
    begun: Begun,
    identity: CallerIdentity | undefined,
    target: CallTarget | undefined,
    err: KbError | undefined,
  ): void {
    clearTimeout(begun.timer);
    begun.call.removeListener('cancelled', begun.onCancel);
    const ms = performance.now() - begun.started;
    const code = err === undefined ? 'OK' : (GrpcCode[err.status] ?? String(err.status));
    this.#o.metrics.rpcInFlight.dec({ rpc });
    const labels = { rpc, code };
    this.#o.metrics.rpcRequests.inc(labels);
    this.#o.metrics.rpcDuration.observe(labels, ms / 1e3);
    const line: Record<string, string | number | undefined> = {
      requestId: begun.requestId,
      rpc,
      identity: identity?.uri,
      org: target?.org,
      tenant: target?.tenant,
      code,
      latencyMs: Math.round(ms * 1e3) / 1e3,
    };
    if (err !== undefined) line.error = err.code;
    if (err !== undefined && !err.isUserError) {
      const cause = err.cause instanceof Error ? err.cause.message : undefined;
      this.#o.log.error({ ...line, detail: err.detail, cause }, 'rpc failed');
    } else {
      this.#o.requestLog(line);
    }
  }

  async #runUnary<Req, Res>(
    rpc: string,
    spec: UnarySpec<Req, Res>,
    call: ServerUnaryCall<Req | typeof MALFORMED | typeof OVERSIZED, Res>,
    callback: sendUnaryData<Res>,
  ): Promise<void> {
    const begun = this.#begin(rpc, call);
    let identity: CallerIdentity | undefined;
    let target: CallTarget | undefined;
    let decision: Decision | undefined;
    let result: Res | undefined;
    let err: KbError | undefined;
    const facts: AuditFacts = {};
    let reached = false;
    try {
      identity = this.#identify(call);
      this.#o.admit?.throttle(identity.uri);
      const req = call.request;
      if (req === MALFORMED) throw new KbError('INVALID_ARGUMENT', 'malformed request');
      if (req === OVERSIZED) throw new KbError('TOO_LARGE', 'request message over the size limit');
      if (req === TOO_MANY_FIELDS) throw new KbError('TOO_LARGE', 'request has too many fields or items');
      target = spec.target(identity, req);
      const cost = spec.cost?.(req) ?? 1;
      this.#o.admit?.beforeAuthorization(identity, rpc, cost);
      decision = this.#authorize(rpc, identity, target);
      this.#enforce(decision);
      this.#o.admit?.afterAuthorization(rpc, target, cost);
      reached = true;
      if (spec.mutating === true) {
        await this.#auditor.intent(rpc, begun, identity, target, decision);
        // Not raced against the deadline: abandoning a destroy half-way, or recording it as
        // failed while it completes, would make the log disagree with what happened.
        result = await spec.handle(this.#context(rpc, begun, identity, target, facts), req, facts);
        if (begun.reason !== undefined)
          facts.reason = `${facts.reason ?? 'done'}; finished after the caller gave up`;
      } else {
        const ctx = this.#context(rpc, begun, identity, target, facts);
        result = await withDeadline(spec.handle(ctx, req, facts), begun);
      }
    } catch (e) {
      err = toKbError(e);
    }
    const v = reached || err === undefined ? undefined : this.#refused(call, identity, rpc, err);
    let auditErr: KbError | undefined;
    if (v?.record !== false)
      auditErr = await this.#auditor.append(
        rpc,
        begun.requestId,
        identity,
        target,
        facts,
        err,
        decision,
        v?.note,
      );
    if (auditErr !== undefined && err === undefined) this.#auditor.undo(rpc, begun.requestId, facts);
    err = auditErr ?? err;
    this.#finish(rpc, begun, identity, target, err);
    const md = new Metadata();
    md.set('x-request-id', begun.requestId);
    if (this.#o.brokerId !== undefined) md.set('x-broker-id', this.#o.brokerId);
    if (err === undefined) {
      call.sendMetadata(md);
      return callback(null, result as Res);
    }
    // A failed call has no response headers (trailers-only): the id goes in the trailers.
    setRetryAfter(md, err);
    callback({ code: err.status, details: err.safeMessage, metadata: md });
  }

  /** Account for a call refused before its handler (admission.ts decides how it is audited). */
  #refused(call: AnyCall, identity: CallerIdentity | undefined, rpc: string, err: KbError) {
    if (this.#o.admit === undefined) return undefined;
    const peer = identity === undefined ? call.getPeer() : '';
    const caller = identity?.uri ?? `peer:${peer.slice(0, Math.max(0, peer.lastIndexOf(':'))) || peer}`;
    const v = this.#o.admit.refused(caller, rpc, err);
    return v.note === undefined ? v : { record: v.record, note: `${err.safeMessage}; ${v.note}` };
  }

  async #runStream<Req, Res>(
    rpc: string,
    spec: StreamSpec<Req, Res>,
    call: ServerDuplexStream<Req, Res>,
  ): Promise<void> {
    const begun = this.#begin(rpc, call as AnyCall);
    let identity: CallerIdentity | undefined;
    let target: CallTarget | undefined;
    let decision: Decision | undefined;
    let err: KbError | undefined;
    const facts: AuditFacts = {};
    const md = new Metadata();
    md.set('x-request-id', begun.requestId);
    if (this.#o.brokerId !== undefined) md.set('x-broker-id', this.#o.brokerId);
    let reached = false;
    let release: (() => void) | undefined;
    try {
      identity = this.#identify(call as AnyCall);
      this.#o.admit?.throttle(identity.uri);
      target = spec.target(identity);
      this.#o.admit?.beforeAuthorization(identity, rpc, 1);
      decision = this.#authorize(rpc, identity, target);
      this.#enforce(decision);
      this.#o.admit?.afterAuthorization(rpc, target, 1);
      release = this.#o.admit?.openStream(identity);
      reached = true;
      // Fail-closed for streams too: the opening is on record before any output is sent.
      const openErr = await this.#auditor.append(
        rpc,
        begun.requestId,
        identity,
        target,
        facts,
        undefined,
        decision,
        'stream opened',
      );
      if (openErr) throw openErr;
      call.sendMetadata(md);
      const ctx = this.#context(rpc, begun, identity, target, facts);
      await withDeadline(spec.handle(ctx, call, facts), begun);
    } catch (e) {
      err = toKbError(e);
    } finally {
      release?.();
    }
    const v = reached || err === undefined ? undefined : this.#refused(call as AnyCall, identity, rpc, err);
    if (v?.record !== false)
      err =
        (await this.#auditor.append(rpc, begun.requestId, identity, target, facts, err, decision, v?.note)) ??
        err;
    this.#finish(rpc, begun, identity, target, err);
    if (err === undefined) call.end();
    else {
      setRetryAfter(md, err);
      call.emit('error', { code: err.status, details: err.safeMessage, metadata: md });
    }
  }

  #context(
    rpc: string,
    begun: Begun,
    identity: CallerIdentity,
    target: CallTarget,
    facts: AuditFacts,
  ): CallContext {
    return callContext(() => this.#o.authorizer(), this.#o.log, rpc, begun, identity, target, facts);
  }
}

/** The retry hint of a rate-limited call as the `retry-after-ms` trailer. */
function setRetryAfter(md: Metadata, err: KbError): void {
  const retry = (err as { retryAfterMs?: unknown }).retryAfterMs;
  if (typeof retry === 'number' && Number.isFinite(retry)) md.set('retry-after-ms', String(retry));
}
