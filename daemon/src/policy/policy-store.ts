/**
 * Holds the current policy and swaps in a new one atomically: the new text is validated and
 * compiled completely first, so a bad policy is refused and the old one stays (SIGHUP reload,
 * Admin SetPolicy/ReloadPolicy).
 */
import { readFile } from 'node:fs/promises';
import { KbError } from '../errors.ts';
import { loadPolicy } from './policy-document.ts';
import type { Policy } from './policy-document.ts';
import type { PolicySource } from './policy-engine.ts';

/** Outcome of a reload, for logs and the Admin RPC reply. */
export interface PolicySwap {
  readonly previousDigest: string | undefined;
  readonly digest: string;
}

export class PolicyStore implements PolicySource {
  #current: Policy | undefined;

  /** Start with `initial` (already validated) or with no policy, which denies everything. */
  constructor(initial?: Policy) {
    this.#current = initial;
  }

  /** Validate and compile `text` from a file path. */
  static async fromFile(path: string): Promise<PolicyStore> {
    const s = new PolicyStore();
    await s.reloadFromFile(path);
    return s;
  }

  current(): Policy | undefined {
    return this.#current;
  }

  /** Replace the policy with `text` if it is valid; otherwise throw and keep the old one. */
  replace(text: string): PolicySwap {
    const next = loadPolicy(text);
    const previousDigest = this.#current?.digest;
    this.#current = next;
    return { previousDigest, digest: next.digest };
  }

  /** Re-read the policy file; a read or validation error keeps the old policy. */
  async reloadFromFile(path: string): Promise<PolicySwap> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new KbError('FAILED_PRECONDITION', 'policy file unreadable', {
        cause: err,
        detail: (err as Error).message,
      });
    }
    return this.replace(text);
  }
}
