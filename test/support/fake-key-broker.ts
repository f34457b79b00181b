/**
 * A tiny in-memory KeyBrokerApi for unit tests of the API layer only (call gate, deadlines,
 * audit fail-closed): `encrypt` echoes, `hang` makes every data-plane call wait until
 * released. Everything else is UNIMPLEMENTED. Never used by e2e tests or benchmarks.
 */
import { KbError } from '../../daemon/src/errors.ts';
import type { KeyVersion } from '../../daemon/src/ids.ts';
import type { EncryptRequest, EncryptResult, KeyBrokerApi } from '../../daemon/src/keys/key-broker-api.ts';

export class FakeKeyBroker {
  hang = false;
  calls = 0;
  #release: (() => void)[] = [];

  /** Let every hanging call finish. */
  releaseAll(): void {
    for (const r of this.#release.splice(0)) r();
  }

  async encrypt(_ref: unknown, req: EncryptRequest): Promise<EncryptResult> {
    this.calls++;
    if (this.hang) await new Promise<void>((r) => this.#release.push(r));
    return { ciphertext: Uint8Array.from([1, ...req.plaintext]), keyVersion: 1 as KeyVersion };
  }

  health(): { ready: boolean; degraded: boolean } {
    return { ready: true, degraded: false };
  }

  async close(): Promise<void> {}

  /** As a KeyBrokerApi: unimplemented members throw UNIMPLEMENTED. */
  asApi(): KeyBrokerApi {
    return new Proxy(this, {
      get(target, prop, recv) {
        if (prop in target) {
          const v: unknown = Reflect.get(target, prop, recv);
          return typeof v === 'function' ? v.bind(target) : v;
        }
        return () => Promise.reject(new KbError('UNIMPLEMENTED'));
      },
    }) as unknown as KeyBrokerApi;
  }
}
