/**
 * pino JSON logs. Request bodies are never logged; the redaction list is a second line of
 * defence for anything that looks like key material, plaintext, ciphertext or a PIN.
 */
import { pino } from 'pino';
import type { Logger } from 'pino';

export type { Logger } from 'pino';

/** Field names whose values never reach a log line, at any depth up to 3. */
const SECRET_FIELDS = [
  'plaintext',
  'ciphertext',
  'aad',
  'pin',
  'soPin',
  'userPin',
  'plaintextKey',
  'plaintext_key',
  'wrappedKey',
  'wrapped_key',
  'key',
  'keyPem',
  'privateKey',
  'header',
  'chunk',
  'items',
];

export const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => [f, `*.${f}`, `*.*.${f}`]);

/** The daemon's root logger, writing JSON lines to stdout (journald/collector friendly). */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const opts = {
    level,
    base: { pid: process.pid, svc: 'keybroker' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return destination === undefined ? pino(opts) : pino(opts, destination);
}
