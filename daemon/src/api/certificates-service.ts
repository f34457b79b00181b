/**
 * keybroker.v1.Certificates: the broker as CA for its own callers (ca/). This file decides who
 * may get which certificate; ca/certificate-authority.ts signs and records. Every call is audited
 * by the call gate, with the serial and identity in the record's reason.
 */
import { createHash } from 'node:crypto';
import type { UntypedServiceImplementation } from '@grpc/grpc-js';
import { KbError } from '../errors.ts';
import type { CaAlgorithm } from '../ca/ca-key.ts';
import type { CertificateAuthority } from '../ca/certificate-authority.ts';
import type { IssuedRow } from '../ca/certificate-store.ts';
import type { OrgCa } from '../ca/org-ca.ts';
import type { KeyBrokerApi } from '../keys/key-broker-api.ts';
import type { CallerIdentity, Role } from '../policy/authorizer.ts';
import { roleRank } from '../policy/admin-roles.ts';
import { normalizeSerial } from '../tls/revocation-set.ts';
import { withApproval } from './approvals-service.ts';
import type { Governance } from './approvals-service.ts';
import type { CallGate } from './call-gate.ts';
import { parseSpiffeUri } from './caller-identity.ts';
import { checkCsr } from './certificate-request.ts';
import { requiredOrg } from './request-bounds.ts';

const RPC = 'keybroker.v1.Certificates/';
const ALGORITHMS: Readonly<Record<string, CaAlgorithm>> = {
  CA_ALGORITHM_ECDSA_P256: 'ecdsa-p256',
  CA_ALGORITHM_ML_DSA_65: 'mldsa65',
};
const ALGORITHM_NAMES: Readonly<Record<CaAlgorithm, string>> = {
  'ecdsa-p256': 'CA_ALGORITHM_ECDSA_P256',
  mldsa65: 'CA_ALGORITHM_ML_DSA_65',
};
const MAX_LIST = 1000;

export interface CertificatesServiceOptions {
  /** The CA, once the HSM is open (throws UNAVAILABLE before). */
  readonly ca: () => CertificateAuthority;
  readonly broker: () => KeyBrokerApi;
  /** The caller's effective role (policy role bindings, else its certificate's). */
  readonly roleOf: (who: CallerIdentity) => Role | undefined;
  /** The two-person rule's approvals (issuing another admin identity); absent in unit tests. */
  readonly governance?: Governance | undefined;
  readonly defaultLifetimeMs: number;
  readonly maxLifetimeMs: number;
}

function need(o: CertificatesServiceOptions, who: CallerIdentity, role: Role, what: string): void {
  if (who.tenant !== undefined || roleRank(o.roleOf(who)) < roleRank(role))
    throw new KbError('PERMISSION_DENIED', `${what} needs an org admin with role ${role}`);
}

const caMessage = (c: OrgCa) => ({
  generation: c.generation,
  algorithm: ALGORITHM_NAMES[c.algorithm],
  certificatePem: c.certPem,
  notAfterUnixMs: c.cert.notAfter.getTime(),
});

const issuedMessage = (r: IssuedRow) => ({
  serial: r.serial,
  identity: r.identity,
  caGeneration: r.generation,
  keyAlgorithm: r.algorithm,
  notBeforeUnixMs: r.notBefore,
  notAfterUnixMs: r.notAfter,
  issuedBy: r.issuedBy,
  revoked: r.revokedAt !== undefined,
  revokedUnixMs: r.revokedAt ?? 0,
});

/** The identity a CSR is certified for, after every rule about who may ask for it. */
async function subjectOf(
  o: CertificatesServiceOptions,
  who: CallerIdentity,
  csrUri: string | undefined,
  asked: unknown,
): Promise<CallerIdentity> {
  const field = typeof asked === 'string' && asked !== '' ? asked : undefined;
  if (field !== undefined && csrUri !== undefined && field !== csrUri)
    throw new KbError('INVALID_ARGUMENT', 'identity and the CSR name different URIs');
  const uri = field ?? csrUri ?? who.uri;
  const id = parseSpiffeUri(uri);
  if (id === undefined)
    throw new KbError(
      'INVALID_ARGUMENT',
      'identity must be spiffe://<org>/<tenant>/<service> or spiffe://<org>/admin/<name>',
    );
  if (id.uri === who.uri) return id; // renewal of one's own identity
  if (who.tenant !== undefined)
    throw new KbError('PERMISSION_DENIED', 'a service may only renew its own identity');
  need(o, who, 'admin', 'issuing for another identity');
  if (id.org !== who.org) throw new KbError('PERMISSION_DENIED', "cannot issue for another org's identity");
  if (id.tenant === undefined) return id; // an admin identity: the caller adds the approval
  await o.broker().describeTenant({ org: id.org, tenant: id.tenant }); // NOT_FOUND for no such tenant
  return id;
}

