/**
 * Power-on self-test (the FIPS 140-3 habit): known-answer tests of every enabled algorithm on
 * every enabled engine, before the daemon reports ready. KATs live in self-test-kats.json (derived
 * from the shared Wycheproof/X-Wing vectors and @noble/post-quantum, checked in CI). The caller
 * refuses to start when `report.ok` is false (`assertSelfTestPassed`).
 *
 * Per engine: ML-KEM keygen-from-seed (where supported), decapsulation, implicit rejection,
 * encapsulate/decapsulate pairwise test; ML-DSA keygen-from-seed, verify of a known signature,
 * rejection of a flipped one, sign/verify pairwise test; X-Wing keygen and decapsulation.
 * Engine-independent: composite verify/reject and an HPKE sealed-box open per KEM.
 */
import { readFileSync } from 'node:fs';
import { KbError } from '../errors.ts';
import { CompositeMlDsa65EcdsaP256 } from './composite-mldsa65-ecdsa-p256.ts';
import { openBox, type SealedBoxKem } from './hpke-sealed-box.ts';
import type { PqcEngine } from './pqc-engine.ts';
import { isKemAlgorithm, isSigAlgorithm } from './pqc-params.ts';
import { XWing } from './xwing.ts';

interface KemKat {
  alg: string;
  seed: string;
  dk: string;
  c: string;
  K: string;
  cBad: string;
  KBad: string;
}
interface SigKat {
  alg: string;
  seed: string;
  pk: string;
  sk: string;
  msg: string;
  sig: string;
}
export interface SelfTestKats {
  mlKem: KemKat[];
  mlDsa: SigKat[];
  xWing: { seed: string; pk: string; ct: string; ss: string };
  composite: { publicKey: string; message: string; signature: string };
  hpke: { kem: string; seed: string; info: string; aad: string; pt: string; box: string }[];
}

export interface SelfTestResult {
  readonly engine: string;
  readonly algorithm: string;
  readonly check: string;
  readonly ok: boolean;
  /** Safe error text when not ok (never key bytes). */
  readonly detail?: string;
}

export interface SelfTestReport {
  readonly ok: boolean;
  readonly durationMs: number;
  readonly results: readonly SelfTestResult[];
}

/** The KATs shipped with the daemon. */
export function loadSelfTestKats(): SelfTestKats {
  return JSON.parse(readFileSync(new URL('./self-test-kats.json', import.meta.url), 'utf8')) as SelfTestKats;
}

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

function flipped(b: Uint8Array): Uint8Array {
  const out = Uint8Array.from(b);
  out[out.length >> 1]! ^= 0x10;
  return out;
}

class Recorder {
  readonly results: SelfTestResult[] = [];

  async check(
    engine: string,
    algorithm: string,
    check: string,
    fn: () => boolean | Promise<boolean>,
  ): Promise<void> {
    try {
      const ok = await fn();
      this.results.push(
        ok ? { engine, algorithm, check, ok } : { engine, algorithm, check, ok, detail: 'wrong answer' },
      );
    } catch (err) {
      const detail = err instanceof KbError ? err.safeMessage : err instanceof Error ? err.name : 'error';
      this.results.push({ engine, algorithm, check, ok: false, detail });
    }
  }
}

