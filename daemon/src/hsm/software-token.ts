/**
 * Software tokens: PKCS#11 modules whose "HSM" is files on the host (SoftHSM2, opencryptoki's
 * soft token). A shred on one is only as final as those files: a backup or snapshot of the
 * token directory taken before the shred brings the destroyed root keys back (review H3).
 * Receipts made on one say so (`softwareToken: true`) and `keybroker doctor` warns.
 */

/** Profiles whose tested token is a software token. */
const SOFTWARE_TOKEN_PROFILES: ReadonlySet<string> = new Set(['softhsm2', 'opencryptoki']);

/** Token manufacturer/model strings (C_GetTokenInfo) of known software tokens. */
const SOFTWARE_TOKEN_INFO = [/softhsm/i, /soft\s*tok/i, /^soft$/i];

/** Whether a profile (by name) runs on a software token. */
export function isSoftwareTokenProfile(profileName: string): boolean {
  return SOFTWARE_TOKEN_PROFILES.has(profileName);
}

/** Whether C_GetTokenInfo's manufacturer or model names a software token. */
export function isSoftwareTokenInfo(info: { manufacturerID?: string; model?: string }): boolean {
  const fields = [info.manufacturerID ?? '', info.model ?? ''].map((s) => s.trim());
  return fields.some((f) => SOFTWARE_TOKEN_INFO.some((re) => re.test(f)));
}
