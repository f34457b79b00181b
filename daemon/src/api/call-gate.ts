/**
 * The one place every call passes: identity from the client certificate, request id,
 * authorisation, deadline, error mapping, audit (fail-closed), one log line and metrics.
 * Handlers only see calls that were authenticated and allowed, and only throw KbError.
 */
import { randomUUID } from 'node:crypto';
import { TLSSocket } from 'node:tls';
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
import type { AuditRecordInput, AuditSink } from '../audit/audit-sink.ts';
import type { Authorizer, CallerIdentity, Decision, PendingField } from '../policy/authorizer.ts';
import type { Logger, RequestLine } from '../obs/logger.ts';
import type { Metrics } from '../obs/metrics.ts';
import type { Admission } from './admission.ts';
import { customerList } from './customer-list.ts';
import { peerIdentityOf, peerRefusal } from './peer-identity.ts';
import type { PeerIdentity, RevocationCheck } from './peer-identity.ts';
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
/** Error codes that mean "refused" in the audit record (result 'denied'). */
const REFUSALS: ReadonlySet<string> = new Set([
  'PERMISSION_DENIED',
  'APPROVAL_REQUIRED',
  'ALGORITHM_NOT_ALLOWED',
  'RATE_LIMITED',
]);

type AnyCall = ServerUnaryCall<unknown, unknown> | ServerDuplexStream<unknown, unknown>;

interface Begun {
  readonly started: number;
  readonly requestId: string;
  readonly deadline: number;
  readonly timer: NodeJS.Timeout;
  readonly call: AnyCall;
  readonly onCancel: () => void;
  /** Why the call was abandoned (deadline or cancel), once it was. */
  reason: Error | undefined;
  /** Made on first use of ctx.signal (streams use it; unary handlers do not). */
  ac: AbortController | undefined;
  /** Rejects the handler race in withDeadline while one runs. */
  onAbort: ((reason: Error) => void) | undefined;
}

/** Abandon a call: the handler race rejects and ctx.signal (if anyone holds it) aborts. */
function abortCall(b: Begun, reason: Error): void {
  if (b.reason !== undefined) return;
  b.reason = reason;
  b.ac?.abort(reason);
  b.onAbort?.(reason);
}

/** Throw when the caller has cancelled or its deadline has passed (the timer may not have run yet). */
function throwIfAbandoned(b: Begun): void {
  if (b.reason === undefined && Date.now() >= b.deadline) abortCall(b, new KbError('DEADLINE_EXCEEDED'));
  if (b.reason !== undefined) throw b.reason;
}

/**
 * The TLS socket a call arrived on. grpc-js does not expose it, so this walks its call chain
 * (ServerUnaryCall -> interceptors -> base call -> HTTP/2 stream -> session -> socket); if the
 * internals ever change it returns undefined and identities are simply parsed per call.
 */
function socketOf(call: AnyCall): TLSSocket | undefined {
  let c = (call as unknown as { call?: unknown }).call as
    { nextCall?: unknown; stream?: unknown } | undefined;
  for (let i = 0; i < 16 && c !== undefined && c.nextCall !== undefined; i++) c = c.nextCall as typeof c;
  const socket = (c?.stream as { session?: { socket?: unknown } } | undefined)?.session?.socket;
  return socket instanceof TLSSocket ? socket : undefined;
}

export class CallGate {
  readonly #o: CallGateOptions;
  /** Identity per TLS connection (a WeakMap: it goes with the socket). */
  readonly #identities = new WeakMap<TLSSocket, PeerIdentity | KbError>();

