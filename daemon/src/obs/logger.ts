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

/** Buffered output is handed to the stdout writer in chunks of about this many characters. */
const CHUNK_CHARS = 16 * 1024;

/**
 * Lines collected in an array and handed to sonic-boom as one string per chunk. sonic-boom alone
 * measures its whole pending buffer (Buffer.byteLength) on every write, which made each request
 * line cost ~10 µs of CPU; here a line costs an array push. Every line (pino's and the request
 * lines) goes through this one buffer, so their order is kept.
 */
class LineBuffer {
  readonly #out: { write(s: string): unknown };
  #lines: string[] = [];
  #chars = 0;

  constructor(out: { write(s: string): unknown }) {
    this.#out = out;
  }

  write(line: string): boolean {
    this.#lines.push(line);
    this.#chars += line.length;
    if (this.#chars >= CHUNK_CHARS) this.drain();
    return true;
  }

  /** Hand everything collected to the writer. */
  drain(): void {
    if (this.#chars === 0) return;
    const chunk = this.#lines.join('');
    this.#lines = [];
    this.#chars = 0;
    this.#out.write(chunk);
  }
}

let isoMs = 0;
let isoText = '';

/** The time as pino writes it; one Date per millisecond, not per line. */
function isoNow(): string {
  const now = Date.now();
  if (now !== isoMs) {
    isoMs = now;
    isoText = new Date(now).toISOString();
  }
  return isoText;
}

/**
 * One request line, the shape pino writes ({"level":"info","time",...,"msg":"rpc"}), put together
 * directly (one string, no intermediate object); keys and values go through JSON.stringify.
 */
function requestLine(pid: number, line: RequestLine): string {
  let out = `{"level":"info","time":"${isoNow()}","pid":${pid},"svc":"keybroker"`;
  for (const k in line) {
    const v = line[k];
    if (v === undefined) continue;
    out += `,${JSON.stringify(k)}:${JSON.stringify(v)}`;
  }
  return `${out},"msg":"rpc"}\n`;
}

/**
 * The daemon's loggers. Output is buffered (16 KiB chunks, one asynchronous write each) and
 * flushed at least every 200 ms, on exit and on fatal errors.
 */
export function createLoggers(level: string, destination?: DestinationStream): Loggers {
  const boom = destination === undefined ? pino.destination({ dest: 1, sync: false }) : undefined;
  const buffer = boom === undefined ? undefined : new LineBuffer(boom);
  const dest: DestinationStream = destination ?? (buffer as DestinationStream);
  const log = pino(options(level), dest);
  const pid = process.pid;
  const timer =
    buffer === undefined
      ? undefined
      : setInterval(() => {
          buffer.drain();
        }, 200);
  timer?.unref();
  const flush = (): void => {
    if (boom === undefined) return;
    try {
      buffer?.drain();
      boom.flushSync();
    } catch (err) {
      // Nowhere left to log to: say it on stderr, the exit goes on.
      process.stderr.write(`keybroker: flushing logs failed: ${(err as Error).message}\n`);
    }
  };
  // pino flushes its own destination at exit, but not lines still in our buffer.
  if (boom !== undefined) process.once('exit', flush);
  return {
    log,
    request(line) {
      if (!log.isLevelEnabled('info')) return;
      dest.write(requestLine(pid, line));
    },
    flush,
  };
}

/** A single redacting logger (CLI tools, tests). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return createLoggers(level, destination).log;
}
