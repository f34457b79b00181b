/**
 * The JSON policy document: its schema (ajv), its types, and `loadPolicy`, which validates a
 * document completely and compiles its globs before anything can use it. A policy that fails any
 * check is refused as a whole with INVALID_ARGUMENT naming the bad field.
 */
import { createHash } from 'node:crypto';
import { Ajv } from 'ajv';
import { KbError } from '../errors.ts';
import type { Role } from './authorizer.ts';
import { compileGlob } from './glob.ts';
import type { Glob } from './glob.ts';

/** Largest policy document accepted, in bytes. */
export const MAX_POLICY_BYTES = 1024 * 1024;
const MAX_RULES = 10_000;
const MAX_LIST = 1_000;
const PATTERN = { type: 'string', minLength: 1, maxLength: 256, pattern: '^[\\x21-\\x7e]+$' } as const;
const PATTERNS = { type: 'array', minItems: 1, maxItems: MAX_LIST, items: PATTERN } as const;
const ROLE = { type: 'string', enum: ['viewer', 'operator', 'admin'] } as const;
const NAME = { type: 'string', pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' } as const;

/** JSON schema of a policy document, version 1. */
export const POLICY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['version', 'rules'],
  properties: {
    version: { const: 1 },
    fipsMode: { type: 'boolean' },
    rules: {
      type: 'array',
      maxItems: MAX_RULES,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'effect', 'identities', 'rpcs'],
        properties: {
          id: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$' },
          effect: { enum: ['allow', 'deny'] },
          description: { type: 'string', maxLength: 1024 },
          identities: PATTERNS,
          rpcs: PATTERNS,
          orgs: PATTERNS,
          tenants: PATTERNS,
          customers: PATTERNS,
          algorithms: PATTERNS,
          keys: PATTERNS,
        },
      },
    },
    tenants: {
      type: 'array',
      maxItems: MAX_RULES,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['org', 'tenant'],
        properties: {
          org: NAME,
          tenant: NAME,
          rpcs: PATTERNS,
          customers: PATTERNS,
          algorithms: PATTERNS,
          keys: PATTERNS,
        },
      },
    },
    roleBindings: {
      type: 'array',
      maxItems: MAX_RULES,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['identity', 'role'],
        properties: { identity: PATTERN, role: ROLE },
      },
    },
    adminRpcRoles: {
      type: 'object',
      maxProperties: MAX_LIST,
      propertyNames: { pattern: '^keybroker\\.v1\\.(Admin|Approvals|Policy)/[A-Za-z][A-Za-z0-9]{0,63}$' },
      additionalProperties: ROLE,
    },
  },
} as const;

/** A policy rule as written in the document. Absent constraint lists match anything. */
export interface PolicyRuleDoc {
  readonly id: string;
  readonly effect: 'allow' | 'deny';
  readonly description?: string;
  readonly identities: readonly string[];
  readonly rpcs: readonly string[];
  readonly orgs?: readonly string[];
  readonly tenants?: readonly string[];
  readonly customers?: readonly string[];
  readonly algorithms?: readonly string[];
  readonly keys?: readonly string[];
}

/** A per-tenant ceiling: no rule can allow a call on this tenant outside these lists. */
export interface TenantPolicyDoc {
  readonly org: string;
  readonly tenant: string;
  readonly rpcs?: readonly string[];
  readonly customers?: readonly string[];
  readonly algorithms?: readonly string[];
  readonly keys?: readonly string[];
}

/** The document as written (version 1). */
export interface PolicyDoc {
  readonly version: 1;
  readonly fipsMode?: boolean;
  readonly rules: readonly PolicyRuleDoc[];
  readonly tenants?: readonly TenantPolicyDoc[];
  readonly roleBindings?: readonly { readonly identity: string; readonly role: Role }[];
  readonly adminRpcRoles?: Readonly<Record<string, Role>>;
}

/** Constraint lists compiled to globs; undefined means "any". */
export interface Constraints {
  readonly rpcs?: readonly Glob[];
  readonly orgs?: readonly Glob[];
  readonly tenants?: readonly Glob[];
  readonly customers?: readonly Glob[];
  readonly algorithms?: readonly Glob[];
  readonly keys?: readonly Glob[];
}

export interface CompiledRule extends Constraints {
  readonly id: string;
  readonly effect: 'allow' | 'deny';
  readonly identities: readonly Glob[];
}

