/**
 * The load generator's connections: a fixed number of slots, each a long-lived grpc.Channel with
 * one client identity. With `rotation`, a slot is reconnected as a fresh random tenant after a
 * number of calls (random-tenant traffic: the tenant is the client certificate, so switching
 * tenants means another connection; the handshake is part of the measured cost).
 */
import * as grpc from '@grpc/grpc-js';
import { readFileSync } from 'node:fs';
import { BENCH_MAX_MESSAGE_BYTES } from '../lib/grpc-proto.ts';
import { benchTenant } from './bench-names.ts';
import type { LoadSpec } from './load-spec.ts';

interface Slot {
  channel: grpc.Channel;
  creds: grpc.ChannelCredentials;
  gen: number;
  calls: number;
  clients: Map<grpc.ServiceClientConstructor, grpc.Client>;
}

interface Identity {
  readonly cert: Buffer;
  readonly key: Buffer;
}

export class ChannelSet {
  readonly #spec: LoadSpec;
  readonly #ca: Buffer;
  readonly #slots: Slot[] = [];
  readonly #identities: Identity[];
  #nextId = 0;
  #rotations = 0;
  readonly #tenantsSeen = new Set<number>();

  private constructor(spec: LoadSpec, identities: Identity[], count: number) {
    this.#spec = spec;
    this.#ca = readFileSync(spec.tls.caCert);
    this.#identities = identities;
    for (let i = 0; i < count; i++) this.#slots.push(this.#open(i));
  }

  /** Open `count` slots; with rotation, first mint the pool of random-tenant identities. */
  static async create(spec: LoadSpec, count: number): Promise<ChannelSet> {
    const ids: Identity[] = spec.tls.identities.map((i) => ({
      cert: readFileSync(i.cert),
      key: readFileSync(i.key),
    }));
    const r = spec.rotation;
    if (r !== undefined) {
      const { loadCa, issueLeaf } = await import('../lib/tls-material.ts');
      const ca = await loadCa(readFileSync(r.caCert, 'utf8'), readFileSync(r.caKey, 'utf8'));
      ids.length = 0;
      for (let i = 0; i < r.identities; i++) {
        const t = Math.floor(Math.random() * r.tenants);
        const leaf = await issueLeaf(ca, {
          commonName: `bench-${t}`,
          server: false,
          uris: [`spiffe://${r.org}/${benchTenant(t)}/bench`],
        });
        ids.push({ cert: Buffer.from(leaf.certPem), key: Buffer.from(leaf.keyPem) });
      }
    }
    return new ChannelSet(spec, ids, count);
  }

  get size(): number {
    return this.#slots.length;
  }

  /** Connections opened to replace rotated ones, and distinct identities used so far. */
  stats(): { rotations: number; identitiesUsed: number } {
    return { rotations: this.#rotations, identitiesUsed: this.#tenantsSeen.size };
  }

  #open(slotIndex: number): Slot {
    const idIndex = this.#nextId++ % this.#identities.length;
    const id = this.#identities[idIndex] as Identity;
    this.#tenantsSeen.add(idIndex);
    const creds = grpc.credentials.createSsl(this.#ca, id.key, id.cert);
    const options: grpc.ChannelOptions = {
      // A local subchannel pool and a distinct option per channel give each its own connection.
      'grpc.use_local_subchannel_pool': 1,
      'kb.bench.channel': `${slotIndex}.${this.#nextId}`,
      'grpc.max_receive_message_length': BENCH_MAX_MESSAGE_BYTES,
      'grpc.max_send_message_length': BENCH_MAX_MESSAGE_BYTES,
      // An 8 MiB receive window, as keybroker's own client uses: the 64 KiB HTTP/2 default makes
      // a 64 MiB stream wait for a window update every message.
      'grpc-node.flow_control_window': 8 * 1024 * 1024,
      'grpc.enable_channelz': 0,
      ...(this.#spec.tls.serverNameOverride === undefined
        ? {}
        : { 'grpc.ssl_target_name_override': this.#spec.tls.serverNameOverride }),
    };
    return {
      channel: new grpc.Channel(this.#spec.target, creds, options),
      creds,
      gen: this.#nextId,
      calls: 0,
      clients: new Map(),
    };
  }

  /** The client of `ctor` on slot `i`'s current connection. */
  client(i: number, ctor: grpc.ServiceClientConstructor): grpc.Client {
    const slot = this.#slots[i % this.#slots.length] as Slot;
    let c = slot.clients.get(ctor);
    if (c === undefined) {
      c = new ctor(this.#spec.target, slot.creds, { channelOverride: slot.channel });
      slot.clients.set(ctor, c);
    }
    return c;
  }

  /** Count a finished call on slot `i`; rotate the slot's identity when the rotation says so. */
  afterCall(i: number): void {
    const r = this.#spec.rotation;
    if (r === undefined) return;
    const idx = i % this.#slots.length;
    const slot = this.#slots[idx] as Slot;
    if (++slot.calls < r.callsPerConnection) return;
    this.#slots[idx] = this.#open(idx);
    this.#rotations++;
    // Calls still in flight on the old connection finish first; then it is closed.
    setTimeout(() => slot.channel.close(), 10_000).unref();
  }

  close(): void {
    for (const s of this.#slots) s.channel.close();
  }
}
