/**
 * The environment given to the helper programs the daemon runs (`sync -f`, `systemd-notify`):
 * PATH to find them and only the variables each one needs, never the daemon's own (KB_*, PINs).
 */

/** A minimal environment: PATH plus the named variables that are set in `from`. */
export function childEnv(
  keep: readonly string[] = [],
  from: NodeJS.ProcessEnv = process.env,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: from.PATH ?? '/usr/local/bin:/usr/bin:/bin' };
  for (const k of keep) if (from[k] !== undefined) env[k] = from[k];
  return env;
}
