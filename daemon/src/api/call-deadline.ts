/**
 * A call's deadline and cancellation: when the gate abandons a handler, and how a handler's
 * promise is raced against that.
 */
import type { ServerDuplexStream, ServerUnaryCall } from '@grpc/grpc-js';
import { KbError } from '../errors.ts';

export type AnyCall = ServerUnaryCall<unknown, unknown> | ServerDuplexStream<unknown, unknown>;

/** A call the gate has begun: its id, deadline and abandonment state. */
export interface Begun {
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
export function abortCall(b: Begun, reason: Error): void {
  if (b.reason !== undefined) return;
  b.reason = reason;
  b.ac?.abort(reason);
  b.onAbort?.(reason);
}

/** Throw when the caller has cancelled or its deadline has passed (the timer may not have run yet). */
export function throwIfAbandoned(b: Begun): void {
  if (b.reason === undefined && Date.now() >= b.deadline) abortCall(b, new KbError('DEADLINE_EXCEEDED'));
  if (b.reason !== undefined) throw b.reason;
}

/** Settle with `work`, or with the abort reason when the call is abandoned first. */
export function withDeadline<T>(work: Promise<T>, begun: Begun): Promise<T> {
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
