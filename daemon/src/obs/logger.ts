/**
 * pino JSON logs on stdout. Request bodies are never logged; the redaction list is a second
 * line of defence for anything that looks like key material, plaintext, ciphertext or a PIN.
 *
 * `log` (pino, redacting) and `request` share one buffered stdout destination. `request` writes
 * the fixed-schema one-line-per-request records the call gate builds from ids, names, codes
 * and timings only; it bypasses pino because pino's per-line work (wildcard redaction above
 * all) cost more CPU than the gate itself on the hot path. Same JSON shape as pino's lines.
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

/** One request line: flat, built by the call gate from non-secret values only. */
export type RequestLine = Readonly<Record<string, string | number | undefined>>;

export interface Loggers {
  readonly log: Logger;
  /** Write one request line at level info (if info is enabled on `log`). */
  request(line: RequestLine): void;
  /** Write out everything buffered (call before exit). */
  flush(): void;
}

function options(level: string) {
  return {
    level,
    base: { pid: process.pid, svc: 'keybroker' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
}

/**
 * The daemon's loggers. Output is buffered (32 KiB) and flushed at least every 200 ms, on exit and
 * on fatal errors: every flush is a thread-pool write costing tens of µs of CPU, so at 4 KiB the
 * request lines of a busy daemon cost a flush every dozen calls.
 */
export function createLoggers(level: string, destination?: DestinationStream): Loggers {
  const boom =
    destination === undefined
      ? pino.destination({ dest: 1, sync: false, minLength: 32 * 1024, maxWrite: 64 * 1024 })
      : undefined;
  const dest: DestinationStream = destination ?? (boom as DestinationStream);
  const log = pino(options(level), dest);
  const pid = process.pid;
  const timer = boom === undefined ? undefined : setInterval(() => boom.flush(), 200);
  timer?.unref();
  return {
    log,
    request(line) {
      if (!log.isLevelEnabled('info')) return;
      const time = new Date().toISOString();
      dest.write(JSON.stringify({ level: 'info', time, pid, svc: 'keybroker', ...line, msg: 'rpc' }) + '\n');
    },
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
