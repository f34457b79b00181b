/**
 * Wycheproof ML-KEM vectors on both engines: decapsulation (768/1024, incl. invalid lengths),
 * encapsulation-key validation (modulus overflow), keygen from seed, semi-expanded decaps keys.
 * liboqs cannot keygen from a seed: where a vector starts from a seed, liboqs gets the expanded
 * dk from @noble/post-quantum (the test oracle) and the test says so.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ml_kem1024, ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import type { PqcEngine } from '../../daemon/src/pqc/pqc-engine.ts';
import type { KemAlgorithm } from '../../daemon/src/pqc/pqc-params.ts';
import { ENGINES, codeOf } from './engines.ts';
import { Tally, eq, hex, thrown, wycheproof } from './vectors.ts';

const tallies: Tally[] = [];
after(() => {
  for (const t of tallies) console.log(`[vectors] ${t.summary()}`);
});

const NOBLE = { 'ml-kem-768': ml_kem768, 'ml-kem-1024': ml_kem1024 } as const;

function decapsFile(file: string, alg: 'ml-kem-768' | 'ml-kem-1024', engine: PqcEngine): Tally {
  const tally = new Tally(file, engine.name);
  for (const g of wycheproof(file).testGroups) {
    for (const t of g.tests) {
      const seed = hex(t['seed']);
      const c = hex(t['c']);
      if (seed.length !== 64) {
        // "Private key too short/long": the seed itself is malformed.
        if (!engine.capabilities.keygenFromSeed) {
          tally.skip('seed input: engine cannot keygen from seed');
          continue;
        }
        const code = codeOf(thrown(() => engine.loadPrivateKey(alg, 'seed', seed)));
        if (t.result === 'invalid' && code === 'INVALID_ARGUMENT') tally.pass();
        else
          tally.fail(
            t.tcId,
            `loadPrivateKey(seed of ${seed.length} B) gave ${code}, wanted INVALID_ARGUMENT`,
          );
        continue;
      }
      let key;
      if (engine.capabilities.keygenFromSeed) {
        const kp = engine.generateKeyPair(alg, seed);
        if (t['ek'] !== undefined && !eq(kp.publicKey, hex(t['ek']))) {
          tally.fail(t.tcId, 'generateKeyPair(seed).publicKey differs from ek');
          continue;
        }
        key = engine.loadPrivateKey(alg, 'seed', seed, kp.publicKey);
      } else {
        const oracle = NOBLE[alg].keygen(seed);
        key = engine.loadPrivateKey(alg, 'expanded', oracle.secretKey, oracle.publicKey);
      }
      const err = thrown(() => {
        const k = engine.decapsulate(key, c);
        if (!eq(k, hex(t['K']))) throw new Error('K differs');
      });
      if (t.result === 'valid') {
        if (err === undefined) tally.pass();
        else tally.fail(t.tcId, `decapsulate gave ${String(err)}, wanted K`);
      } else if (codeOf(err) === 'INVALID_ARGUMENT') tally.pass();
      else tally.fail(t.tcId, `decapsulate(${c.length} B ct) gave ${codeOf(err)}, wanted INVALID_ARGUMENT`);
      key.destroy();
    }
  }
  return tally;
}

describe('Wycheproof ML-KEM', () => {
  for (const engine of ENGINES) {
    for (const [file, alg] of [
      ['mlkem_768_test', 'ml-kem-768'],
      ['mlkem_1024_test', 'ml-kem-1024'],
    ] as const) {
      it(`${file} on ${engine.name}${engine.capabilities.keygenFromSeed ? '' : ' (dk expanded by @noble/post-quantum: engine has no keygen from seed)'}`, () => {
        const tally = decapsFile(file, alg, engine);
        tallies.push(tally);
        assert.deepEqual(tally.failures, [], tally.summary());
        assert.ok(tally.passed > 150, tally.summary());
      });
    }

    it(`mlkem_768_encaps_test on ${engine.name} (valid: key accepted, ct/K not comparable without derandomized encaps; invalid: rejected)`, () => {
      const tally = new Tally('mlkem_768_encaps_test', engine.name);
      for (const g of wycheproof('mlkem_768_encaps_test').testGroups) {
        for (const t of g.tests) {
          const ek = hex(t['ek']);
          let out: { cipherText: Uint8Array; sharedSecret: Uint8Array } | undefined;
          const err = thrown(() => (out = engine.encapsulate('ml-kem-768', ek)));
          // The batch form checks the key the same way, once for all its items.
          let many: readonly { cipherText: Uint8Array; sharedSecret: Uint8Array }[] | undefined;
          const errMany = thrown(() => (many = engine.encapsulateMany('ml-kem-768', ek, 2)));
          const sized = (e: { cipherText: Uint8Array; sharedSecret: Uint8Array } | undefined) =>
            e !== undefined && e.cipherText.length === 1088 && e.sharedSecret.length === 32;
          if (t.result === 'valid') {
            if (sized(out) && many?.length === 2 && many.every(sized)) tally.pass();
            else
              tally.fail(
                t.tcId,
                `encapsulate gave ${codeOf(err)}, encapsulateMany ${codeOf(errMany)}, wanted 1088-byte ciphertexts`,
              );
          } else if (codeOf(err) === 'INVALID_ARGUMENT' && codeOf(errMany) === 'INVALID_ARGUMENT')
            tally.pass();
          else
            tally.fail(
              t.tcId,
              `encapsulate(${t.comment ?? ''}) gave ${codeOf(err)}, encapsulateMany ${codeOf(errMany)}, wanted INVALID_ARGUMENT`,
            );
        }
      }
      tallies.push(tally);
      assert.deepEqual(tally.failures, [], tally.summary());
      assert.equal(tally.passed, 265, tally.summary());
    });

    it(`mlkem_768_keygen_seed_test on ${engine.name}`, (t) => {
      const tally = new Tally('mlkem_768_keygen_seed_test', engine.name);
      for (const g of wycheproof('mlkem_768_keygen_seed_test').testGroups) {
        for (const v of g.tests) {
          if (!engine.capabilities.keygenFromSeed) {
            tally.skip('engine cannot keygen from seed');
            continue;
          }
          const kp = engine.generateKeyPair('ml-kem-768', hex(v['seed']));
          if (eq(kp.publicKey, hex(v['ek'])) && eq(kp.secretKey.expose(), hex(v['dk']))) tally.pass();
          else tally.fail(v.tcId, 'generateKeyPair(seed) ek/dk differ');
        }
      }
      tallies.push(tally);
      if (!engine.capabilities.keygenFromSeed)
        t.skip(`${tally.total} vectors not run: ${engine.name} cannot keygen from seed`);
      assert.deepEqual(tally.failures, [], tally.summary());
    });

    it(`mlkem_768_semi_expanded_decaps_test on ${engine.name}`, () => {
      const tally = new Tally('mlkem_768_semi_expanded_decaps_test', engine.name);
      const alg: KemAlgorithm = 'ml-kem-768';
      for (const g of wycheproof('mlkem_768_semi_expanded_decaps_test').testGroups) {
        for (const t of g.tests) {
          const err = thrown(() => {
            const key = engine.loadPrivateKey(alg, 'expanded', hex(t['dk']));
            const k = engine.decapsulate(key, hex(t['c']));
            if (!eq(k, hex(t['K']))) throw new Error('K differs');
          });
          if (t.result === 'valid') {
            if (err === undefined) tally.pass();
            else tally.fail(t.tcId, `gave ${String(err)}, wanted K`);
          } else if (codeOf(err) === 'INVALID_ARGUMENT') tally.pass();
          else tally.fail(t.tcId, `${t.comment ?? ''}: gave ${codeOf(err)}, wanted INVALID_ARGUMENT`);
        }
      }
      tallies.push(tally);
      assert.deepEqual(tally.failures, [], tally.summary());
      assert.equal(tally.passed, 9, tally.summary());
    });
  }

  it('oracle: @noble/post-quantum reproduces every valid encaps vector exactly (c and K from m)', () => {
    let n = 0;
    for (const g of wycheproof('mlkem_768_encaps_test').testGroups) {
      for (const t of g.tests) {
        if (t.result !== 'valid') continue;
        const r = ml_kem768.encapsulate(hex(t['ek']), hex(t['m']));
        assert.ok(eq(r.cipherText, hex(t['c'])) && eq(r.sharedSecret, hex(t['K'])), `tcId ${t.tcId}`);
        n++;
      }
    }
    assert.equal(n, 133);
  });
});
