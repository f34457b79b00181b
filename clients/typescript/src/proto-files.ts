/**
 * Where the keybroker.v1 protos are and how they are loaded. The package carries a copy in
 * proto/ (written by `npm run build`, so an installed package is self-contained); inside the
 * repository the sources fall back to the repository's proto/ directory.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadSync } from '@grpc/proto-loader';
import type { Options, PackageDefinition } from '@grpc/proto-loader';

export const PROTO_FILES = [
  'keybroker/v1/admin.proto',
  'keybroker/v1/approvals.proto',
  'keybroker/v1/blind_index.proto',
  'keybroker/v1/certificates.proto',
  'keybroker/v1/crypto.proto',
  'keybroker/v1/keys.proto',
  'keybroker/v1/policy.proto',
  'keybroker/v1/secrets.proto',
] as const;

/** The proto root: the package's own copy, else the repository's (sources run in place). */
export function protoRoot(): string {
  for (const rel of ['../proto/', '../../../proto/']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${dir}keybroker/v1/crypto.proto`)) return dir;
  }
  throw new Error('keybroker protos not found: run `npm run build` in clients/typescript');
}

/** Messages as plain objects: camelCase fields, enums as names, 64-bit ints as numbers, bytes as Buffer. */
export function loaderOptions(root: string): Options {
  return { keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [root] };
}

export function loadKeybrokerProtos(): PackageDefinition {
  const root = protoRoot();
  return loadSync([...PROTO_FILES], loaderOptions(root));
}
