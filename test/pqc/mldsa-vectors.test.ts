/**
 * Wycheproof ML-DSA vectors on both engines: ML-DSA-65 sign (seed and expanded keys) and verify,
 * ML-DSA-87 verify. Both engines sign hedged (no API injects rnd), so a sign vector passes when
 * the engine's own signature over (msg, ctx) verifies on both engines and the vector's signature
 * verifies too; invalid vectors must be refused. External-mu vectors (no msg) and, on liboqs,
 * seeds and non-empty contexts cannot run: each is reported by name with its reason.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { PqcEngine, PqcPrivateKey } from '../../daemon/src/pqc/pqc-engine.ts';
import type { SigAlgorithm } from '../../daemon/src/pqc/pqc-params.ts';
import { ENGINES, codeOf, openssl } from './engines.ts';
import { Tally, hex, optHex, thrown, wycheproof } from './vectors.ts';

const tallies: Tally[] = [];
after(() => {
  for (const t of tallies) console.log(`[vectors] ${t.summary()}`);
});

const NO_CTX = 'engine has no ML-DSA context-string API';

function signFile(file: 'mldsa_65_sign_seed_test' | 'mldsa_65_sign_noseed_test', engine: PqcEngine): Tally {
  const alg: SigAlgorithm = 'ml-dsa-65';
  const tally = new Tally(file, engine.name);
  const seeded = file === 'mldsa_65_sign_seed_test';
  for (const g of wycheproof(file).testGroups) {
    const pk = optHex(g['publicKey']);
    const skBytes = hex(seeded ? g['privateSeed'] : g['privateKey']);
    let key: PqcPrivateKey | undefined;
    const loadErr = thrown(() => {
      if (seeded && !engine.capabilities.keygenFromSeed) {
        // The production path (PqcRouter.loadPrivateKey): openssl expands the seed, this engine signs.
        const expanded = openssl.generateKeyPair(alg, skBytes);
        key = engine.loadPrivateKey(alg, 'expanded', expanded.secretKey.expose(), pk);
      } else {
        key = engine.loadPrivateKey(alg, seeded ? 'seed' : 'expanded', skBytes, pk);
      }
    });
    for (const t of g.tests) {
      if (key === undefined) {
        if (t.result === 'invalid' && codeOf(loadErr) === 'INVALID_ARGUMENT') tally.pass();
        else tally.fail(t.tcId, `loadPrivateKey gave ${codeOf(loadErr)} for a ${t.result} vector`);
        continue;
      }
      const msg = optHex(t['msg']);
      if (msg === undefined) {
        tally.skip('external-mu vector: no engine exposes ML-DSA.Sign_internal');
        continue;
      }
      const ctx = optHex(t['ctx']);
      if (ctx !== undefined && ctx.length > 0 && ctx.length <= 255 && !engine.capabilities.signContext) {
        tally.skip(NO_CTX);
        continue;
      }
      const k = key;
      let sig: Uint8Array | undefined;
      const err = thrown(() => (sig = engine.sign(k, msg, ctx)));
      if (t.result === 'invalid') {
        if (codeOf(err) === 'INVALID_ARGUMENT') tally.pass();
        else tally.fail(t.tcId, `sign gave ${codeOf(err)}, wanted INVALID_ARGUMENT`);
        continue;
      }
      if (sig === undefined || pk === undefined) {
        tally.fail(t.tcId, `sign gave ${codeOf(err)}`);
        continue;
      }
      const ownOk = engine.verify(alg, pk, msg, sig, ctx) && openssl.verify(alg, pk, msg, sig, ctx);
      const vectorOk = engine.verify(alg, pk, msg, hex(t['sig']), ctx);
      if (ownOk && vectorOk) tally.pass();
      else tally.fail(t.tcId, `own signature verifies: ${ownOk}, vector signature verifies: ${vectorOk}`);
    }
  }
  return tally;
}

function verifyFile(file: string, alg: SigAlgorithm, engine: PqcEngine): Tally {
  const tally = new Tally(file, engine.name);
  for (const g of wycheproof(file).testGroups) {
    const pk = hex(g['publicKey']);
    for (const t of g.tests) {
      const ctx = optHex(t['ctx']);
      let ok: boolean | undefined;
      const err = thrown(() => (ok = engine.verify(alg, pk, hex(t['msg']), hex(t['sig']), ctx)));
      if (codeOf(err) === 'UNIMPLEMENTED') {
        tally.skip(NO_CTX);
        continue;
      }
      if (t.result === 'valid') {
        if (ok === true) tally.pass();
        else tally.fail(t.tcId, `verify gave ${ok ?? codeOf(err)}, wanted true`);
      } else if (ok === false || codeOf(err) === 'INVALID_ARGUMENT') tally.pass();
      else
        tally.fail(
          t.tcId,
          `verify gave ${ok ?? codeOf(err)} for an invalid vector (${(t.flags ?? []).join(',')})`,
        );
    }
  }
  return tally;
}

describe('Wycheproof ML-DSA', () => {
  for (const engine of ENGINES) {
    for (const file of ['mldsa_65_sign_seed_test', 'mldsa_65_sign_noseed_test'] as const) {
      const via =
        file === 'mldsa_65_sign_seed_test' && !engine.capabilities.keygenFromSeed
          ? ' (seed expanded by openssl, as PqcRouter does)'
          : '';
      it(`${file} on ${engine.name}${via}`, (t) => {
        const tally = signFile(file, engine);
        tallies.push(tally);
        for (const [reason, n] of tally.notRun)
          t.diagnostic(`${n} vectors not run on ${engine.name}: ${reason}`);
        assert.deepEqual(tally.failures, [], tally.summary());
        if (tally.passed === 0)
          t.skip(`no vector runnable on ${engine.name}: ${[...tally.notRun.keys()].join('; ')}`);
      });
    }
    for (const [file, alg] of [
      ['mldsa_65_verify_test', 'ml-dsa-65'],
      ['mldsa_87_verify_test', 'ml-dsa-87'],
    ] as const) {
      it(`${file} on ${engine.name}`, (t) => {
        const tally = verifyFile(file, alg, engine);
        tallies.push(tally);
        for (const [reason, n] of tally.notRun)
          t.diagnostic(`${n} vectors not run on ${engine.name}: ${reason}`);
        assert.deepEqual(tally.failures, [], tally.summary());
        assert.ok(tally.passed > 190, tally.summary());
      });
    }
  }
});
