/** Load a proto file into grpc-js service constructors the same way for every server and client. */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

// Bytes stay Buffers, enums as strings, 64-bit ints as strings: the defaults grpc-js users expect.
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** The package object of `files`, with `includeDirs` for imports. */
export function loadProto(files: readonly string[], includeDirs: readonly string[]): grpc.GrpcObject {
  const def = protoLoader.loadSync([...files], { ...LOADER_OPTIONS, includeDirs: [...includeDirs] });
  return grpc.loadPackageDefinition(def);
}

/** Walk a dotted name (`keybroker.v1.CryptoService`) to a service client constructor. */
export function serviceConstructor(root: grpc.GrpcObject, fullName: string): grpc.ServiceClientConstructor {
  let node: unknown = root;
  for (const part of fullName.split('.')) {
    node = (node as Record<string, unknown> | undefined)?.[part];
  }
  if (typeof node !== 'function' || !('service' in node)) {
    throw new Error(`service ${fullName} not found in the loaded protos`);
  }
  return node as grpc.ServiceClientConstructor;
}

/** Message size limit for bench servers and clients (64 KiB payloads and 100-item batches fit). */
export const BENCH_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
