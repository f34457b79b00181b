/**
 * Loads proto/keybroker/v1/*.proto at runtime with @grpc/proto-loader (no codegen). Request
 * deserializers are wrapped so a message that is not valid protobuf becomes a MALFORMED marker
 * the call gate turns into INVALID_ARGUMENT (grpc-js would otherwise answer INTERNAL).
 */
import { resolve } from 'node:path';
import { loadSync } from '@grpc/proto-loader';
import type { MethodDefinition, Options, PackageDefinition, ServiceDefinition } from '@grpc/proto-loader';
import { nestedFieldsOf, scanFieldCount } from './field-count-scan.ts';

export const PROTO_ROOT = resolve(import.meta.dirname, '../../../proto');
export const PROTO_FILES = [
  'keybroker/v1/admin.proto',
  'keybroker/v1/crypto.proto',
  'keybroker/v1/approvals.proto',
  'keybroker/v1/policy.proto',
  'keybroker/v1/keys.proto',
  'keybroker/v1/certificates.proto',
  'keybroker/v1/blind_index.proto',
  'keybroker/v1/secrets.proto',
];

/** How messages look in JS: camelCase fields, enums as names, 64-bit ints as numbers, bytes as Buffer. */
export const LOADER_OPTIONS: Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

/** Marker for a request that failed to decode. */
export const MALFORMED: unique symbol = Symbol('malformed request');
export type Malformed = typeof MALFORMED;
/** Marker for a request over the configured message size (decoded never). */
export const OVERSIZED: unique symbol = Symbol('oversized request');
/** Marker for a request with more fields than any valid one has (decoded never: see field-count-scan.ts). */
export const TOO_MANY_FIELDS: unique symbol = Symbol('request with too many fields');

/** Most field occurrences (all nesting levels) a request may have, for a batch bound of `maxItems`. */
export function maxRequestFields(maxItems: number): number {
  // A batch item has at most a handful of fields; names, options and the like add a few more.
  return maxItems * 8 + 1024;
}

/** Load the keybroker.v1 package definition (shared by server, reflection and clients). */
export function loadKeybrokerPackage(): PackageDefinition {
  return loadSync(PROTO_FILES, LOADER_OPTIONS);
}

/**
 * A service definition whose request deserializers never throw, and refuse (without decoding)
 * messages over `maxBytes` so the caller gets INVALID_ARGUMENT rather than gRPC's own
 * RESOURCE_EXHAUSTED, which only applies beyond the server's hard receive limit. Messages with
 * more than `maxFields` field occurrences are refused undecoded too (TOO_MANY_FIELDS): a few
 * megabytes of empty batch items would otherwise freeze the event loop while protobufjs builds them.
 */
export function safeService(
  pkg: PackageDefinition,
  name: string,
  maxBytes: number,
  maxFields = Number.POSITIVE_INFINITY,
): ServiceDefinition {
  const svc = pkg[name] as ServiceDefinition | undefined;
  if (svc === undefined || 'format' in svc) throw new Error(`service ${name} not in the proto package`);
  const types = nestedFieldsOf(pkg);
  const pkgName = name.slice(0, name.lastIndexOf('.'));
  const out: ServiceDefinition = {};
  for (const [method, def] of Object.entries(svc)) {
    const decode = def.requestDeserialize;
    const requestType = `${pkgName}.${(def.requestType as { type?: { name?: string } }).type?.name ?? ''}`;
    out[method] = {
      ...def,
      requestDeserialize: (buf: Buffer): object => {
        if (buf.length > maxBytes) return OVERSIZED as unknown as object;
        if (Number.isFinite(maxFields)) {
          const scan = scanFieldCount(types, requestType, buf, maxFields);
          if (scan === 'too-many-fields') return TOO_MANY_FIELDS as unknown as object;
          if (scan === 'malformed') return MALFORMED as unknown as object;
        }
        try {
          return decode(buf);
        } catch {
          return MALFORMED as unknown as object;
        }
      },
    } as MethodDefinition<object, object>;
  }
  return out;
}
