// EncapsulateBatch on real SoftHSM2 + SQLite, on each path it can take: inline with no worker pool,
// inline in event-loop slices with a one-worker pool, split over a two-worker pool, and with
// `kem.encapsulate` routed to liboqs (offloaded to one worker, split over two) so that another
// engine encapsulates than the one that decapsulates. Every encapsulation must be fresh and
// decapsulate, alone and in a DecapsulateBatch, to the secret it came with; an ML-KEM batch must
// reach the worker pool exactly on the paths that send it there (calls into the pool counted).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { AsymmetricKeys } from '../../daemon/src/keys/asymmetric-keys.ts';
import type { PqcWorkerPool } from '../../daemon/src/pqc/pqc-worker-pool.ts';
import { KEM_LENGTHS } from '../../daemon/src/pqc/pqc-params.ts';
import { DEFAULT_PQC_ROUTING, type PqcRoutingConfig } from '../../daemon/src/pqc/pqc-router.ts';
import { XWING_LENGTHS } from '../../daemon/src/pqc/xwing.ts';
import { BATCH_PATHS, openPqcBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;
const A = ref('acme', 'tenant-a');

before(async () => {
  env = await openSoftHsm('kb-asym-ebatch');
});
after(() => env.close());

const liboqsEncapsulates: PqcRoutingConfig = {
  ...DEFAULT_PQC_ROUTING,
  routes: { ...DEFAULT_PQC_ROUTING.routes, 'kem.encapsulate': 'liboqs' },
  offload: [...DEFAULT_PQC_ROUTING.offload, 'kem.encapsulate'],
};
/** Name, pool workers, routing, and whether an ML-KEM batch must reach the pool. */
const PATHS: readonly (readonly [string, number, PqcRoutingConfig, boolean])[] = [
  ...BATCH_PATHS.map(([name, workers]) => [name, workers, DEFAULT_PQC_ROUTING, workers >= 2] as const),
  ['liboqs encapsulates on a one-worker pool (offloaded, one share)', 1, liboqsEncapsulates, true],
  ['liboqs encapsulates on a two-worker pool (split)', 2, liboqsEncapsulates, true],
];

type Batch = Awaited<ReturnType<AsymmetricKeys['encapsulateBatch']>>;

/**
 * Run `work`, counting the calls it makes into the pool's encapsulation methods (own-property
 * wrappers, removed after): a count, not a sample, so a busy machine cannot make it miss one.
 */
async function poolCalls<T>(
  pool: PqcWorkerPool | undefined,
  work: () => Promise<T>,
): Promise<{ value: T; calls: number }> {
  if (pool === undefined) return { value: await work(), calls: 0 };
  let calls = 0;
  const many = pool.encapsulateMany.bind(pool);
  const one = pool.encapsulate.bind(pool);
  pool.encapsulateMany = (...a) => (calls++, many(...a));
  pool.encapsulate = (...a) => (calls++, one(...a));
  try {
    return { value: await work(), calls };
  } finally {
    Reflect.deleteProperty(pool, 'encapsulateMany');
    Reflect.deleteProperty(pool, 'encapsulate');
  }
}
const TYPES = [
  ['ml-kem-768', KEM_LENGTHS['ml-kem-768'].cipherText],
  ['ml-kem-1024', KEM_LENGTHS['ml-kem-1024'].cipherText],
  ['x-wing', XWING_LENGTHS.cipherText],
] as const;

for (const [name, workers, routing, onPool] of PATHS) {
  test(`EncapsulateBatch of 37 items, ${name}: fresh, the right length, each decapsulates to its secret`, async () => {
    const { kb, close } = await openPqcBroker(env, workers, routing);
    try {
      const asym = kb.asymmetric;
      assert.ok(asym, 'KeyBroker.asymmetric is set when options.pqc is given');
      await kb.createOrg(org('acme'));
      await kb.createTenant(A.org, A.tenant);
      for (const [type, ctLength] of TYPES) {
        await asym.createKey(A, type, type);
        // Typed here: the assertions below would otherwise make the inference circular.
        const counted: { value: Batch; calls: number } = await poolCalls(asym.runtime.pool, () =>
          asym.encapsulateBatch(A, type, 37),
        );
        const { value: r, calls } = counted;
        const wantPool = onPool && type !== 'x-wing';
        assert.equal(
          calls > 0,
          wantPool,
          `${type}: the batch ${wantPool ? 'reaches' : 'stays off'} the pool`,
        );
        assert.equal(r.version, 1, `${type}: the primary version`);
        assert.equal(r.encapsulations.length, 37, `${type}: as many encapsulations as asked for`);
        const cts = r.encapsulations.map((e) => Buffer.from(e.cipherText));
        const secrets = r.encapsulations.map((e) => Buffer.from(e.sharedSecret));
        for (const [i, ct] of cts.entries()) {
          assert.equal(ct.length, ctLength, `${type} item ${i}: ciphertext length`);
          assert.equal(secrets[i]?.length, 32, `${type} item ${i}: 32-byte shared secret`);
        }
        assert.equal(
          new Set(cts.map((c) => c.toString('hex'))).size,
          37,
          `${type}: every ciphertext is fresh`,
        );
        assert.equal(
          new Set(secrets.map((s) => s.toString('hex'))).size,
          37,
          `${type}: every secret is fresh`,
        );

        const batch = await asym.decapsulateBatch(A, type, undefined, cts);
        for (const [i, got] of batch.results.entries()) {
          assert.ok(got.ok, `${type} item ${i}: decapsulates`);
          assert.deepEqual(
            Buffer.from(got.value),
            secrets[i],
            `${type} item ${i}: DecapsulateBatch gives its secret`,
          );
        }
        for (const i of [0, 18, 36]) {
          const one = await asym.decapsulate(A, type, undefined, cts[i] as Buffer);
          assert.deepEqual(
            Buffer.from(one.sharedSecret),
            secrets[i],
            `${type} item ${i}: Decapsulate gives its secret`,
          );
        }
      }
      await asym.createKey(A, 'sig', 'ml-dsa-65');
      await assert.rejects(
        asym.encapsulateBatch(A, 'sig', 2),
        { code: 'INVALID_ARGUMENT' },
        'a signature key',
      );
      await assert.rejects(asym.encapsulateBatch(A, 'missing', 2), { code: 'NOT_FOUND' }, 'an unknown key');
    } finally {
      await close();
    }
  });
}
