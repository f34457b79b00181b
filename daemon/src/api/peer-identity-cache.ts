/**
 * The caller's identity per TLS connection: the peer certificate is parsed once per connection
 * and kept with the socket; expiry and revocation are still checked on every call.
 */
import { TLSSocket } from 'node:tls';
import { KbError, toKbError } from '../errors.ts';
import type { CallerIdentity } from '../policy/authorizer.ts';
import type { Logger } from '../obs/logger.ts';
import type { Metrics } from '../obs/metrics.ts';
import type { AnyCall } from './call-deadline.ts';
import { peerIdentityOf, peerRefusal } from './peer-identity.ts';
import type { PeerIdentity, RevocationCheck } from './peer-identity.ts';

/**
 * The TLS socket a call arrived on. grpc-js does not expose it, so this walks its call chain
 * (ServerUnaryCall -> interceptors -> base call -> HTTP/2 stream -> session -> socket); if the
 * internals ever change it returns undefined and identities are simply parsed per call.
 */
export function socketOf(call: AnyCall): TLSSocket | undefined {
  let c = (call as unknown as { call?: unknown }).call as
    { nextCall?: unknown; stream?: unknown } | undefined;
  for (let i = 0; i < 16 && c !== undefined && c.nextCall !== undefined; i++) c = c.nextCall as typeof c;
  const socket = (c?.stream as { session?: { socket?: unknown } } | undefined)?.session?.socket;
  return socket instanceof TLSSocket ? socket : undefined;
}

export class PeerIdentityCache {
  /** Identity per TLS connection (a WeakMap: it goes with the socket). */
  readonly #identities = new WeakMap<TLSSocket, PeerIdentity | KbError>();
  readonly #log: Logger;
  readonly #metrics: Metrics;
  readonly #revoked: RevocationCheck | undefined;

  constructor(log: Logger, metrics: Metrics, revoked: RevocationCheck | undefined) {
    this.#log = log;
    this.#metrics = metrics;
    this.#revoked = revoked;
  }

  /** The caller of `call`, or the registered error that refuses its certificate. */
  identify(call: AnyCall): CallerIdentity {
    // Parsing the peer certificate costs ~0.5 ms of CPU (getPeerCertificate builds the whole
    // chain as JS objects), so it is done once per TLS connection and kept with the socket.
    const socket = socketOf(call);
    let known = socket === undefined ? undefined : this.#identities.get(socket);
    if (known === undefined) {
      this.#metrics.identityParses.inc();
      try {
        known = peerIdentityOf(call.getAuthContext().sslPeerCertificate);
      } catch (err) {
        known = this.#refuse(socket, toKbError(err), call);
      }
      if (socket !== undefined && !(known instanceof KbError)) this.#identities.set(socket, known);
    }
    if (known instanceof KbError) throw known;
    // The connection outlives the handshake: expiry and revocation are checked on every call.
    const refusal = peerRefusal(known, Date.now(), this.#revoked);
    if (refusal !== undefined) throw this.#refuse(socket, refusal, call);
    return known.identity;
  }

  /** Remember a refused certificate for its connection and log why (once per connection). */
  #refuse(socket: TLSSocket | undefined, err: KbError, call: AnyCall): KbError {
    if (socket !== undefined) this.#identities.set(socket, err);
    this.#log.warn(
      { err: err.safeMessage, detail: err.detail, peer: call.getPeer() },
      'client certificate refused',
    );
    return err;
  }
}