  constructor(o: CallGateOptions) {
    this.#o = o;
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
    // Parsing the peer certificate costs ~0.5 ms of CPU (getPeerCertificate builds the whole
    // chain as JS objects), so it is done once per TLS connection and kept with the socket.
    const socket = socketOf(call);
    let known = socket === undefined ? undefined : this.#identities.get(socket);
    if (known === undefined) {
      this.#o.metrics.identityParses.inc();
      try {
        known = peerIdentityOf(call.getAuthContext().sslPeerCertificate);
      } catch (err) {
        known = this.#refuse(socket, toKbError(err), call);
      }
      if (socket !== undefined && !(known instanceof KbError)) this.#identities.set(socket, known);
    }
    if (known instanceof KbError) throw known;
    // The connection outlives the handshake: expiry and revocation are checked on every call.
    const refusal = peerRefusal(known, Date.now(), this.#o.revoked);
    if (refusal !== undefined) throw this.#refuse(socket, refusal, call);
    return known.identity;
  }

  /** Remember a refused certificate for its connection and log why (once per connection). */
  #refuse(socket: TLSSocket | undefined, err: KbError, call: AnyCall): KbError {
    if (socket !== undefined) this.#identities.set(socket, err);
    this.#o.log.warn(
      { err: err.safeMessage, detail: err.detail, peer: call.getPeer() },
      'client certificate refused',
    );
    return err;
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

