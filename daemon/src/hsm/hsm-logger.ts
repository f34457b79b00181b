/** The logger shape the HSM layer writes to (pino's `(obj, msg)`), and a silent default. */

/** Structured logger (pino's `(obj, msg)` shape). Never given PINs or key material. */
export interface HsmLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Drops everything (the default when no logger is given). */
export const silentLogger: HsmLogger = {
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};
