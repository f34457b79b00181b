// Durability on real SoftHSM2 + SQLite: a child in a create/rotate loop is SIGKILLed at random
// points, several times over the same data dir and token. Afterwards every acknowledged key still
// decrypts what it encrypted, every tenant that exists works, and no epoch is left half done.
// KB_SLOW_TESTS=1 runs more rounds.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';
import { Pkcs11Hsm } from '../../daemon/src/hsm/pkcs11-hsm.ts';
import type { CustomerId, OrgId, TenantId } from '../../daemon/src/ids.ts';
import { KeyBroker } from '../../daemon/src/keys/key-broker.ts';
import { createTestToken } from '../support/softhsm-token.ts';
import type { TestToken } from '../support/softhsm-token.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

const ROUNDS = process.env.KB_SLOW_TESTS === '1' ? 20 : 4;
let token: TestToken;
let dataDir: string;

before(() => {
  token = createTestToken('kb-durable');
  dataDir = mkdtempSync(join(tmpdir(), 'kb-durable-'));
});
after(() => {
  token.cleanup();
  rmSync(dataDir, { recursive: true, force: true });
});

interface Ack {
  op: string;
  tenant?: string;
  customer?: string;
  pt?: string;
  ct?: string;
}

/** Run one child round and SIGKILL it `killAfterMs` after it is ready; returns its complete ack lines. */
function runRound(round: number, killAfterMs: number): Promise<{ acks: Ack[]; stderr: string }> {
  return new Promise((resolveRound, reject) => {
    const child = spawn(
      process.execPath,
      [join(import.meta.dirname, 'durability-child.ts'), dataDir, token.pin, token.label, String(round)],
      {
        env: { ...process.env, SOFTHSM2_CONF: token.conf },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    let err = '';
    let armed = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!armed && out.includes('"op":"ready"')) {
        armed = true;
        setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const guard = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(guard);
      if (signal !== 'SIGKILL')
        return reject(
          new Error(
            `round ${round}: child exited ${code}/${signal}, wanted SIGKILL; stderr: ${err.slice(0, 2000)}`,
          ),
        );
      // Only complete lines are acknowledgements; a torn last line was never acked.
      const lines = out.split('\n');
      lines.pop();
      resolveRound({ acks: lines.map((l) => JSON.parse(l) as Ack), stderr: err });
    });
  });
}

test(
  `SIGKILL during create/rotate loops (${ROUNDS} rounds): every acknowledged key survives`,
  { timeout: 600_000 },
  async () => {
    const acks: Ack[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const killAfter = 30 + Math.floor(Math.random() * 400);
      const r = await runRound(round, killAfter);
      assert.ok(
        r.acks.some((a) => a.op === 'ready'),
        `round ${round} never got ready: ${r.stderr.slice(0, 2000)}`,
      );
      acks.push(...r.acks);
    }
    const cts = acks.filter((a) => a.op === 'ct');
    assert.ok(cts.length >= ROUNDS, `only ${cts.length} ciphertexts acknowledged`);

    process.env.SOFTHSM2_CONF = token.conf;
    const hsm = await Pkcs11Hsm.open({
      profile: loadProfile('softhsm2'),
      pin: token.pin,
      tokenLabel: token.label,
      probeIntervalMs: 0,
    });
    const kb = await KeyBroker.open({ hsm, dataDir });
    try {
      const org = 'dur' as OrgId;
      const aad = new TextEncoder().encode('durability');
      for (const a of cts) {
        const ref = { org, tenant: a.tenant as TenantId };
        const r = await kb.decrypt(ref, {
          ciphertext: new Uint8Array(Buffer.from(a.ct as string, 'hex')),
          aad,
        });
        assert.equal(
          new TextDecoder().decode(r.plaintext),
          a.pt,
          `acked ciphertext of ${a.tenant}/${a.customer}`,
        );
      }
      // Every tenant that exists (acked or not) is whole: it encrypts and decrypts with every customer.
      const tenants = await kb.listTenants(org);
      for (const a of acks.filter((x) => x.op === 'tenant'))
        assert.ok(
          tenants.some((t) => t.tenant === a.tenant),
          `acked tenant ${a.tenant} missing`,
        );
      for (const t of tenants) {
        const ref = { org, tenant: t.tenant };
        for (const c of await kb.listCustomers(ref)) {
          const e = await kb.encrypt(ref, {
            customer: c.customer as CustomerId,
            plaintext: new Uint8Array([1, 2, 3]),
            aad,
          });
          assert.deepEqual(
            [...(await kb.decrypt(ref, { ciphertext: e.ciphertext, aad })).plaintext],
            [1, 2, 3],
            `${t.tenant}/${c.customer}`,
          );
        }
      }
      const db = new Database(join(dataDir, 'registry.db'), { readonly: true });
      const open = db.prepare("SELECT COUNT(*) AS n FROM shred_epochs WHERE state != 'done'").get() as {
        n: number;
      };
      db.close();
      assert.equal(open.n, 0, 'an OEK epoch was left unfinished after restart');
    } finally {
      await kb.close();
      await hsm.close();
    }
  },
);