  async #audit(
    rpc: string,
    requestId: string,
    identity: CallerIdentity | undefined,
    target: CallTarget | undefined,
    facts: AuditFacts,
    err: KbError | undefined,
    decision: Decision | undefined,
    note?: string,
    intent = false,
  ): Promise<KbError | undefined> {
    const customer =
      facts.customer ??
      (facts.customers !== undefined && facts.customers.size > 0
        ? customerList(facts.customers)
        : undefined) ??
      target?.customer;
    // A refusal is 'denied' whether the policy decided it or a later check (approval, role in
    // the approval store, rate limit, the customer's authorization) did; else it is an 'error'.
    const refusal = facts.refusal;
    const denied =
      (decision !== undefined && !decision.allow) ||
      (err !== undefined &&
        (REFUSALS.has(err.code) || (refusal !== undefined && err.code === 'DECRYPTION_FAILED')));
    // A refusal after the policy allowed the call records why it was refused, not the allow rule.
    const refusedLater = denied && err !== undefined && decision?.allow === true;
    const reason =
      note ??
      facts.reason ??
      (refusedLater
        ? (refusal?.reason ?? err.safeMessage)
        : refusal !== undefined && decision?.allow === true
          ? `allowed; some items refused (${refusal.reason})`
          : decision?.reason);
    // Assigned field by field rather than spread: this runs for every call.
    const record: { -readonly [K in keyof AuditRecordInput]: AuditRecordInput[K] } = {
      time: new Date(),
      requestId,
      identity: identity?.uri ?? 'unauthenticated',
      rpc,
      result: intent ? 'intent' : err === undefined ? 'ok' : denied ? 'denied' : 'error',
    };
    if (target?.org !== undefined) record.org = target.org;
    if (target?.tenant !== undefined) record.tenant = target.tenant;
    if (customer !== undefined) record.customer = customer;
    if (facts.keyName !== undefined) record.keyName = facts.keyName;
    if (facts.keyVersion !== undefined) record.keyVersion = facts.keyVersion;
    if (err !== undefined) record.code = err.code;
    if (reason !== undefined) record.reason = reason;
    try {
      await this.#o.audit.append(record);
      return undefined;
    } catch (auditErr) {
      // Fail-closed: without a durable record the call fails, whatever its own outcome.
      this.#o.log.error(
        { requestId, rpc, err: toKbError(auditErr).detail ?? String(auditErr) },
        'audit append failed',
      );
      return new KbError('AUDIT_UNAVAILABLE');
    }
  }

  /**
   * Before a mutating handler runs: refuse while the audit log is unhealthy or the caller has
   * already given up, then make the `intent` record durable (fail-closed: no record, no effect).
   */
  async #intent(
    rpc: string,
    begun: Begun,
    identity: CallerIdentity,
    target: CallTarget,
    decision: Decision,
  ): Promise<void> {
    const h = this.#o.audit.health();
    if (!h.ok) throw new KbError('AUDIT_UNAVAILABLE', undefined, { detail: h.reason ?? 'unhealthy' });
    throwIfAbandoned(begun);
    const err = await this.#audit(
      rpc,
      begun.requestId,
      identity,
      target,
      {},
      undefined,
      decision,
      undefined,
      true,
    );
    if (err !== undefined) throw err;
    // The intent write may have outlasted the deadline: nothing has happened yet, so refuse.
    throwIfAbandoned(begun);
  }

  /** The outcome record of a call that changed state failed: undo what can be undone. */
  #undo(rpc: string, requestId: string, facts: AuditFacts): void {
    if (facts.undoIfUnrecorded === undefined) return;
    try {
      facts.undoIfUnrecorded();
    } catch (err) {
      this.#o.log.error({ requestId, rpc, err: toKbError(err).detail ?? String(err) }, 'undo failed');
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
        await this.#intent(rpc, begun, identity, target, decision);
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
      auditErr = await this.#audit(rpc, begun.requestId, identity, target, facts, err, decision, v?.note);
    if (auditErr !== undefined && err === undefined) this.#undo(rpc, begun.requestId, facts);
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
      const openErr = await this.#audit(
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
      err = (await this.#audit(rpc, begun.requestId, identity, target, facts, err, decision, v?.note)) ?? err;
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
    if (begun.reason !== undefined) throw begun.reason;
    const root = this.#o.log;
    let log: Logger | undefined;
    // The gate's target without its pending fields: these checks supply them.
    const { pending: _pending, ...known } = target;
    const authorize = (extra: { customer?: CustomerId; keyName?: string; algorithm?: string }) =>
      this.#o.authorizer().authorize({ identity, rpc, ...known, ...extra });
    // A batch asks once per customer, not once per item.
    const byCustomer = new Map<CustomerId, Decision>();
    return {
      authorizeCustomer: (customer) => {
        let d = byCustomer.get(customer);
        if (d === undefined) {
          (facts.customers ??= new Set()).add(customer);
          d = authorize({ customer });
          byCustomer.set(customer, d);
        }
        if (!d.allow) facts.refusal = d;
        return d;
      },
      mayUseKey: (keyName, algorithm) => {
        const d = authorize(algorithm === undefined ? { keyName } : { keyName, algorithm });
        // FIPS mode refuses using a key, not seeing it: then the rules on its name decide.
        return d.allow || (d.code === 'ALGORITHM_NOT_ALLOWED' && authorize({ keyName }).allow);
      },
      requestId: begun.requestId,
      rpc,
      identity,
      // Made on first use: most calls never log beyond their request line.
      get log() {
        return (log ??= root.child({ requestId: begun.requestId }));
      },
      deadline: begun.deadline,
      // Made on first use too: only streaming handlers watch the signal.
      get signal() {
        if (begun.ac === undefined) {
          begun.ac = new AbortController();
          if (begun.reason !== undefined) begun.ac.abort(begun.reason);
        }
        return begun.ac.signal;
      },
    };
  }
}

/** The retry hint of a rate-limited call as the `retry-after-ms` trailer. */
function setRetryAfter(md: Metadata, err: KbError): void {
  const retry = (err as { retryAfterMs?: unknown }).retryAfterMs;
  if (typeof retry === 'number' && Number.isFinite(retry)) md.set('retry-after-ms', String(retry));
}

/** Settle with `work`, or with the abort reason when the call is abandoned first. */
function withDeadline<T>(work: Promise<T>, begun: Begun): Promise<T> {
  if (begun.reason !== undefined) return Promise.reject(begun.reason);
  return new Promise<T>((resolve, reject) => {
    begun.onAbort = reject;
    work.then(
      (v) => {
        begun.onAbort = undefined;
        resolve(v);
      },
      (e: unknown) => {
        begun.onAbort = undefined;
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