async function engineKats(r: Recorder, engine: PqcEngine, kats: SelfTestKats): Promise<void> {
  const e = engine.name;
  for (const k of kats.mlKem) {
    if (!isKemAlgorithm(k.alg) || !engine.capabilities.kem.includes(k.alg)) continue;
    const alg = k.alg;
    const dk = hex(k.dk);
    if (engine.capabilities.keygenFromSeed) {
      await r.check(e, alg, 'keygen from seed', () =>
        same(engine.generateKeyPair(alg, hex(k.seed)).secretKey.expose(), dk),
      );
    }
    await r.check(e, alg, 'decapsulate', () =>
      same(engine.decapsulate(engine.loadPrivateKey(alg, 'expanded', dk), hex(k.c)), hex(k.K)),
    );
    await r.check(e, alg, 'implicit rejection', () =>
      same(engine.decapsulate(engine.loadPrivateKey(alg, 'expanded', dk), hex(k.cBad)), hex(k.KBad)),
    );
    await r.check(e, alg, 'encapsulate/decapsulate pairwise', () => {
      const key = engine.loadPrivateKey(alg, 'expanded', dk);
      const enc = engine.encapsulate(alg, key.publicKey);
      return same(engine.decapsulate(key, enc.cipherText), enc.sharedSecret);
    });
  }
  for (const k of kats.mlDsa) {
    if (!isSigAlgorithm(k.alg) || !engine.capabilities.sig.includes(k.alg)) continue;
    const alg = k.alg;
    const [pk, sk, msg, sig] = [hex(k.pk), hex(k.sk), hex(k.msg), hex(k.sig)];
    if (engine.capabilities.keygenFromSeed) {
      await r.check(e, alg, 'keygen from seed', () => {
        const kp = engine.generateKeyPair(alg, hex(k.seed));
        return same(kp.publicKey, pk) && same(kp.secretKey.expose(), sk);
      });
    }
    await r.check(e, alg, 'verify known signature', () => engine.verify(alg, pk, msg, sig));
    await r.check(e, alg, 'reject flipped signature', () => !engine.verify(alg, pk, msg, flipped(sig)));
    await r.check(e, alg, 'sign/verify pairwise', () =>
      engine.verify(alg, pk, msg, engine.sign(engine.loadPrivateKey(alg, 'expanded', sk, pk), msg)),
    );
  }
}

/**
 * Run every KAT on every engine (the first engine with keygen from seed also expands the X-Wing
 * seed for the others). Never throws; inspect `ok`.
 */
export async function runSelfTest(
  engines: readonly PqcEngine[],
  kats: SelfTestKats = loadSelfTestKats(),
): Promise<SelfTestReport> {
  const start = performance.now();
  const r = new Recorder();
  const expander = engines.find((x) => x.capabilities.keygenFromSeed);
  for (const engine of engines) {
    await engineKats(r, engine, kats);
    if (expander !== undefined) {
      await r.check(engine.name, 'x-wing', 'keygen and decapsulate', () => {
        const xwing = new XWing(expander, engine);
        const key = xwing.loadPrivateKey(hex(kats.xWing.seed), hex(kats.xWing.pk));
        return same(xwing.decapsulate(key, hex(kats.xWing.ct)), hex(kats.xWing.ss));
      });
    }
    if (engine.capabilities.signContext) {
      const c = kats.composite;
      await r.check(engine.name, 'composite-mldsa65-ecdsa-p256', 'verify known / reject flipped', () => {
        const composite = new CompositeMlDsa65EcdsaP256(engine);
        const [pk, m, s] = [hex(c.publicKey), hex(c.message), hex(c.signature)];
        return composite.verify(pk, m, s) && !composite.verify(pk, m, flipped(s));
      });
    }
  }
  for (const h of kats.hpke) {
    await r.check('hpke', `hpke-${h.kem}`, 'open known sealed box', async () =>
      same(await openBox(h.kem as SealedBoxKem, hex(h.seed), hex(h.box), hex(h.info), hex(h.aad)), hex(h.pt)),
    );
  }
  if (expander === undefined) {
    r.results.push({
      engine: 'all',
      algorithm: 'x-wing',
      check: 'seed expansion',
      ok: false,
      detail: 'no engine can keygen from seed',
    });
  }
  const ok = r.results.length > 0 && r.results.every((x) => x.ok);
  return { ok, durationMs: performance.now() - start, results: r.results };
}

/** Throw FAILED_PRECONDITION naming the failed checks, so the daemon refuses to start. */
export function assertSelfTestPassed(report: SelfTestReport): void {
  if (report.ok) return;
  const failed = report.results
    .filter((x) => !x.ok)
    .map((x) => `${x.engine}/${x.algorithm}/${x.check}${x.detail ? ` (${x.detail})` : ''}`);
  throw new KbError(
    'FAILED_PRECONDITION',
    `pqc power-on self-test failed: ${failed.join('; ') || 'no checks ran'}`,
  );
}
