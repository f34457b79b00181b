// Child process of durability.test.ts: a create/rotate loop that prints one JSON line per
// acknowledged operation, only after the call returned. The parent SIGKILLs it at random points.
import { randomBytes } from 'node:crypto';
import { loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';
import { Pkcs11Hsm } from '../../daemon/src/hsm/pkcs11-hsm.ts';
import type { CustomerId, OrgId, TenantId } from '../../daemon/src/ids.ts';
import { KeyBroker } from '../../daemon/src/keys/key-broker.ts';

const [dataDir, pin, tokenLabel, roundArg] = process.argv.slice(2) as [string, string, string, string];
const round = Number(roundArg);
const ack = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
const hsm = await Pkcs11Hsm.open({ profile: loadProfile('softhsm2'), pin, tokenLabel, probeIntervalMs: 0 });
const kb = await KeyBroker.open({ hsm, dataDir, shredBatchMs: 0 });
const org = 'dur' as OrgId;
if (round === 0) {
  await kb.createOrg(org);
  ack({ op: 'org' });
}
ack({ op: 'ready' });
const aad = new TextEncoder().encode('durability');
const seal = async (tenant: string, customer: string): Promise<void> => {
  const pt = randomBytes(12).toString('hex');
  const r = await kb.encrypt(
    { org, tenant: tenant as TenantId },
    { customer: customer as CustomerId, plaintext: new TextEncoder().encode(pt), aad },
  );
  ack({ op: 'ct', tenant, customer, pt, ct: Buffer.from(r.ciphertext).toString('hex') });
};
for (let i = 0; ; i++) {
  const tenant = `r${round}-t${i}`;
  const ref = { org, tenant: tenant as TenantId };
  await kb.createTenant(org, ref.tenant);
  ack({ op: 'tenant', tenant });
  await seal(tenant, 'default');
  await kb.rotateCustomerKey(ref, 'default' as CustomerId);
  await seal(tenant, 'default');
  await kb.rotateTenantKey(ref);
  await seal(tenant, 'default');
  await kb.createCustomer(ref, 'c' as CustomerId);
  await seal(tenant, 'c');
  if (i % 3 === 2) {
    await kb.rotateOrgKey(org);
    ack({ op: 'oek' });
    await seal(tenant, 'c');
  }
}
