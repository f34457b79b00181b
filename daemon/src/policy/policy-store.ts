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

/** Where the policy in force came from (GetPolicy reports it). */
export type PolicyOrigin = 'default' | 'file' | 'api';

export class PolicyStore implements PolicySource {
  #current: Policy | undefined;
  #text: string | undefined;
  #origin: PolicyOrigin = 'default';

  /** Start with `initial` (already validated) or with no policy, which denies everything. */
  constructor(initial?: Policy, text?: string) {
    this.#current = initial;
    this.#text = text;
  }

  /** The document text in force (undefined when constructed from a compiled policy only). */
  text(): string | undefined {
    return this.#text;
  }

  origin(): PolicyOrigin {
    return this.#origin;
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
  replace(text: string, origin: PolicyOrigin = 'api'): PolicySwap {
    const next = loadPolicy(text);
    const previousDigest = this.#current?.digest;
    this.#current = next;
    this.#text = text;
    this.#origin = origin;
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
    return this.replace(text, 'file');
  }
}
