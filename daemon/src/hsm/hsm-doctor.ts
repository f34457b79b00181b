/**
 * `keybroker doctor`: check that a token can do everything a profile relies on, before the daemon
 * trusts it with root keys. Lists the token's mechanisms, checks each required one (with why it
 * matters), then round-trips wrap/unwrap, GCM and signing on scratch objects it destroys again.
 */
import { constants, createPublicKey, randomBytes, verify } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { KbError } from '../errors.ts';
import type { HsmKeyRef, HsmSigningAlgorithm } from './hsm.ts';
import { resolveModulePath } from './hsm-profile.ts';
import type { HsmProfile } from './hsm-profile.ts';
import { inspectRootKey } from './key-inspection.ts';
import { call } from './pkcs11-connection.ts';
import { Pkcs11Hsm } from './pkcs11-hsm.ts';
import { checkShredFinality } from './token-layout.ts';

const P = pkcs11js;

/** `warn`: works, but weakens a guarantee (e.g. a software token): never fails the report. */
export type CheckStatus = 'pass' | 'fail' | 'skip' | 'info' | 'warn';

export interface DoctorCheck {
  readonly status: CheckStatus;
  readonly name: string;
  readonly detail: string;
  /** For failures: why the broker needs this. */
  readonly why?: string;
}

export interface DoctorReport {
  readonly ok: boolean;
  readonly checks: readonly DoctorCheck[];
}

interface Requirement {
  readonly mechanism: string;
  readonly flags: readonly (
    'WRAP' | 'UNWRAP' | 'ENCRYPT' | 'DECRYPT' | 'SIGN' | 'VERIFY' | 'GENERATE' | 'GENERATE_KEY_PAIR'
  )[];
  readonly why: string;
  readonly minKeyBits?: number;
}

const MECH_NAMES = new Map<number, string>();
for (const [name, value] of Object.entries(P)) {
  if (name.startsWith('CKM_') && typeof value === 'number' && !MECH_NAMES.has(value))
    MECH_NAMES.set(value, name);
}
MECH_NAMES.set(P.CKM_EC_KEY_PAIR_GEN, 'CKM_EC_KEY_PAIR_GEN');

/** `CKM_AES_GCM` or `0x80000001` -> number; undefined if the name is unknown. */
export function mechanismCode(name: string): number | undefined {
  if (/^0x[0-9a-f]+$/i.test(name)) return Number.parseInt(name.slice(2), 16);
  const v = (P as unknown as Record<string, unknown>)[name];
  return typeof v === 'number' ? v : undefined;
}

export function mechanismName(code: number): string {
  return MECH_NAMES.get(code) ?? `0x${code.toString(16).padStart(8, '0')}`;
}

/** Every mechanism the profile relies on, and why. */
export function requiredMechanisms(profile: HsmProfile): Requirement[] {
  const r: Requirement[] = [
    {
      mechanism: 'CKM_AES_KEY_GEN',
      flags: ['GENERATE'],
      why: 'root keys are AES-256 keys generated inside the token',
    },
  ];
  if (profile.wrap === 'aes-kwp') {
    r.push({
      mechanism: 'CKM_AES_KEY_WRAP_PAD',
      flags: ['WRAP', 'UNWRAP'],
      why: 'profile wrap "aes-kwp": every tenant key is wrapped under the root key with RFC 5649',
    });
  } else {
    r.push(
      {
        mechanism: 'CKM_AES_CBC_PAD',
        flags: ['WRAP', 'UNWRAP'],
        why: 'profile wrap "aes-cbc-pad-hmac-sha256": tenant keys are wrapped with AES-CBC-PAD',
      },
      {
        mechanism: 'CKM_SHA256_HMAC',
        flags: ['SIGN', 'VERIFY'],
        why: 'CBC-PAD is not authenticated: the HMAC-SHA256 over every wrap is what rejects tampering',
      },
      {
        mechanism: 'CKM_GENERIC_SECRET_KEY_GEN',
        flags: ['GENERATE'],
        why: 'the HMAC key that authenticates wraps is generated in the token next to the root key',
      },
    );
  }
  if (profile.aesGcm) {
    r.push({
      mechanism: 'CKM_AES_GCM',
      flags: ['ENCRYPT', 'DECRYPT'],
      why: 'profile declares aesGcm: true, so encryptGcm/decryptGcm run in the HSM',
    });
  }
  for (const alg of profile.signing) {
    if (alg === 'ecdsa-p256') {
      r.push(
        {
          mechanism: 'CKM_EC_KEY_PAIR_GEN',
          flags: ['GENERATE_KEY_PAIR'],
          why: 'signing "ecdsa-p256" keys are generated in the token',
        },
        {
          mechanism: 'CKM_ECDSA',
          flags: ['SIGN'],
          why: 'signing "ecdsa-p256": the broker hashes, the token signs the digest',
        },
      );
    } else {
      r.push(
        {
          mechanism: 'CKM_RSA_PKCS_KEY_PAIR_GEN',
          flags: ['GENERATE_KEY_PAIR'],
          why: 'signing "rsa-pss-sha256-3072" keys are generated in the token',
          minKeyBits: 3072,
        },
        {
          mechanism: profile.rsaPssMechanism ?? 'CKM_RSA_PKCS_PSS',
          flags: ['SIGN'],
          why: 'signing "rsa-pss-sha256-3072" uses this PSS mechanism (profile rsaPssMechanism)',
        },
      );
    }
  }
  for (const extra of profile.extraMechanisms ?? [])
    r.push({ mechanism: extra.mechanism, flags: [], why: extra.why });
  return r;
}

