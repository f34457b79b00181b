/**
 * Power-on self-test: passes on both engines; a corrupted KAT (injected into a copy) makes it
 * fail, naming the check, and assertSelfTestPassed then refuses with FAILED_PRECONDITION. Also
 * re-derives every shipped KAT from the shared vectors and @noble/post-quantum.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ml_dsa44, ml_dsa65, ml_dsa87 } from '@noble/post-quantum/ml-dsa.js';
import { ml_kem1024, ml_kem512, ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { KbError } from '../../daemon/src/errors.ts';
import {
  assertSelfTestPassed,
  loadSelfTestKats,
  runSelfTest,
  type SelfTestKats,
} from '../../daemon/src/pqc/self-test.ts';
import { ENGINES } from './engines.ts';
import { fixedSeed, mlDsaKat, mlKemKat } from './self-test-kat-derivation.ts';
import { hex, readVectorJson, wycheproof } from './vectors.ts';

/** Flip one hex digit in the middle of a field. */
function corrupt(s: string): string {
  const i = s.length >> 1;
  return s.slice(0, i) + (s[i] === '0' ? '1' : '0') + s.slice(i + 1);
}

describe('pqc power-on self-test', () => {
  it('passes every check on both engines', async () => {
    const report = await runSelfTest(ENGINES);
    const failed = report.results.filter((r) => !r.ok);
    assert.deepEqual(failed, []);
    assert.ok(report.ok);
    for (const engine of ['openssl', 'liboqs']) {
      for (const alg of [
        'ml-kem-512',
        'ml-kem-768',
        'ml-kem-1024',
        'ml-dsa-44',
        'ml-dsa-65',
        'ml-dsa-87',
        'x-wing',
      ]) {
        assert.ok(
          report.results.some((r) => r.engine === engine && r.algorithm === alg),
          `${engine}/${alg} was not tested`,
        );
      }
    }
    console.log(`[self-test] ${report.results.length} checks in ${report.durationMs.toFixed(0)} ms`);
    assert.doesNotThrow(() => assertSelfTestPassed(report));
  });

  const injections: [string, (k: SelfTestKats) => void, RegExp][] = [
    ['ML-KEM-768 shared secret', (k) => (k.mlKem[1]!.K = corrupt(k.mlKem[1]!.K)), /ml-kem-768\/decapsulate/],
    [
      'ML-KEM-512 rejection secret',
      (k) => (k.mlKem[0]!.KBad = corrupt(k.mlKem[0]!.KBad)),
      /ml-kem-512\/implicit rejection/,
    ],
    [
      'ML-DSA-65 signature',
      (k) => (k.mlDsa[1]!.sig = corrupt(k.mlDsa[1]!.sig)),
      /ml-dsa-65\/verify known signature/,
    ],
    [
      'ML-DSA-87 seed',
      (k) => (k.mlDsa[2]!.seed = corrupt(k.mlDsa[2]!.seed)),
      /openssl\/ml-dsa-87\/keygen from seed/,
    ],
    ['X-Wing shared secret', (k) => (k.xWing.ss = corrupt(k.xWing.ss)), /x-wing\/keygen and decapsulate/],
    [
      'composite signature',
      (k) => (k.composite.signature = corrupt(k.composite.signature)),
      /composite-mldsa65-ecdsa-p256/,
    ],
    ['HPKE box', (k) => (k.hpke[1]!.box = corrupt(k.hpke[1]!.box)), /hpke-x-wing\/open known sealed box/],
  ];
  for (const [name, inject, expected] of injections) {
    it(`fails and refuses to start when the ${name} KAT is corrupted`, async () => {
      const kats = structuredClone(loadSelfTestKats());
      inject(kats);
      const report = await runSelfTest(ENGINES, kats);
      assert.equal(report.ok, false);
      assert.throws(
        () => assertSelfTestPassed(report),
        (e: unknown) => e instanceof KbError && e.code === 'FAILED_PRECONDITION' && expected.test(e.message),
      );
    });
  }

  it('fails with no engine able to expand seeds', async () => {
    const report = await runSelfTest(ENGINES.filter((e) => !e.capabilities.keygenFromSeed));
    assert.equal(report.ok, false);
  });
});

describe('shipped self-test KATs', () => {
  const kats = loadSelfTestKats();
  it('ML-KEM entries re-derive from Wycheproof and @noble/post-quantum', () => {
    const t768 = wycheproof('mlkem_768_test').testGroups[0]!.tests[0]!;
    const t1024 = wycheproof('mlkem_1024_test').testGroups[0]!.tests[0]!;
    const expected = [
      mlKemKat(
        'ml-kem-512',
        ml_kem512,
        fixedSeed('ml-kem-512', 64),
        fixedSeed('ml-kem-512 m', 32),
        'noble, fixed seed',
      ),
      mlKemKat(
        'ml-kem-768',
        ml_kem768,
        hex(t768['seed']),
        undefined,
        'wycheproof mlkem_768_test tcId 1',
        hex(t768['c']),
      ),
      mlKemKat(
        'ml-kem-1024',
        ml_kem1024,
        hex(t1024['seed']),
        undefined,
        'wycheproof mlkem_1024_test tcId 1',
        hex(t1024['c']),
      ),
    ];
    assert.deepEqual(kats.mlKem, expected);
    assert.equal(kats.mlKem[1]!.K, t768['K']);
    assert.equal(kats.mlKem[2]!.K, t1024['K']);
  });

  it('ML-DSA entries re-derive from Wycheproof and @noble/post-quantum', () => {
    const g = wycheproof('mldsa_65_sign_seed_test').testGroups[0]!;
    const te = (s: string): Uint8Array => new TextEncoder().encode(s);
    const expected = [
      mlDsaKat(
        'ml-dsa-44',
        ml_dsa44,
        fixedSeed('ml-dsa-44', 32),
        te('keybroker ml-dsa-44 self-test'),
        'noble, fixed seed, deterministic',
      ),
      mlDsaKat(
        'ml-dsa-65',
        ml_dsa65,
        hex(g['privateSeed']),
        hex(g.tests[0]!['msg']),
        'wycheproof mldsa_65_sign_seed_test tcId 1',
        hex(g.tests[0]!['sig']),
      ),
      mlDsaKat(
        'ml-dsa-87',
        ml_dsa87,
        fixedSeed('ml-dsa-87', 32),
        te('keybroker ml-dsa-87 self-test'),
        'noble, fixed seed, deterministic',
      ),
    ];
    assert.deepEqual(kats.mlDsa, expected);
    assert.equal(kats.mlDsa[1]!.pk, g['publicKey']);
  });

  it('the X-Wing entry is shared vector 0', () => {
    const v =
      readVectorJson<{ seed: string; pk: string; ct: string; ss: string }[]>('xwing/test-vectors.json')[0]!;
    assert.deepEqual(
      { seed: kats.xWing.seed, pk: kats.xWing.pk, ct: kats.xWing.ct, ss: kats.xWing.ss },
      { seed: v.seed, pk: v.pk, ct: v.ct, ss: v.ss },
    );
  });
});