/** A validated, compiled policy: immutable, safe to share between evaluations. */
export interface Policy {
  /** SHA-256 (hex) of the document text, for audit records and reload responses. */
  readonly digest: string;
  readonly fipsMode: boolean;
  readonly rules: readonly CompiledRule[];
  /** Keyed by "org/tenant". */
  readonly tenants: ReadonlyMap<string, Constraints>;
  readonly roleBindings: readonly { readonly identity: Glob; readonly role: Role }[];
  readonly adminRpcRoles: ReadonlyMap<string, Role>;
  /** Ceilings from org sections (org-policy.ts), applied on top of `tenants`. */
  readonly orgTenants?: ReadonlyMap<string, Constraints>;
  /** Role bindings from org sections, used only when no `roleBindings` entry matches. */
  readonly orgRoleBindings?: readonly { readonly identity: Glob; readonly role: Role }[];
}

const ajv = new Ajv({ allErrors: false, strict: true });
const validateDoc = ajv.compile<PolicyDoc>(POLICY_SCHEMA);

function field(path: string): string {
  return path === '' ? 'policy' : `policy${path.replaceAll('/', '.')}`;
}

function globs(list: readonly string[] | undefined, path: string): readonly Glob[] | undefined {
  if (list === undefined) return undefined;
  return list.map((p, i) => {
    try {
      return compileGlob(p);
    } catch (err) {
      throw new KbError('INVALID_ARGUMENT', `${field(`${path}/${i}`)}: ${(err as Error).message}`);
    }
  });
}

type ListKey = keyof Constraints;
const LIST_KEYS: readonly ListKey[] = ['rpcs', 'orgs', 'tenants', 'customers', 'algorithms', 'keys'];

function constraints(c: Partial<Record<ListKey, readonly string[]>>, path: string): Constraints {
  const out: { -readonly [K in ListKey]?: readonly Glob[] } = {};
  for (const k of LIST_KEYS) {
    const g = globs(c[k], `${path}/${k}`);
    if (g !== undefined) out[k] = g;
  }
  return out;
}

/**
 * Parse, validate and compile a policy document. Throws KbError INVALID_ARGUMENT naming the first
 * bad field; never returns a partially valid policy.
 */
export function loadPolicy(text: string): Policy {
  if (typeof text !== 'string') throw new KbError('INVALID_ARGUMENT', 'policy must be a JSON string');
  if (Buffer.byteLength(text, 'utf8') > MAX_POLICY_BYTES) {
    throw new KbError('TOO_LARGE', `policy larger than ${MAX_POLICY_BYTES} bytes`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new KbError(
      'INVALID_ARGUMENT',
      `policy is not valid JSON (${(err as Error).message.slice(0, 120)})`,
    );
  }
  if (!validateDoc(doc)) {
    const e = validateDoc.errors?.[0];
    const where = e ? field(e.instancePath) : 'policy';
    const extra =
      e?.keyword === 'additionalProperties'
        ? ` (unknown field "${String((e.params as { additionalProperty?: unknown }).additionalProperty)}")`
        : e?.keyword === 'required'
          ? ` (missing "${String((e.params as { missingProperty?: unknown }).missingProperty)}")`
          : '';
    throw new KbError('INVALID_ARGUMENT', `${where} ${e?.message ?? 'is invalid'}${extra}`);
  }
  const seen = new Set<string>();
  const rules = doc.rules.map((r, i): CompiledRule => {
    if (seen.has(r.id))
      throw new KbError('INVALID_ARGUMENT', `${field(`/rules/${i}/id`)} duplicates "${r.id}"`);
    seen.add(r.id);
    const p = `/rules/${i}`;
    return {
      id: r.id,
      effect: r.effect,
      identities: globs(r.identities, `${p}/identities`) ?? [],
      ...constraints(r, p),
    };
  });
  const tenants = new Map<string, Constraints>();
  (doc.tenants ?? []).forEach((t, i) => {
    const key = `${t.org}/${t.tenant}`;
    if (tenants.has(key))
      throw new KbError('INVALID_ARGUMENT', `${field(`/tenants/${i}`)} duplicates ${key}`);
    tenants.set(key, constraints(t, `/tenants/${i}`));
  });
  const roleBindings = (doc.roleBindings ?? []).map((b, i) => ({
    identity: globs([b.identity], `/roleBindings/${i}/identity`)?.[0] ?? compileGlob(b.identity),
    role: b.role,
  }));
  return {
    digest: createHash('sha256').update(text, 'utf8').digest('hex'),
    fipsMode: doc.fipsMode ?? false,
    rules,
    tenants,
    roleBindings,
    adminRpcRoles: new Map(Object.entries(doc.adminRpcRoles ?? {})),
  };
}