export interface DoctorOptions {
  readonly profile: HsmProfile;
  readonly pin: string;
  readonly tokenLabel?: string;
  /** The broker's data dir: warn when the SoftHSM2 token directory lies inside it. */
  readonly dataDir?: string;
  /** The SoftHSM2 config (default: SOFTHSM2_CONF), to find the token directory. */
  readonly softhsmConf?: string;
}

/** Run every check; never throws for a failed check (it becomes a `fail` line). */
export async function runDoctor(o: DoctorOptions): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const add = (status: CheckStatus, name: string, detail: string, why?: string) =>
    checks.push(why === undefined ? { status, name, detail } : { status, name, detail, why });
  const { profile } = o;
  add(
    'info',
    'profile',
    `${profile.name} (${profile.tested ? 'tested in CI' : 'UNTESTED: written from vendor documentation'})`,
  );
  for (const line of profile.notInHsm) add('info', 'not in HSM', line);

  const modulePath = resolveModulePath(profile);
  if (modulePath === undefined) {
    add(
      'fail',
      'module',
      `none of ${profile.module.paths.join(', ')} exists`,
      'without the module nothing works',
    );
    return { ok: false, checks };
  }
  add('pass', 'module', modulePath);

  let hsm: Pkcs11Hsm;
  try {
    hsm = await Pkcs11Hsm.open({ ...o, poolSize: 2, maxWaiters: 16, probeIntervalMs: 0 });
  } catch (err) {
    const e = err instanceof KbError ? err : new KbError('INTERNAL', undefined, { cause: err });
    add(
      'fail',
      'open',
      `${e.message}${e.detail ? ` (${e.detail})` : ''}`,
      'C_Initialize(CKF_OS_LOCKING_OK), token selection and C_Login must succeed',
    );
    return { ok: false, checks };
  }
  add('pass', 'open', `C_Initialize with CKF_OS_LOCKING_OK, token found, logged in as CKU_USER`);
  try {
    checkShredFinality(hsm, o, add);
    const missing = checkMechanisms(hsm, profile, add);
    await roundTrips(hsm, profile, missing, add);
  } finally {
    await hsm.close();
  }
  return { ok: !checks.some((c) => c.status === 'fail'), checks };
}

export type Add = (status: CheckStatus, name: string, detail: string, why?: string) => void;