/** Build the Certificates service implementation. */
export function certificatesService(
  gate: CallGate,
  o: CertificatesServiceOptions,
): UntypedServiceImplementation {
  type Req = Record<string, unknown>;
  const orgOf = (id: CallerIdentity, v: unknown) => (v === undefined || v === '' ? id.org : requiredOrg(v));
  return {
    CreateCa: gate.unary<Req, object>(`${RPC}CreateCa`, {
      target: (id, r) => ({ org: requiredOrg(r.org) }),
      handle: async (ctx, r, facts) => {
        need(o, ctx.identity, 'admin', 'CreateCa');
        const alg = ALGORITHMS[String(r.algorithm)];
        if (alg === undefined)
          throw new KbError(
            'INVALID_ARGUMENT',
            'algorithm: CA_ALGORITHM_ECDSA_P256 or CA_ALGORITHM_ML_DSA_65',
          );
        const ca = await o.ca().createCa(requiredOrg(r.org), alg);
        facts.reason = `created CA generation ${ca.generation} (${alg}) for org ${ca.org}`;
        return { ca: caMessage(ca) };
      },
    }),
    GetCa: gate.unary<Req, object>(`${RPC}GetCa`, {
      target: (id, r) => ({ org: orgOf(id, r.org) }),
      handle: async (ctx, r) => {
        const org = orgOf(ctx.identity, r.org);
        const ca = o.ca();
        return { cas: ca.cas(org).map(caMessage), crlPems: await ca.crls(org) };
      },
    }),
    IssueCertificate: gate.unary<Req, object>(`${RPC}IssueCertificate`, {
      target: (id) => (id.tenant === undefined ? { org: id.org } : { org: id.org, tenant: id.tenant }),
      handle: async (ctx, r, facts) => {
        const lifetimeSeconds = typeof r.lifetimeSeconds === 'number' ? r.lifetimeSeconds : 0;
        const lifetimeMs = lifetimeSeconds === 0 ? o.defaultLifetimeMs : lifetimeSeconds * 1000;
        if (lifetimeMs > o.maxLifetimeMs)
          throw new KbError(
            'INVALID_ARGUMENT',
            `lifetime_seconds: at most ${Math.floor(o.maxLifetimeMs / 1000)} (ca.maxLifetimeMs)`,
          );
        const csr = await checkCsr(r.csrPem);
        const subject = await subjectOf(o, ctx.identity, csr.uri, r.identity);
        const run = () =>
          o.ca().issue({
            org: subject.org,
            uri: subject.uri,
            commonName: subject.service,
            spki: csr.spki,
            keyAlgorithm: csr.keyAlgorithm,
            lifetimeMs,
            issuedBy: ctx.identity.uri,
          });
        // An admin identity is a trust root for the whole org: never on one admin's word alone.
        // The approval names the exact CSR (key and requested URI) by its SHA-256.
        const newAdmin = subject.tenant === undefined && subject.uri !== ctx.identity.uri;
        const issued = newAdmin
          ? await withApproval(
              o.governance,
              ctx,
              facts,
              r.approvalId,
              'issue-admin-certificate',
              {
                org: subject.org,
                payloadDigest: createHash('sha256').update(String(r.csrPem)).digest('hex'),
              },
              run,
            )
          : await run();
        const approved = facts.reason === undefined ? '' : `${facts.reason}: `;
        facts.reason = `${approved}issued ${issued.serial} for ${subject.uri} until ${issued.notAfter.toISOString()} (CA g${issued.generation}, ${csr.keyAlgorithm})`;
        return {
          certificatePem: issued.certPem,
          caCertificatePem: issued.caPem,
          serial: issued.serial,
          notAfterUnixMs: issued.notAfter.getTime(),
          caGeneration: issued.generation,
        };
      },
    }),
    RevokeCertificate: gate.unary<Req, object>(`${RPC}RevokeCertificate`, {
      target: (id, r) => ({ org: requiredOrg(r.org) }),
      handle: (ctx, r, facts) => {
        need(o, ctx.identity, 'admin', 'RevokeCertificate');
        if (typeof r.serial !== 'string' || !/^[0-9a-fA-F]{1,64}$/.test(r.serial))
          throw new KbError('INVALID_ARGUMENT', 'serial: expected hex');
        const row = o.ca().revoke(requiredOrg(r.org), normalizeSerial(r.serial), ctx.identity.uri);
        facts.reason = `revoked ${row.serial} of ${row.identity}`;
        return Promise.resolve({ serial: row.serial, identity: row.identity });
      },
    }),
    ListCertificates: gate.unary<Req, object>(`${RPC}ListCertificates`, {
      target: (id, r) => ({ org: requiredOrg(r.org) }),
      handle: (ctx, r) => {
        need(o, ctx.identity, 'viewer', 'ListCertificates');
        const limit = typeof r.limit === 'number' && r.limit > 0 ? Math.min(r.limit, MAX_LIST) : MAX_LIST;
        const identity = typeof r.identity === 'string' && r.identity !== '' ? r.identity : undefined;
        const rows = o.ca().list(requiredOrg(r.org), identity, limit);
        return Promise.resolve({ certificates: rows.map(issuedMessage) });
      },
    }),
  };
}
