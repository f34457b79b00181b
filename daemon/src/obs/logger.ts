/**
 * pino JSON logs on stdout. Request bodies are never logged; the redaction list is a second
 * line of defence for anything that looks like key material, plaintext, ciphertext or a PIN.
 *
 * Two loggers share one buffered stdout destination: `log` (redacting; everything) and
 * `requestLog` (no redaction) for the fixed-schema one-line-per-request records the call gate
 * writes from values it builds itself (ids, names, codes, timings). pino's wildcard redaction
 * costs more CPU per line than the request itself, hence the split.
 */
import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';

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

export interface Loggers {
  readonly log: Logger;
  readonly requestLog: Logger;
  /** Write out everything buffered (call before exit). */
  flush(): void;
}

function options(level: string, redact: boolean) {
  return {
    level,
    base: { pid: process.pid, svc: 'keybroker' },
    ...(redact ? { redact: { paths: REDACT_PATHS, censor: '[redacted]' } } : {}),
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
}

/** The daemon's loggers. Output is buffered (4 KiB) and flushed at least every 200 ms. */
export function createLoggers(level: string, destination?: DestinationStream): Loggers {
  const boom =
    destination === undefined ? pino.destination({ dest: 1, sync: false, minLength: 4096 }) : undefined;
  const dest = destination ?? boom;
  const log = pino(options(level, true), dest);
  const requestLog = pino(options(level, false), dest);
  const timer = boom === undefined ? undefined : setInterval(() => boom.flush(), 200);
  timer?.unref();
  return {
    log,
    requestLog,
    flush() {
      if (boom !== undefined) {
        try {
          boom.flushSync();
        } catch (err) {
          // Nowhere left to log to: say it on stderr, the exit goes on.
          process.stderr.write(`keybroker: flushing logs failed: ${(err as Error).message}\n`);
        }
      }
    },
  };
}

/** A single redacting logger (CLI tools, tests). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return createLoggers(level, destination).log;
}
