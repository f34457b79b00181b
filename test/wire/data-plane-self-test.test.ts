// The data-plane power-on self-test (review I2): passes with node:crypto; the shipped KATs are the
// Wycheproof vectors and the golden ciphertext unmodified; a wrong AES-GCM, HKDF or envelope
// primitive (injected) or a corrupted KAT fails it, naming the check, and the assert refuses.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import {
  assertDataPlaneSelfTestPassed,
  brokenPrimitives,
  loadDataPlaneKats,
  NODE_PRIMITIVES,
  runDataPlaneSelfTest,
  type DataPlanePrimitives,
} from '../../daemon/src/wire/data-plane-self-test.ts';
import { dataPlaneKatsFromSources, GCM_TCIDS, HKDF_TCIDS } from './data-plane-kat-sources.ts';

test('passes every check with node:crypto, covering each chosen vector and the golden ciphertext', () => {
  const r = runDataPlaneSelfTest();
  assert.deepEqual(
    r.filter((c) => !c.ok),
    [],
  );
  // Valid GCM vectors are sealed and opened, the invalid one refused; every HKDF vector; the envelope.
  assert.equal(r.length, (GCM_TCIDS.length - 1) * 2 + 1 + HKDF_TCIDS.length + 1);
  assert.doesNotThrow(() => assertDataPlaneSelfTestPassed(r));
});

test('the shipped KATs are the shared vectors and the golden file, unmodified', () => {
  assert.deepEqual(loadDataPlaneKats(), dataPlaneKatsFromSources());
});

test('a wrong primitive (dependency injection) fails the named checks; the start is refused', () => {
  const n = NODE_PRIMITIVES;
  const zeroTag: DataPlanePrimitives = {
    ...n,
    gcmSeal: (k, iv, a, m) => ({ ...n.gcmSeal(k, iv, a, m), tag: new Uint8Array(16) }),
  };
  const acceptsAnyTag: DataPlanePrimitives = {
    ...n,
    gcmOpen: (k, iv, a, c) => {
      const d = Buffer.from(c);
      return n.gcmSeal(k, iv, a, d).ct.length === d.length ? new Uint8Array(d) : new Uint8Array(0);
    },
  };
  const cases: [string, DataPlanePrimitives, RegExp][] = [
    ['GCM seal with a wrong tag', zeroTag, /aes-256-gcm seal \(wycheproof 91\)/],
    ['GCM open that accepts a modified tag', acceptsAnyTag, /refuses a modified tag \(wycheproof 130\)/],
    ['HKDF off by one bit (test hook)', brokenPrimitives('hkdf'), /hkdf-sha256 \(wycheproof 1\)/],
    ['GCM seal (test hook)', brokenPrimitives('aes-gcm'), /aes-256-gcm seal/],
    ['envelope open (test hook)', brokenPrimitives('envelope'), /golden v1 ciphertext opens/],
    [
      'HKDF that throws',
      {
        ...n,
        hkdf: () => {
          throw new Error('engine gone');
        },
      },
      /hkdf-sha256/,
    ],
  ];
  for (const [what, p, named] of cases) {
    const r = runDataPlaneSelfTest(undefined, p);
    assert.ok(
      r.some((c) => !c.ok),
      `${what}: some check fails`,
    );
    assert.throws(
      () => assertDataPlaneSelfTestPassed(r),
      (err: unknown) =>
        err instanceof KbError &&
        err.code === 'FAILED_PRECONDITION' &&
        /data-plane power-on self-test failed/.test(err.safeMessage) &&
        named.test(err.safeMessage),
      what,
    );
  }
  assert.equal(brokenPrimitives(undefined), NODE_PRIMITIVES, 'no hook: the real primitives');
});

test('a corrupted KAT fails; an empty run is a failure too', () => {
  const k = loadDataPlaneKats();
  const hkdf0 = k.hkdf[0];
  assert.ok(hkdf0);
  hkdf0.okm = (hkdf0.okm[0] === '0' ? '1' : '0') + hkdf0.okm.slice(1);
  assert.throws(() => assertDataPlaneSelfTestPassed(runDataPlaneSelfTest(k)), /hkdf-sha256 \(wycheproof 1\)/);
  assert.throws(() => assertDataPlaneSelfTestPassed([]), /no checks ran/);
});