/** Checks presence and flags of every required mechanism; returns the names that failed. */
function checkMechanisms(hsm: Pkcs11Hsm, profile: HsmProfile, add: Add): Set<string> {
  const p = hsm.connection.pkcs11;
  const slot = hsm.connection.slot;
  const missing = new Set<string>();
  if (!slot) throw new KbError('HSM_UNAVAILABLE');
  const list = call('C_GetMechanismList', () => p.C_GetMechanismList(slot));
  const have = new Set(list);
  add('info', 'mechanisms', `${list.length}: ${list.map(mechanismName).join(' ')}`);
  for (const req of requiredMechanisms(profile)) {
    const code = mechanismCode(req.mechanism);
    if (code === undefined || !have.has(code)) {
      missing.add(req.mechanism);
      const unknown = code === undefined ? ' (not a known mechanism name)' : '';
      add('fail', `mechanism ${req.mechanism}`, `absent from the token${unknown}`, req.why);
      continue;
    }
    const info = call('C_GetMechanismInfo', () => p.C_GetMechanismInfo(slot, code));
    const lacking = req.flags.filter(
      (f) => (info.flags & (P as unknown as Record<string, number>)[`CKF_${f}`]!) === 0,
    );
    if (lacking.length > 0) {
      missing.add(req.mechanism);
      add(
        'fail',
        `mechanism ${req.mechanism}`,
        `present but not for ${lacking.join(', ').toLowerCase()}`,
        req.why,
      );
    } else if (req.minKeyBits !== undefined && info.maxKeySize < req.minKeyBits) {
      missing.add(req.mechanism);
      add(
        'fail',
        `mechanism ${req.mechanism}`,
        `max key size ${info.maxKeySize} < ${req.minKeyBits}`,
        req.why,
      );
    } else {
      add(
        'pass',
        `mechanism ${req.mechanism}`,
        req.flags.length ? req.flags.join(', ').toLowerCase() : 'present',
      );
    }
  }
  return missing;
}

async function roundTrips(
  hsm: Pkcs11Hsm,
  profile: HsmProfile,
  missing: Set<string>,
  add: Add,
): Promise<void> {
  const tag = randomBytes(6).toString('hex');
  const scratch: HsmKeyRef[] = [];
  const run = async (name: string, needs: readonly string[], why: string, f: () => Promise<string>) => {
    const absent = needs.filter((m) => missing.has(m));
    if (absent.length > 0) return add('skip', name, `needs ${absent.join(', ')}`);
    try {
      add('pass', name, await f());
    } catch (err) {
      add(
        'fail',
        name,
        err instanceof KbError ? `${err.code}${err.detail ? ` (${err.detail})` : ''}` : String(err),
        why,
      );
    }
  };
  const cbc = profile.wrap === 'aes-cbc-pad-hmac-sha256';
  const wrapMechs = cbc ? ['CKM_AES_CBC_PAD', 'CKM_SHA256_HMAC'] : ['CKM_AES_KEY_WRAP_PAD'];
  const genMechs = cbc ? ['CKM_AES_KEY_GEN', 'CKM_GENERIC_SECRET_KEY_GEN'] : ['CKM_AES_KEY_GEN'];
  let root: HsmKeyRef | undefined;
  // Steps that use the root key are skipped (with the reason) when it could not be made.
  const withRoot = (
    name: string,
    needs: readonly string[],
    why: string,
    f: (r: HsmKeyRef) => Promise<string>,
  ) => {
    const r = root;
    return r
      ? run(name, needs, why, () => f(r))
      : add('skip', name, 'needs the root key, which could not be made');
  };
  const codeOf = (p: Promise<unknown>) =>
    p.then(
      () => 'accepted',
      (e: unknown) => (e instanceof KbError ? e.code : String(e)),
    );
  try {
    const rootWhy =
      'root keys must be generated non-extractable in the token' +
      (profile.allowedMechanisms === true
        ? ' (the profile sets allowedMechanisms: a token that rejects CKA_ALLOWED_MECHANISMS,' +
          ' e.g. with CKR_ATTRIBUTE_TYPE_INVALID, needs "allowedMechanisms": false)'
        : '');
    await run('root key', genMechs, rootWhy, async () => {
      const made = await hsm.generateRootKey(`kb-doctor-root-${tag}`, { gcm: profile.aesGcm });
      scratch.push(made);
      const a = await inspectRootKey(hsm, made.label);
      const bad = [
        a.sensitive ? '' : 'CKA_SENSITIVE is false',
        a.extractable ? 'CKA_EXTRACTABLE is true' : '',
        a.neverExtractable ? '' : 'CKA_NEVER_EXTRACTABLE is false',
        a.alwaysSensitive ? '' : 'CKA_ALWAYS_SENSITIVE is false',
        a.valueRead === 'CKR_OK' ? 'CKA_VALUE was readable' : '',
      ].filter(Boolean);
      if (bad.length) throw new Error(bad.join('; '));
      root = made;
      return `generated; sensitive, never extractable, CKA_VALUE read gives ${a.valueRead}`;
    });
    await withRoot('wrap/unwrap', wrapMechs, "wrapping tenant keys is the HSM's main job", async (r) => {
      const key = randomBytes(32);
      const wrapped = Buffer.from(await hsm.wrapKey(r, key));
      if (!Buffer.from(await hsm.unwrapKey(r, wrapped)).equals(key))
        throw new Error('unwrapped bytes differ');
      wrapped[wrapped.length - 1] = (wrapped[wrapped.length - 1] ?? 0) ^ 1;
      const tampered = await codeOf(hsm.unwrapKey(r, wrapped));
      if (tampered !== 'DECRYPTION_FAILED') throw new Error(`tampered wrap: ${tampered}`);
      return `${profile.wrap}: 32-byte key round trip, tampered wrap rejected`;
    });
    if (profile.aesGcm) {
      await withRoot('aes-gcm', ['CKM_AES_GCM'], 'profile declares aesGcm: true', async (r) => {
        const pt = randomBytes(1024);
        const sealed = await hsm.encryptGcm(r, pt, Buffer.from('aad'));
        const back = Buffer.from(await hsm.decryptGcm(r, sealed, Buffer.from('aad')));
        if (!back.equals(pt)) throw new Error('round trip differs');
        const wrongAad = await codeOf(hsm.decryptGcm(r, sealed, Buffer.from('aaX')));
        if (wrongAad !== 'DECRYPTION_FAILED') throw new Error(`wrong AAD: ${wrongAad}`);
        return '1 KiB round trip, wrong AAD rejected';
      });
    } else {
      add('info', 'aes-gcm', 'not declared by the profile (encryptGcm throws UNIMPLEMENTED)');
    }
    for (const alg of profile.signing) {
      const needs =
        alg === 'ecdsa-p256'
          ? ['CKM_EC_KEY_PAIR_GEN', 'CKM_ECDSA']
          : ['CKM_RSA_PKCS_KEY_PAIR_GEN', profile.rsaPssMechanism ?? 'CKM_RSA_PKCS_PSS'];
      await run(`sign ${alg}`, needs, `profile declares signing ${alg}`, async () => {
        const { ref, spki } = await hsm.generateSigningKey(`kb-doctor-sign-${alg}-${tag}`, alg);
        scratch.push(ref);
        const msg = randomBytes(64);
        const { signature } = await hsm.sign(ref, msg);
        if (!verifySignature(alg, spki, msg, signature))
          throw new Error('signature does not verify with Node crypto');
        return 'generated in the token, signature verified with Node crypto';
      });
    }
  } finally {
    let left = 0;
    for (const ref of scratch) {
      await hsm.destroyKey(ref);
      if (await hsm.findKey(ref.label, ref.kind)) left++;
    }
    const detail = `${scratch.length} scratch key(s) destroyed${left ? `, ${left} left behind` : ''}`;
    add(left === 0 ? 'pass' : 'fail', 'cleanup', detail, 'doctor must leave the token as it found it');
  }
}

