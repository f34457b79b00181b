/**
 * Shred epochs: the only step that makes a shred hold against backups. A durable state machine
 * per org, one row in `shred_epochs`:
 *
 *   generating  -> new OEK version created in the HSM under a label recorded BEFORE the call
 *                  (resume: find it by label, else generate), registered, made primary
 *   rewrapping  -> every TEK row of the org still under an older OEK is unwrapped and rewrapped
 *                  under the new one (batches, each a durable transaction); TEK inserts that were
 *                  wrapped under a non-primary OEK are refused (StaleOekError), so none slips in
 *   destroying  -> entered only once no TEK row is under an old version (checked in the same
 *                  transaction); then C_DestroyObject on every old OEK version
 *   done
 *
 * A crash anywhere resumes from the recorded state; the old OEK is never destroyed before the
 * rewrapped TEKs are durable. Concurrent shreds of one org coalesce: requests arriving within
 * `batchMs` of the first share one epoch; a request arriving while an epoch runs waits for the next.
 * An on-demand OEK rotation is the same machine with destroyOld = false (old versions retired).
 */
import { randomBytes } from 'node:crypto';
import type { EpochRow } from '../store/registry-store.ts';
import { frameWrappedTek, unframeWrappedTek } from '../wire/wrapped-key-v1.ts';
import type { Hierarchy } from './hierarchy.ts';
import type { KeyedMutex } from './keyed-mutex.ts';

const REWRAP_BATCH = 500;

export interface EpochResult {
  readonly epoch: EpochRow;
  readonly destroyed: readonly { version: number; label: string }[];
}

interface Pending {
  readonly promise: Promise<EpochResult>;
}

export class ShredEpochRunner {
  readonly #h: Hierarchy;
  readonly #orgLock: KeyedMutex;
  readonly #batchMs: number;
  readonly #pending = new Map<string, Pending>();
  readonly #warn: (detail: object, msg: string) => void;

  constructor(
    h: Hierarchy,
    orgLock: KeyedMutex,
    batchMs: number,
    warn: (detail: object, msg: string) => void = () => {},
  ) {
    this.#h = h;
    this.#orgLock = orgLock;
    this.#batchMs = batchMs;
    this.#warn = warn;
  }

  /** Join the org's next shred epoch (destroying every older OEK version) and wait for it. */
  requestShredEpoch(org: string): Promise<EpochResult> {
    const p = this.#pending.get(org);
    if (p) return p.promise;
    const promise = new Promise<void>((r) => setTimeout(r, this.#batchMs)).then(() => {
      // From here on, new requests start a new batch: their deletions may postdate our rewrap.
      this.#pending.delete(org);
      return this.run(org, true);
    });
    this.#pending.set(org, { promise });
    return promise;
  }

