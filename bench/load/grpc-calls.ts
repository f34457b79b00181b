/** Promise wrappers over grpc-js generated clients, shared by echo and daemon ops (same client). */
import * as grpc from '@grpc/grpc-js';

type UnaryFn = (
  req: unknown,
  meta: grpc.Metadata,
  opts: grpc.CallOptions,
  cb: grpc.requestCallback<unknown>,
) => void;
type DuplexFn = (meta: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientDuplexStream<unknown, unknown>;

/** Unary call `method` (lowerCamel, as proto-loader names it) on `client`. */
export function unary<Res>(
  client: grpc.Client,
  method: string,
  req: unknown,
  timeoutMs: number,
): Promise<Res> {
  const fn = (client as unknown as Record<string, UnaryFn | undefined>)[method];
  if (typeof fn !== 'function') throw new Error(`no method ${method} on client`);
  return new Promise((resolve, reject) => {
    fn.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) reject(err);
      else resolve(res as Res);
    });
  });
}

/**
 * Bidirectional stream: write `messages` with back-pressure while collecting every response;
 * resolves with the responses when the server ends the stream.
 */
export function duplex<Res>(
  client: grpc.Client,
  method: string,
  messages: Iterable<unknown>,
  timeoutMs: number,
): Promise<Res[]> {
  const fn = (client as unknown as Record<string, DuplexFn | undefined>)[method];
  if (typeof fn !== 'function') throw new Error(`no method ${method} on client`);
  const call = fn.call(client, new grpc.Metadata(), { deadline: Date.now() + timeoutMs });
  const out: Res[] = [];
  return new Promise((resolve, reject) => {
    call.on('data', (m: Res) => out.push(m));
    call.on('error', reject);
    call.on('end', () => resolve(out));
    const it = messages[Symbol.iterator]();
    const pump = (): void => {
      for (;;) {
        const next = it.next();
        if (next.done) {
          call.end();
          return;
        }
        if (!call.write(next.value)) {
          call.once('drain', pump);
          return;
        }
      }
    };
    pump();
  });
}
