// Child process of shred-kill.test.ts, one mode per run, over one data dir and token:
//   setup    org "acme", tenants "victim" (with HSM ECDSA keys) and "bystander"; prints the
//            victim's token key labels and a ciphertext of each tenant
//   destroy  prints "ready", then DestroyTenant(victim) with approval "apr-kill"; the parent
//            SIGKILLs it at some point (prints "done" if it finished first)
//   check    reopens (resuming whatever the kill interrupted) and prints what it finds
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';
import { Pkcs11Hsm } from '../../daemon/src/hsm/pkcs11-hsm.ts';
import type { OrgId, TenantId } from '../../daemon/src/ids.ts';
import { AsymmetricRuntime } from '../../daemon/src/keys/asymmetric-key-material.ts';
import { KeyBroker, verifyShredReceipt } from '../../daemon/src/keys/key-broker.ts';
import { LiboqsEngine } from '../../daemon/src/pqc/liboqs-engine.ts';
import { OpenSslEngine } from '../../daemon/src/pqc/openssl-engine.ts';
import { DEFAULT_PQC_ROUTING, PqcRouter } from '../../daemon/src/pqc/pqc-router.ts';

const [mode, dataDir, pin, tokenLabel, keysArg, cts] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
  string | undefined,
];
const out = (o: object): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
const hsm = await Pkcs11Hsm.open({ profile: loadProfile('softhsm2'), pin, tokenLabel, probeIntervalMs: 0 });
const runtime = new AsymmetricRuntime(
  new PqcRouter([new OpenSslEngine(), await LiboqsEngine.create()], DEFAULT_PQC_ROUTING),
);
const kb = await KeyBroker.open({ hsm, dataDir, shredBatchMs: 0, pqc: { runtime } });
const org = 'acme' as OrgId;
const victim = { org, tenant: 'victim' as TenantId };
const bystander = { org, tenant: 'bystander' as TenantId };
const aad = new TextEncoder().encode('kill');
const target = { org: 'acme', tenant: 'victim' };

if (mode === 'setup') {
  await kb.createOrg(org);
  await kb.createTenant(org, victim.tenant);
  await kb.createTenant(org, bystander.tenant);
  for (let i = 0; i < Number(keysArg); i++) await kb.asymmetric!.createKey(victim, `ec${i}`, 'ecdsa-p256');
  const db = new Database(join(dataDir, 'registry.db'), { readonly: true });
  const file = (
    db.prepare("SELECT file_name FROM tenants WHERE tenant = 'victim'").get() as { file_name: string }
  ).file_name;
  db.close();
  const tdb = new Database(join(dataDir, file), { readonly: true });
  const labels = (tdb.prepare('SELECT meta FROM tenant_keys').all() as { meta: string }[])
    .map((r) => (JSON.parse(r.meta) as { hsmLabel?: string }).hsmLabel)
    .filter((l) => l !== undefined);
  tdb.close();
  const ct = async (t: typeof victim) =>
    Buffer.from(
      (await kb.encrypt(t, { plaintext: new TextEncoder().encode(t.tenant), aad })).ciphertext,
    ).toString('hex');
  out({ labels, victim: await ct(victim), bystander: await ct(bystander) });
} else if (mode === 'destroy') {
  out({ ready: true });
  await kb.destroyTenant(victim, { approvalId: 'apr-kill' });
  out({ done: true });
  await new Promise((r) => setTimeout(r, 60_000)); // the parent kills us
} else {
  const {
    victim: vct,
    bystander: bct,
    labels,
  } = JSON.parse(cts as string) as {
    victim: string;
    bystander: string;
    labels: string[];
  };
  const code = (p: Promise<unknown>) =>
    p.then(
      () => 'ok',
      (e: { code?: string }) => e.code ?? 'error',
    );
  const receipt = await kb.shredReceiptForApproval('apr-kill' as string, target);
  const pinned = { sha256: (await kb.brokerKeys()).receiptKey.sha256 };
  let tokenKeysLeft = 0;
  for (const l of labels) if ((await hsm.findKey(l, 'signing')) !== undefined) tokenKeysLeft++;
  const db = new Database(join(dataDir, 'registry.db'), { readonly: true });
  const pending = (
    db.prepare("SELECT COUNT(*) AS n FROM shred_intents WHERE state = 'pending'").get() as { n: number }
  ).n;
  const unfinished = (
    db.prepare("SELECT COUNT(*) AS n FROM shred_log WHERE state != 'done'").get() as { n: number }
  ).n;
  db.close();
  out({
    describeVictim: await code(kb.describeTenant(victim)),
    decryptVictim: await code(kb.decrypt(victim, { ciphertext: Buffer.from(vct, 'hex'), aad })),
    decryptBystander: await code(kb.decrypt(bystander, { ciphertext: Buffer.from(bct, 'hex'), aad })),
    receipt:
      receipt === undefined ? 'none' : verifyShredReceipt(receipt, pinned) ? 'verifies' : 'does not verify',
    tokenKeysLeft,
    pendingIntents: pending,
    unfinishedShreds: unfinished,
  });
}
await kb.close();
await hsm.close();
if (mode !== 'destroy') process.exit(0);