  /** Run one epoch now (under the org lock). */
  run(org: string, destroyOld: boolean): Promise<EpochResult> {
    return this.#orgLock.run(`org:${org}`, async () => {
      const reg = this.#h.d.registry;
      // Finish an interrupted epoch of this org first: two open epochs must never interleave.
      for (const e of reg.listUnfinishedEpochs()) if (e.org === org) await this.#drive(e.id);
      const oeks = reg.listOeks(org);
      const next = oeks.reduce((m, o) => Math.max(m, o.version), 0) + 1;
      const old = oeks
        .filter((o) => o.state !== 'destroyed' && (destroyOld || o.state === 'enabled'))
        .map((o) => o.version);
      const id = reg.insertEpoch({
        org,
        state: 'generating',
        destroyOld,
        newOek: next,
        newLabel: `kb-oek-${org}-v${next}-${randomBytes(4).toString('hex')}`,
        oldOeks: old,
        createdAt: this.#h.d.now().toISOString(),
      });
      return this.#drive(id);
    });
  }

  /** Resume every unfinished epoch (at open, after a crash). */
  async resumeAll(): Promise<void> {
    for (const e of this.#h.d.registry.listUnfinishedEpochs()) {
      await this.#orgLock.run(`org:${e.org}`, () => this.#drive(e.id));
    }
  }

  async #drive(id: number): Promise<EpochResult> {
    const reg = this.#h.d.registry;
    const hsm = this.#h.d.hsm;
    const labels = new Map<number, string>();
    for (;;) {
      const e = reg.getEpoch(id);
      if (!e) throw new Error(`epoch ${id} vanished`);
      for (const o of reg.listOeks(e.org)) labels.set(o.version, o.hsmLabel);
      switch (e.state) {
        case 'generating': {
          // A key already under the recorded label means we died in or right after
          // C_GenerateKey. SoftHSM can then hold a half-made object that fails every wrap
          // (seen: CKR_GENERAL_ERROR after a SIGKILL). Nothing is wrapped under it while the
          // epoch is still generating, so discard it and generate under a fresh label.
          const leftover = await hsm.findKey(e.newLabel, 'root');
          if (leftover) {
            await hsm.destroyKey(leftover).catch((err: unknown) => {
              // Never used to wrap anything: an orphan, not a leak. Do not let it wedge the epoch.
              this.#warn({ err, label: e.newLabel }, 'could not destroy a leftover OEK; left orphaned');
            });
            reg.setEpochLabel(id, `kb-oek-${e.org}-v${e.newOek}-${randomBytes(4).toString('hex')}`);
            continue;
          }
          await hsm.generateRootKey(e.newLabel);
          const now = this.#h.d.now().toISOString();
          reg.tx(() => {
            if (!reg.getOek(e.org, e.newOek)) {
              reg.insertOek({
                org: e.org,
                version: e.newOek,
                hsmLabel: e.newLabel,
                state: 'enabled',
                createdAt: now,
                destroyedAt: null,
              });
            }
            reg.setPrimaryOek(e.org, e.newOek);
            for (const v of e.oldOeks)
              if (reg.getOek(e.org, v)?.state === 'enabled') reg.setOekState(e.org, v, 'retired', null);
            reg.setEpochState(id, 'rewrapping', null);
          });
          break;
        }
        case 'rewrapping': {
          await this.#rewrapAll(e);
          const moved = reg.tx(() => {
            if (reg.countTeksNotUnder(e.org, e.newOek) > 0) return false;
            if (e.destroyOld) reg.setEpochState(id, 'destroying', null);
            else reg.setEpochState(id, 'done', this.#h.d.now().toISOString());
            return true;
          });
          if (!moved) continue;
          break;
        }
        case 'destroying': {
          for (const v of e.oldOeks) {
            const label = labels.get(v);
            if (label === undefined) continue;
            const ref = await hsm.findKey(label, 'root');
            if (ref) await hsm.destroyKey(ref);
            this.#h.forgetOek(e.org, v);
            reg.setOekState(e.org, v, 'destroyed', this.#h.d.now().toISOString());
          }
          reg.setEpochState(id, 'done', this.#h.d.now().toISOString());
          break;
        }
        case 'done': {
          const destroyed = e.destroyOld
            ? e.oldOeks.map((v) => ({ version: v, label: labels.get(v) ?? '' }))
            : [];
          return { epoch: e, destroyed };
        }
      }
    }
  }

  async #rewrapAll(e: EpochRow): Promise<void> {
    const reg = this.#h.d.registry;
    const hsm = this.#h.d.hsm;
    const to = await this.#h.oekRef(e.org, e.newOek);
    for (;;) {
      const rows = reg.listTeksNotUnder(e.org, e.newOek, REWRAP_BATCH);
      if (rows.length === 0) return;
      const out = [];
      for (const r of rows) {
        const from = await this.#h.oekRef(e.org, r.oekVersion);
        const raw = await hsm.unwrapKey(from, unframeWrappedTek(hsm.capabilities.wrap, r.wrapped));
        try {
          const w = await hsm.wrapKey(to, raw);
          out.push({
            org: r.org,
            tenant: r.tenant,
            version: r.version,
            fromOek: r.oekVersion,
            toOek: e.newOek,
            wrapped: frameWrappedTek(hsm.capabilities.wrap, w),
          });
        } finally {
          raw.fill(0);
        }
      }
      reg.rewrapTeks(out);
    }
  }
}
