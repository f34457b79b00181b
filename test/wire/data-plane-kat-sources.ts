// The data-plane KATs derived from their sources: Wycheproof AES-256-GCM (96-bit IV, 128-bit tag)
// and HKDF-SHA256 tests picked by tcId, and the format-v1 golden ciphertext.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { DataPlaneKats } from '../../daemon/src/wire/data-plane-self-test.ts';
import { wycheproof } from '../pqc/vectors.ts';

export const GCM_TCIDS = [91, 100, 104, 130];
export const HKDF_TCIDS = [1, 2, 55, 61];

function pick(file: string, ids: readonly number[], fields: readonly string[]): Record<string, unknown>[] {
  const tests = wycheproof(file).testGroups.flatMap((g) => g.tests);
  return ids.map((id) => {
    const t = tests.find((x) => x.tcId === id);
    if (t === undefined) throw new Error(`${file}: no tcId ${id}`);
    return Object.fromEntries(fields.map((f) => [f, t[f]]));
  });
}

export function dataPlaneKatsFromSources(): DataPlaneKats {
  const golden = JSON.parse(
    readFileSync(resolve(import.meta.dirname, '../fixtures/golden/v1.json'), 'utf8'),
  ) as { cek: string; aad: string; ciphertext: { plaintext: string; blob: string } };
  const kats = {
    aesGcm: pick('aes_gcm_test', GCM_TCIDS, ['tcId', 'key', 'iv', 'aad', 'msg', 'ct', 'tag', 'result']),
    hkdf: pick('hkdf_sha256_test', HKDF_TCIDS, ['tcId', 'ikm', 'salt', 'info', 'size', 'okm']),
    envelope: {
      cek: golden.cek,
      aad: golden.aad,
      blob: golden.ciphertext.blob,
      plaintext: golden.ciphertext.plaintext,
    },
  };
  return kats as unknown as DataPlaneKats;
}
