/**
 * Holds the current policy and swaps in a new one atomically: the new text is validated and
 * compiled completely first, so a bad policy is refused and the old one stays (SIGHUP reload,
 * Admin SetPolicy/ReloadPolicy). The policy in force is the daemon-wide base merged with the
 * per-org sections (org-policy.ts), each kept as `<sectionsDir>/<org>.json`.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { KbError } from '../errors.ts';
import { loadOrgSection, mergeSections } from './org-policy.ts';
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
  /** Org sections: text and compiled policy, by org. */
  #sections = new Map<string, { readonly text: string; readonly policy: Policy }>();
  /** The base merged with the sections (what the engine evaluates); rebuilt on every change. */
  #merged: Policy | undefined;
  #sectionsDir: string | undefined;

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
    return this.#merged ?? this.#current;
  }

  /** Replace the daemon-wide base with `text` if it is valid; otherwise throw and keep the old one. */
  replace(text: string, origin: PolicyOrigin = 'api'): PolicySwap {
    const next = loadPolicy(text);
    const previousDigest = this.#current?.digest;
    this.#current = next;
    this.#text = text;
    this.#origin = origin;
    this.#merge();
    return { previousDigest, digest: next.digest };
  }

  /** `org`'s section text, or undefined when it has none. */
  sectionText(org: string): string | undefined {
    return this.#sections.get(org)?.text;
  }

  /** Replace `org`'s section with `text` if it is valid and confined to the org. */
  replaceSection(org: string, text: string): PolicySwap {
    const next = loadOrgSection(org, text);
    const previousDigest = this.#sections.get(org)?.policy.digest;
    this.#sections.set(org, { text, policy: next });
    this.#merge();
    return { previousDigest, digest: next.digest };
  }

  /**
   * Read the org sections from `dir` (one `<org>.json` each) now and at every reloadFromFile; a
   * bad section refuses the whole load and the sections in force stay.
   */
  useSectionsDir(dir: string): void {
    this.#sectionsDir = dir;
    this.#loadSections();
  }

  #loadSections(): void {
    const dir = this.#sectionsDir;
    if (dir === undefined || !existsSync(dir)) return;
    const next = new Map<string, { text: string; policy: Policy }>();
    for (const f of readdirSync(dir).sort()) {
      const m = /^([a-z0-9][a-z0-9_-]{0,62})\.json$/.exec(f);
      if (m === null) continue;
      const org = m[1] as string;
      const text = readFileSync(join(dir, f), 'utf8');
      try {
        next.set(org, { text, policy: loadOrgSection(org, text) });
      } catch (err) {
        const why = err instanceof KbError ? err.safeMessage : String(err);
        throw new KbError('INVALID_ARGUMENT', `policy section ${f}: ${why}`, { cause: err });
      }
    }
    this.#sections = next;
    this.#merge();
  }

  #merge(): void {
    const base = this.#current;
    this.#merged =
      base === undefined
        ? undefined
        : mergeSections(base, new Map([...this.#sections].map(([o, s]) => [o, s.policy])));
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
    loadPolicy(text);
    // Sections first: a bad one refuses the reload before the base changes.
    this.#loadSections();
    return this.replace(text, 'file');
  }
}
