// Issue 18 item 9 without a crash, on real SoftHSM2 + SQLite: a DestroyTenant that fails half-way
// through destroying the tenant's HSM ECDSA keys (the token fails) is committed anyway. Until the
// retry timer finishes it, the half-destroyed tenant serves nothing (data plane and Keys service
// answer NOT_FOUND); then the tenant is gone and every token key destroyed.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { after, before, test } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import type { Hsm } from '../../daemon/src/hsm/hsm.ts';
import { AsymmetricRuntime } from '../../daemon/src/keys/asymmetric-key-material.ts';
import { LiboqsEngine } from '../../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter } from '../../daemon/src/pqc/pqc-router.ts';
import { bytes, codeOf, openBroker, openSoftHsm, org, ref } from './harness.ts';
import type { SoftHsmEnv } from './harness.ts';

let env: SoftHsmEnv;

/** The token labels of a tenant's HSM-resident keys, from its file. */
function tokenLabels(dataDir: string, tenant: string): string[] {
  const reg = new Database(join(dataDir, 'registry.db'), { readonly: true });
  const file = (
    reg.prepare('SELECT file_name FROM tenants WHERE tenant = ?').get(tenant) as { file_name: string }
  ).file_name;
  reg.close();
  const db = new Database(join(dataDir, file), { readonly: true });
  const rows = db.prepare('SELECT meta FROM tenant_keys').all() as { meta: string }[];
  db.close();
  return rows.flatMap((r) => {
    const l = (JSON.parse(r.meta) as { hsmLabel?: string }).hsmLabel;
    return l === undefined ? [] : [l];
  });
}
before(async () => {
  env = await openSoftHsm('kb-shred-intent');
});
after(async () => {
  await env.close();
});

test('a destroy that fails half-way is resumed by the retry timer; meanwhile the tenant serves nothing', async () => {
  let destroysLeft = Infinity;
  const hsm = new Proxy(env.hsm, {
    get(target, p) {
      const v = Reflect.get(target, p, target) as unknown;
      if (p === 'destroyKey')
        return (...args: Parameters<Hsm['destroyKey']>) => {
          if (destroysLeft-- <= 0) return Promise.reject(new KbError('HSM_UNAVAILABLE'));
          return target.destroyKey(...args);
        };
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const router = new PqcRouter([new OpenSslEngine(), await LiboqsEngine.create()], DEFAULT_PQC_ROUTING);
  const dir = env.dataDir();
  const kb = await openBroker(hsm, dir, {
    pqc: { runtime: new AsymmetricRuntime(router) },
    shredRetryMs: 300,
  });
  try {
    const victim = ref('acme', 'victim');
    const other = ref('acme', 'other');
    await kb.createOrg(org('acme'));
    await kb.createTenant(victim.org, victim.tenant);
    await kb.createTenant(other.org, other.tenant);
    const labels: string[] = [];
    for (let i = 0; i < 6; i++) await kb.asymmetric!.createKey(victim, `ec${i}`, 'ecdsa-p256');
    labels.push(...tokenLabels(dir, 'victim'));
    assert.equal(labels.length, 6, 'six token keys');
    const ct = (await kb.encrypt(victim, { plaintext: bytes('v'), aad: bytes('') })).ciphertext;
    const otherCt = (await kb.encrypt(other, { plaintext: bytes('o'), aad: bytes('') })).ciphertext;

    destroysLeft = 2; // the token fails after two of the six keys
    assert.notEqual(await codeOf(() => kb.destroyTenant(victim)), 'no error', 'the destroy fails half-way');
    for (const [name, fn] of [
      ['Decrypt', () => kb.decrypt(victim, { ciphertext: ct, aad: bytes('') })],
      ['Encrypt', () => kb.encrypt(victim, { plaintext: bytes('x'), aad: bytes('') })],
      ['Sign with a surviving key', () => kb.asymmetric!.sign(victim, 'ec5', bytes('m'), bytes(''))],
    ] as const)
      assert.equal(await codeOf(fn), 'NOT_FOUND', `${name} on the half-destroyed tenant`);
    assert.equal(
      await codeOf(() => kb.decrypt(other, { ciphertext: otherCt, aad: bytes('') })),
      'no error',
      'another tenant is untouched',
    );

    destroysLeft = Infinity; // the token recovers: the retry timer finishes the destroy
    const until = Date.now() + 30_000;
    while ((await codeOf(() => kb.describeTenant(victim))) !== 'NOT_FOUND' && Date.now() < until)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal(await codeOf(() => kb.describeTenant(victim)), 'NOT_FOUND', 'the tenant is gone');
    let left = 0;
    for (const l of labels) if ((await env.hsm.findKey(l, 'signing')) !== undefined) left++;
    assert.equal(left, 0, 'token keys left after the resumed destroy');
  } finally {
    await kb.close();
  }
});
