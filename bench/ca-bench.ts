/**
 * Broker CA benchmark (issue 20), on a fresh SoftHSM2 token, one run: for each CA algorithm,
 * certificates issued per second through CertificateAuthority.issue (template, signature, SQLite
 * record) beside the raw signing rate of the same key in the same run (HSM CKM_ECDSA for
 * ECDSA P-256, OpenSSL ML-DSA-65 in Node for the wrapped seed), so the overhead is visible.
 *
 *   node bench/ca-bench.ts [--count 300] [--json]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { webcrypto } from 'node:crypto';
import { CertificateAuthority } from '../daemon/src/ca/certificate-authority.ts';
import { openTestHsm } from '../test/support/softhsm-token.ts';

const { values: args } = parseArgs({
  options: { count: { type: 'string', default: '300' }, json: { type: 'boolean', default: false } },
});
const count = Number(args.count);

const { hsm, close } = await openTestHsm('kb-ca-bench');
const dir = mkdtempSync(join(tmpdir(), 'kb-ca-bench-'));
const ca = await CertificateAuthority.open({ hsm, dataDir: dir });
const leaf = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
  'sign',
  'verify',
])) as webcrypto.CryptoKeyPair;
const spki = new Uint8Array(await webcrypto.subtle.exportKey('spki', leaf.publicKey));
const tbs = new Uint8Array(600); // about a certificate's to-be-signed part

const results: { algorithm: string; issuedPerSec: number; rawSignPerSec: number; count: number }[] = [];
try {
  for (const [org, algorithm] of [
    ['bench-ec', 'ecdsa-p256'],
    ['bench-pq', 'mldsa65'],
  ] as const) {
    await ca.createCa(org, algorithm);
    const label = algorithm === 'ecdsa-p256' ? `kb-ca-${org}-g1` : '';
    const seed = algorithm === 'mldsa65' ? webcrypto.getRandomValues(new Uint8Array(32)) : undefined;
    const pq =
      seed === undefined
        ? undefined
        : await webcrypto.subtle.importKey('raw-seed', seed, { name: 'ML-DSA-65' }, false, ['sign']);
    const ref = label === '' ? undefined : await hsm.findKey(label, 'signing');
    let t = performance.now();
    for (let i = 0; i < count; i++) {
      if (ref !== undefined) await hsm.sign(ref, tbs);
      else await webcrypto.subtle.sign({ name: 'ML-DSA-65' }, pq as webcrypto.CryptoKey, tbs);
    }
    const rawSignPerSec = (count * 1000) / (performance.now() - t);
    t = performance.now();
    for (let i = 0; i < count; i++)
      await ca.issue({
        org,
        uri: `spiffe://${org}/alpha/svc${i}`,
        commonName: `svc${i}`,
        spki,
        keyAlgorithm: 'ecdsa-p256',
        lifetimeMs: 86_400_000,
        issuedBy: 'bench',
      });
    const issuedPerSec = (count * 1000) / (performance.now() - t);
    results.push({ algorithm, issuedPerSec, rawSignPerSec, count });
  }
} finally {
  ca.close();
  await close();
  rmSync(dir, { recursive: true, force: true });
}
if (args.json) process.stdout.write(JSON.stringify(results) + '\n');
else
  for (const r of results)
    process.stdout.write(
      `${r.algorithm.padEnd(11)} issued ${r.issuedPerSec.toFixed(0).padStart(6)}/s   raw sign ${r.rawSignPerSec.toFixed(0).padStart(6)}/s   (${r.count} each, sequential)\n`,
    );
