/**
 * Test support: read the shared vectors unmodified from ../shared/vectors (relative to the repo
 * root), and count per engine how many vectors passed, failed or could not be run (with reason).
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const VECTORS = resolve(REPO_ROOT, '../shared/vectors');

export interface WycheproofTest {
  readonly tcId: number;
  readonly comment?: string;
  readonly flags?: readonly string[];
  readonly result: 'valid' | 'invalid' | 'acceptable';
  readonly [field: string]: unknown;
}
export interface WycheproofGroup {
  readonly tests: readonly WycheproofTest[];
  readonly [field: string]: unknown;
}
export interface WycheproofFile {
  readonly algorithm?: string;
  readonly numberOfTests: number;
  readonly testGroups: readonly WycheproofGroup[];
}

export function wycheproof(name: string): WycheproofFile {
  return JSON.parse(readFileSync(resolve(VECTORS, 'wycheproof', `${name}.json`), 'utf8')) as WycheproofFile;
}

export function readVectorJson<T>(relative: string): T {
  return JSON.parse(readFileSync(resolve(VECTORS, relative), 'utf8')) as T;
}

/** Hex field of a test or group as a plain Uint8Array (undefined when absent). */
export function hex(v: unknown): Uint8Array {
  if (typeof v !== 'string') throw new Error(`expected a hex string, got ${typeof v}`);
  return new Uint8Array(Buffer.from(v, 'hex'));
}

export function optHex(v: unknown): Uint8Array | undefined {
  return v === undefined || v === null ? undefined : hex(v);
}

export function eq(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

/** Per-engine tally of one vector file. */
export class Tally {
  readonly file: string;
  readonly engine: string;
  passed = 0;
  readonly failures: string[] = [];
  readonly notRun = new Map<string, number>();

  constructor(file: string, engine: string) {
    this.file = file;
    this.engine = engine;
  }

  pass(): void {
    this.passed++;
  }

  fail(tcId: number, what: string): void {
    this.failures.push(`${this.file} tcId ${tcId} on ${this.engine}: ${what}`);
  }

  /** A vector this engine cannot run, with the reason (reported, never silently dropped). */
  skip(reason: string): void {
    this.notRun.set(reason, (this.notRun.get(reason) ?? 0) + 1);
  }

  get total(): number {
    return this.passed + this.failures.length + [...this.notRun.values()].reduce((a, b) => a + b, 0);
  }

  summary(): string {
    const skipped = [...this.notRun].map(([r, n]) => `${n} not run (${r})`).join('; ');
    return `${this.engine.padEnd(7)} ${this.file}: ${this.passed}/${this.total} passed, ${this.failures.length} failed${skipped ? `, ${skipped}` : ''}`;
  }
}

/** Run `fn`, returning the error it threw (or undefined). */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err;
  }
}
