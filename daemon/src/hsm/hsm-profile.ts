/**
 * HSM profiles: one JSON file per PKCS#11 implementation in `hsm-profiles/`, validated against
 * `hsm-profiles/profile.schema.json`. A profile decides mechanisms, token selection and quirks so
 * that no mechanism is ever hard-coded for all HSMs (Barbican's CBC_PAD-only plugin cannot store
 * anything on SoftHSM 2.6.1; we do not repeat that).
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Ajv } from 'ajv';
import { KbError } from '../errors.ts';
import type { HsmSigningAlgorithm, WrapMechanism } from './hsm.ts';

/** The folder holding the shipped profiles. */
export const PROFILES_DIR = resolve(import.meta.dirname, '../../../hsm-profiles');

/** One extra mechanism an operator requires (doctor checks it). */
export interface ExtraMechanism {
  readonly mechanism: string;
  readonly why: string;
}

/** A validated profile (see profile.schema.json for the meaning of each field). */
export interface HsmProfile {
  readonly name: string;
  readonly tested: boolean;
  readonly notes?: string;
  readonly module: { readonly paths: readonly string[]; readonly env?: Readonly<Record<string, string>> };
  readonly token: { readonly label?: string; readonly serial?: string; readonly slotIndex?: number };
  readonly login: { readonly user: 'user'; readonly pinFormat?: string };
  readonly pool: { readonly size: number; readonly maxWaiters: number };
  readonly wrap: WrapMechanism;
  readonly aesGcm: boolean;
  /** New keys get CKA_ALLOWED_MECHANISMS (their one mechanism); false/absent: not set (tokens without it). */
  readonly allowedMechanisms?: boolean;
  readonly signing: readonly HsmSigningAlgorithm[];
  readonly rsaPssMechanism?: 'CKM_SHA256_RSA_PKCS_PSS' | 'CKM_RSA_PKCS_PSS';
  readonly quirks: {
    readonly unwrapTemplateOmit?: readonly string[];
    readonly keyTemplateOmit?: readonly string[];
    readonly sessionObjectsNeedPrivate?: boolean;
  };
  readonly extraMechanisms?: readonly ExtraMechanism[];
  readonly notInHsm: readonly string[];
}

const MAX_PROFILE_BYTES = 64 * 1024;

let validator: ReturnType<Ajv['compile']> | undefined;
function validate(data: unknown): string | undefined {
  if (!validator) {
    const schema: unknown = JSON.parse(readFileSync(resolve(PROFILES_DIR, 'profile.schema.json'), 'utf8'));
    validator = new Ajv({ allErrors: true, strict: true }).compile(schema as object);
  }
  if (validator(data)) return undefined;
  return (validator.errors ?? [])
    .map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`)
    .join('; ');
}

/**
 * Load a profile by name (`softhsm2` -> `hsm-profiles/softhsm2.json`) or by path (anything with a
 * `/` or ending in `.json`). Throws KbError INVALID_ARGUMENT naming the file and the bad field.
 */
export function loadProfile(nameOrPath: string): HsmProfile {
  const isPath = nameOrPath.includes('/') || nameOrPath.endsWith('.json');
  if (!isPath && !/^[a-z0-9][a-z0-9-]{0,62}$/.test(nameOrPath)) {
    throw new KbError('INVALID_ARGUMENT', `profile name ${JSON.stringify(nameOrPath.slice(0, 64))}`);
  }
  const file = isPath ? resolve(nameOrPath) : resolve(PROFILES_DIR, `${nameOrPath}.json`);
  if (!existsSync(file)) throw new KbError('INVALID_ARGUMENT', `no HSM profile at ${file}`);
  const text = readFileSync(file, 'utf8');
  if (text.length > MAX_PROFILE_BYTES) throw new KbError('TOO_LARGE', `profile ${file}`);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new KbError('INVALID_ARGUMENT', `profile ${file} is not JSON`, { cause: err });
  }
  const problems = validate(data);
  if (problems !== undefined) throw new KbError('INVALID_ARGUMENT', `profile ${file}: ${problems}`);
  const profile = data as HsmProfile;
  if (profile.signing.includes('rsa-pss-sha256-3072') && profile.rsaPssMechanism === undefined) {
    throw new KbError('INVALID_ARGUMENT', `profile ${file}: rsa-pss-sha256-3072 needs rsaPssMechanism`);
  }
  return profile;
}

/** The first module path that exists, or undefined. */
export function resolveModulePath(profile: HsmProfile): string | undefined {
  return profile.module.paths.find((p) => existsSync(p));
}
