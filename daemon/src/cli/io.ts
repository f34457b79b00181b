/** Input and output of the client commands: a file, or stdin/stdout for none or "-". */
import { readFileSync, writeFileSync } from 'node:fs';

export function readInput(file: string | undefined): Buffer {
  return readFileSync(file === undefined || file === '' || file === '-' ? 0 : file);
}

/** Outputs may be plaintext or keys: files are created 0600. */
export function writeOutput(out: string | undefined, data: Uint8Array): void {
  if (out === undefined || out === '' || out === '-') process.stdout.write(data);
  else writeFileSync(out, data, { mode: 0o600 });
}
