/** Short forms of the Secrets and BlindIndexes calls a service makes most. */
import type { BlindIndexToken } from './generated/keybroker-v1.ts';
import type { KeybrokerClient } from './keybroker-client.ts';

export interface SecretRef {
  readonly customer?: string;
}

/** Store `value` as the next version of secret `name`; returns the version written. */
export async function putSecret(
  c: KeybrokerClient,
  name: string,
  value: Uint8Array | string,
  o: SecretRef & { readonly cas?: number; readonly maxVersions?: number } = {},
): Promise<number> {
  const res = await c.secrets.putSecret({
    name,
    value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value,
    customer: o.customer ?? '',
    ...(o.cas !== undefined ? { cas: o.cas } : {}),
    maxVersions: o.maxVersions ?? 0,
  });
  return res.version;
}

/** The value of secret `name` (its newest readable version unless `version` is given). */
export async function getSecret(
  c: KeybrokerClient,
  name: string,
  o: SecretRef & { readonly version?: number } = {},
): Promise<{ value: Buffer; version: number }> {
  const res = await c.secrets.getSecret({ name, customer: o.customer ?? '', version: o.version ?? 0 });
  return { value: res.value, version: res.version };
}

/**
 * The blind-index token of `value` under index `index`, for writes (the primary version's), or
 * with `allSearchableVersions` every searchable version's token, newest first, for queries.
 */
export async function blindIndex(
  c: KeybrokerClient,
  index: string,
  value: Uint8Array | string,
  o: { readonly customer?: string; readonly allSearchableVersions?: boolean } = {},
): Promise<BlindIndexToken[]> {
  const res = await c.blindIndexes.computeBlindIndex({
    index,
    value: typeof value === 'string' ? Buffer.from(value, 'utf8') : value,
    customer: o.customer ?? '',
    allSearchableVersions: o.allSearchableVersions ?? false,
  });
  return res.tokens;
}
