/**
 * Loads the config: defaults <- JSON file <- KB_* environment variables, then validates it.
 * Environment names are derived from the path: `listen.port` -> KB_LISTEN_PORT,
 * `limits.maxPlaintextBytes` -> KB_LIMITS_MAX_PLAINTEXT_BYTES, `dataDir` -> KB_DATA_DIR.
 * The HSM PIN is never part of the config object; `readHsmPin` fetches it when needed.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { CONFIG_SCHEMA, DEFAULT_CONFIG } from './config-schema.ts';
import type { Config } from './config-schema.ts';
import { storeConfigProblems } from './store-backend.ts';

/** A config problem, with the offending field named. Exit code 2 from the CLI. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

const isObject = (v: unknown): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Deep merge of plain objects; arrays and scalars of `over` replace those of `base`. */
function merge(base: JsonObject, over: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = isObject(b) && isObject(v) ? merge(b, v) : v;
  }
  return out;
}

/** The KB_* name of a config path. */
export function envNameOf(path: readonly string[]): string {
  return 'KB_' + path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

/** Every leaf path of the defaults, with its env name: the documented override table. */
export function envOverrides(): { path: string; env: string }[] {
  const out: { path: string; env: string }[] = [];
  const walk = (o: JsonObject, at: string[]) => {
    for (const [k, v] of Object.entries(o)) {
      if (isObject(v)) walk(v, [...at, k]);
      else out.push({ path: [...at, k].join('.'), env: envNameOf([...at, k]) });
    }
  };
  walk(DEFAULT_CONFIG as unknown as JsonObject, []);
  return out;
}

function coerce(env: string, raw: string, like: Json): Json {
  if (typeof like === 'number') {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new ConfigError(`${env}: expected a number`);
    return n;
  }
  if (typeof like === 'boolean') {
    if (raw === 'true' || raw === '1') return true;
    if (raw === 'false' || raw === '0') return false;
    throw new ConfigError(`${env}: expected true or false`);
  }
  if (Array.isArray(like)) return raw === '' ? [] : raw.split(',').map((s) => s.trim());
  return raw;
}

function applyEnv(cfg: JsonObject, env: NodeJS.ProcessEnv): JsonObject {
  let out = cfg;
  for (const { path, env: name } of envOverrides()) {
    const raw = env[name];
    if (raw === undefined) continue;
    const keys = path.split('.');
    let like: Json = DEFAULT_CONFIG as unknown as JsonObject;
    for (const k of keys) like = (like as JsonObject)[k] ?? null;
    const patch: JsonObject = {};
    let cur = patch;
    keys.forEach((k, i) => {
      if (i === keys.length - 1) cur[k] = coerce(name, raw, like);
      else cur = cur[k] = {};
    });
    out = merge(out, patch);
  }
  return out;
}

const ajv = new Ajv({ allErrors: true, strict: true });
const validate = ajv.compile(CONFIG_SCHEMA);

/** Validate a merged config object; throws ConfigError naming every bad field. */
export function validateConfig(candidate: unknown): Config {
  if (validate(candidate)) return candidate as Config;
  const msgs = (validate.errors ?? []).map((e) => {
    const field = e.instancePath.replace(/^\//, '').replaceAll('/', '.') || '(root)';
    const extra =
      e.keyword === 'additionalProperties'
        ? ` "${String((e.params as { additionalProperty?: string }).additionalProperty)}"`
        : '';
    return `${field}: ${e.message ?? 'invalid'}${extra}`;
  });
  throw new ConfigError(`invalid config: ${[...new Set(msgs)].join('; ')}`);
}

function resolvePaths(cfg: Config, baseDir: string): Config {
  const abs = (p: string, from: string) => (p === '' || isAbsolute(p) ? p : resolve(from, p));
  const dataDir = abs(cfg.dataDir, baseDir);
  return {
    ...cfg,
    dataDir,
    tls: {
      ...cfg.tls,
      caFile: abs(cfg.tls.caFile, dataDir),
      certFile: abs(cfg.tls.certFile, dataDir),
      keyFile: abs(cfg.tls.keyFile, dataDir),
      crlFile: abs(cfg.tls.crlFile, dataDir),
    },
    hsm: {
      ...cfg.hsm,
      pinFile: abs(cfg.hsm.pinFile, dataDir),
      softhsmConf: abs(cfg.hsm.softhsmConf, dataDir),
    },
    lifecycle: { ...cfg.lifecycle, readyFile: abs(cfg.lifecycle.readyFile, dataDir) },
    audit: { ...cfg.audit, path: abs(cfg.audit.path, dataDir) },
    policy: { ...cfg.policy, file: abs(cfg.policy.file, dataDir) },
    store: {
      ...cfg.store,
      postgres: {
        ...cfg.store.postgres,
        tlsCaFile: abs(cfg.store.postgres.tlsCaFile, dataDir),
        passwordFile: abs(cfg.store.postgres.passwordFile, dataDir),
      },
    },
  };
}

/**
 * Load and validate. `path` may be undefined (defaults + env only). Relative `dataDir` is
 * resolved against the config file's directory; other relative paths against `dataDir`.
 */
export function loadConfig(path: string | undefined, env: NodeJS.ProcessEnv = process.env): Config {
  let fromFile: JsonObject = {};
  if (path !== undefined) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`);
    }
    if (!isObject(parsed)) throw new ConfigError(`config file ${path}: (root): must be an object`);
    fromFile = parsed;
  }
  const merged = applyEnv(merge(DEFAULT_CONFIG as unknown as JsonObject, fromFile), env);
  const cfg = validateConfig(merged);
  const storeProblems = storeConfigProblems(cfg);
  if (storeProblems.length > 0) throw new ConfigError(`invalid config: ${storeProblems.join('; ')}`);
  return resolvePaths(cfg, path === undefined ? process.cwd() : dirname(resolve(path)));
}

/**
 * KB_HSM_PIN, removed from `env` (and from process.env) as it is read, so that child processes
 * and worker threads started later do not inherit it. Undefined when unset or empty.
 */
export function takeEnvHsmPin(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const pin = env.KB_HSM_PIN;
  delete env.KB_HSM_PIN;
  delete process.env.KB_HSM_PIN;
  return pin === undefined || pin === '' ? undefined : pin;
}

/**
 * The HSM user PIN: KB_HSM_PIN (taken out of `env`), else the pin file, which must be a regular
 * file (not a symlink: opened with O_NOFOLLOW) not readable by group or others. The checks run
 * on the open descriptor, so the file checked is the file read. Never logged.
 */
export function readHsmPin(cfg: Config, env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = takeEnvHsmPin(env);
  if (fromEnv !== undefined) return fromEnv;
  const file = cfg.hsm.pinFile;
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new ConfigError(
        `hsm.pinFile: ${file} is a symbolic link; refused (point the config at the file itself)`,
      );
    }
    throw new ConfigError(`hsm.pinFile: cannot read ${file} (and KB_HSM_PIN is not set)`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ConfigError(`hsm.pinFile: ${file} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new ConfigError(`hsm.pinFile: ${file} must not be readable by group or others (chmod 600)`);
    }
    const pin = readFileSync(fd, 'utf8').trim();
    if (pin === '') throw new ConfigError(`hsm.pinFile: ${file} is empty`);
    return pin;
  } finally {
    closeSync(fd);
  }
}