function verifySignature(
  alg: HsmSigningAlgorithm,
  spki: Uint8Array,
  msg: Uint8Array,
  sig: Uint8Array,
): boolean {
  const key = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  if (alg === 'ecdsa-p256') return verify('sha256', msg, key, sig);
  return verify('sha256', msg, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig);
}

/** The report as text, one check per line, failures with their reason. */
export function formatReport(r: DoctorReport): string {
  const mark: Record<CheckStatus, string> = {
    pass: 'PASS',
    fail: 'FAIL',
    skip: 'SKIP',
    info: 'INFO',
    warn: 'WARN',
  };
  const lines = r.checks.map((c) => {
    const why = c.status === 'fail' && c.why ? `\n      why it matters: ${c.why}` : '';
    return `${mark[c.status]}  ${c.name}: ${wrapText(c.detail)}${why}`;
  });
  const n = (s: CheckStatus) => r.checks.filter((c) => c.status === s).length;
  lines.push(
    `doctor: ${r.ok ? 'OK' : 'FAILED'} (${n('pass')} passed, ${n('fail')} failed, ${n('skip')} skipped` +
      `${n('warn') > 0 ? `, ${n('warn')} warnings` : ''})`,
  );
  return `${lines.join('\n')}\n`;
}

/** Long details (the mechanism list) wrapped at ~100 columns, indented under their check. */
function wrapText(text: string): string {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line.length > 0 && line.length + word.length > 100) {
      out.push(line);
      line = '';
    }
    line = line ? `${line} ${word}` : word;
  }
  out.push(line);
  return out.join('\n      ');
}
