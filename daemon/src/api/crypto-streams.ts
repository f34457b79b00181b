/**
 * EncryptStream / DecryptStream over gRPC bidi streams. Plaintext is re-chunked by the server
 * into fixed 64 KiB chunks, so the sealed stream does not depend on how the client split its
 * messages; the last chunk (possibly empty) is sealed as final, which is how truncation is
 * detected. Writes wait for 'drain', so a slow reader bounds server memory.
 */
import { once } from 'node:events';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { KbError } from '../errors.ts';
import { DEFAULT_CUSTOMER } from '../ids.ts';
import type { KeyBrokerApi } from '../keys/key-broker-api.ts';
import type { AuditFacts, CallContext, CallGate } from './call-gate.ts';
import { ownTenant } from './caller-identity.ts';
import { MALFORMED, OVERSIZED, TOO_MANY_FIELDS } from './proto-definitions.ts';
import type { FieldLimits } from './request-bounds.ts';
import { bytesField, optionalCustomer, requiredBytes } from './request-bounds.ts';

/** Plaintext bytes per sealed chunk. */
export const STREAM_CHUNK_BYTES = 64 * 1024;

type Msg = Record<string, unknown> & { msg?: string };

async function send<T>(ctx: CallContext, call: ServerDuplexStream<unknown, T>, msg: T): Promise<void> {
  if (ctx.signal.aborted) throw ctx.signal.reason as Error;
  if (!call.write(msg)) await once(call, 'drain', { signal: ctx.signal });
}

function asMsg(m: unknown, what: string): Msg {
  if (m === OVERSIZED) throw new KbError('TOO_LARGE', 'stream message over the size limit');
  if (m === TOO_MANY_FIELDS) throw new KbError('TOO_LARGE', 'stream message has too many fields');
  if (m === MALFORMED || typeof m !== 'object' || m === null)
    throw new KbError('INVALID_ARGUMENT', `malformed ${what}`);
  return m as Msg;
}

async function firstInit(it: AsyncIterator<unknown>): Promise<Msg> {
  const first = await it.next();
  if (first.done === true) throw new KbError('INVALID_ARGUMENT', 'the first message must be init');
  const m = asMsg(first.value, 'message');
  if (m.msg !== 'init' || typeof m.init !== 'object' || m.init === null) {
    throw new KbError('INVALID_ARGUMENT', 'the first message must be init');
  }
  return m.init as Msg;
}

export async function encryptStream(
  ctx: CallContext,
  call: ServerDuplexStream<unknown, object>,
  broker: () => KeyBrokerApi,
  limits: FieldLimits,
  facts: AuditFacts,
  gate: CallGate,
): Promise<void> {
  const rpc = 'EncryptStream';
  const it = call[Symbol.asyncIterator]();
  const init = await firstInit(it);
  const customer = optionalCustomer(init.customer);
  const aad = bytesField('init.aad', init.aad, limits.maxAadBytes);
  // Authorized for its customer at init, before any key is loaded.
  const d = ctx.authorizeCustomer(customer ?? DEFAULT_CUSTOMER);
  if (!d.allow) throw new KbError('PERMISSION_DENIED', undefined, { detail: d.reason });
  const enc = await broker().encryptStream(ownTenant(ctx.identity), {
    ...(customer !== undefined ? { customer } : {}),
    aad,
  });
  if (enc.keyVersion !== undefined) facts.keyVersion = enc.keyVersion;
  await send(ctx, call, { header: enc.header });
  let buf: Buffer = Buffer.alloc(0);
  for (let next = await it.next(); next.done !== true; next = await it.next()) {
    const m = asMsg(next.value, 'message');
    if (m.msg !== 'plaintext') throw new KbError('INVALID_ARGUMENT', 'init may only be sent once');
    const piece = bytesField('plaintext', m.plaintext, limits.maxStreamMessageBytes);
    gate.countStreamBytes(rpc, 'in', piece.length);
    buf = buf.length === 0 ? Buffer.from(piece) : Buffer.concat([buf, piece]);
    // Keep at least one byte back: only at end-of-stream do we know which chunk is final.
    while (buf.length > STREAM_CHUNK_BYTES) {
      const sealed = enc.seal(buf.subarray(0, STREAM_CHUNK_BYTES), false);
      buf = buf.subarray(STREAM_CHUNK_BYTES);
      gate.countStreamBytes(rpc, 'out', sealed.length);
      await send(ctx, call, { chunk: sealed });
    }
  }
  if (ctx.signal.aborted) throw ctx.signal.reason as Error;
  const last = enc.seal(buf, true);
  gate.countStreamBytes(rpc, 'out', last.length);
  await send(ctx, call, { chunk: last });
}

export async function decryptStream(
  ctx: CallContext,
  call: ServerDuplexStream<unknown, object>,
  broker: () => KeyBrokerApi,
  limits: FieldLimits,
  facts: AuditFacts,
  gate: CallGate,
): Promise<void> {
  const rpc = 'DecryptStream';
  const it = call[Symbol.asyncIterator]();
  const init = await firstInit(it);
  const header = requiredBytes('init.header', init.header, limits.maxStreamMessageBytes);
  const aad = bytesField('init.aad', init.aad, limits.maxAadBytes);
  // The header's customer is authorized before its key is loaded; refused = a bad header.
  const dec = await broker().decryptStream(
    ownTenant(ctx.identity),
    { header, aad },
    (customer) => ctx.authorizeCustomer(customer).allow,
  );
  if (dec.customer !== undefined) facts.customer = dec.customer;
  if (dec.keyVersion !== undefined) facts.keyVersion = dec.keyVersion;
  for (let next = await it.next(); next.done !== true; next = await it.next()) {
    const m = asMsg(next.value, 'message');
    if (m.msg !== 'chunk') throw new KbError('INVALID_ARGUMENT', 'init may only be sent once');
    const sealed = requiredBytes('chunk', m.chunk, limits.maxStreamMessageBytes);
    gate.countStreamBytes(rpc, 'in', sealed.length);
    const { plaintext } = dec.open(sealed);
    gate.countStreamBytes(rpc, 'out', plaintext.length);
    await send(ctx, call, { plaintext });
  }
  if (ctx.signal.aborted) throw ctx.signal.reason as Error;
  dec.finish();
}
