/**
 * Per-org policy sections (review M6). The daemon-wide document (policy.file, or the built-in
 * default) is the operator's base: FIPS mode, adminRpcRoles and rules for anyone; only admins of
 * the configured operator org (policy.operatorOrg) may replace it over the API. Every other org's
 * admins write their org's section only: a document of the same schema whose rules, ceilings and
 * role bindings are confined to that org, merged on top of the base (deny still wins everywhere).
 */
import { createHash } from 'node:crypto';
import { KbError } from '../errors.ts';
import { loadPolicy } from './policy-document.ts';
import type { CompiledRule, Constraints, Policy } from './policy-document.ts';

/** An org's section when it has written none. */
export const EMPTY_SECTION_TEXT = '{"version":1,"rules":[]}';

/** Validate and compile `text` as `org`'s section; INVALID_ARGUMENT names what leaves the org. */
export function loadOrgSection(org: string, text: string): Policy {
  const p = loadPolicy(text);
  const own = `spiffe://${org}/`;
  const refuse = (what: string) =>
    new KbError('INVALID_ARGUMENT', `${what}: an org's policy may only concern org "${org}"`);
  if (p.fipsMode) throw refuse('policy.fipsMode is daemon-wide (operator org only)');
  if (p.adminRpcRoles.size > 0) throw refuse('policy.adminRpcRoles is daemon-wide (operator org only)');
  p.rules.forEach((r, i) => {
    // The literal prefix pins the org: a glob cannot match across "/" without "**" before it.
    if (!r.identities.every((g) => g.source.startsWith(own)))
      throw refuse(`policy.rules.${i}.identities must start with ${own}`);
    if (r.orgs !== undefined && !r.orgs.every((g) => g.source === org))
      throw refuse(`policy.rules.${i}.orgs names another org`);
  });
  for (const key of p.tenants.keys())
    if (!key.startsWith(`${org}/`)) throw refuse(`policy.tenants: ceiling for ${key}`);
  p.roleBindings.forEach((b, i) => {
    if (!b.identity.source.startsWith(own))
      throw refuse(`policy.roleBindings.${i}.identity must start with ${own}`);
  });
  return p;
}

/**
 * The policy the engine evaluates: the base, plus each org's rules (ids prefixed "<org>:" so an
 * audit record never mistakes them for the operator's), ceilings (applied on top of the base's)
 * and role bindings (used only where no base binding matches: the operator's word comes first).
 */
export function mergeSections(base: Policy, sections: ReadonlyMap<string, Policy>): Policy {
  if (sections.size === 0) return base;
  const orgs = [...sections.keys()].sort();
  const digest = createHash('sha256').update(base.digest);
  const rules: CompiledRule[] = [...base.rules];
  const ceilings = new Map<string, Constraints>();
  const bindings: Policy['roleBindings'][number][] = [];
  for (const org of orgs) {
    const s = sections.get(org) as Policy;
    digest.update(`\n${org}:${s.digest}`);
    for (const r of s.rules) rules.push({ ...r, id: `${org}:${r.id}` });
    for (const [k, c] of s.tenants) ceilings.set(k, c);
    bindings.push(...s.roleBindings);
  }
  return {
    ...base,
    digest: digest.digest('hex'),
    rules,
    ...(ceilings.size > 0 ? { orgTenants: ceilings } : {}),
    ...(bindings.length > 0 ? { orgRoleBindings: bindings } : {}),
  };
}
