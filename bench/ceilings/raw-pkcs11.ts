/**
 * Raw PKCS#11 ceilings: the calls the HSM layer makes, straight through pkcs11js in a tight loop
 * on a fresh SoftHSM2 token (C_Initialize with CKF_OS_LOCKING_OK, see PLATFORM.md). The unwrap
 * sequence is the HSM layer's (C_UnwrapKey into a scratch session object, read CKA_VALUE,
 * destroy), so "cold cache" daemon numbers can be read as a multiple of it.
 *
 * Usage: node bench/ceilings/raw-pkcs11.ts SPEC.json   (SOFTHSM2_CONF set by the caller)
 */
import pkcs11js from 'pkcs11js';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { measureAsync, measureSync, type LoopBounds } from '../lib/loop-measure.ts';
import type { RunLine } from '../load/load-spec.ts';

const P = pkcs11js;

export interface RawPkcs11Spec {
  readonly module: string;
  readonly tokenLabel: string;
  readonly pin: string;
  readonly runs: number;
  readonly warmupS: number;
  readonly durationS: number;
  readonly maxOps: number;
  /** Worker counts for the async unwrap (one session each). */
  readonly asyncConcurrencies: readonly number[];
}

const spec = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as RawPkcs11Spec;
const p = new pkcs11js.PKCS11();

function emit(scenario: string, concurrency: number, run: number, sample: RunLine['sample']): void {
  const line: RunLine = { type: 'run', scenario, concurrency, run, sample };
  process.stdout.write(JSON.stringify(line) + '\n');
}

function findSlot(label: string): Buffer {
  for (const slot of p.C_GetSlotList(true)) {
    if (p.C_GetTokenInfo(slot).label.trim() === label) return slot;
  }
  throw new Error(`token ${label} not found`);
}

function rootKey(session: Buffer): Buffer {
  return p.C_GenerateKey(session, { mechanism: P.CKM_AES_KEY_GEN }, [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
    { type: P.CKA_VALUE_LEN, value: 32 },
    { type: P.CKA_TOKEN, value: true },
    { type: P.CKA_PRIVATE, value: true },
    { type: P.CKA_SENSITIVE, value: true },
    { type: P.CKA_EXTRACTABLE, value: false },
    { type: P.CKA_WRAP, value: true },
    { type: P.CKA_UNWRAP, value: true },
    { type: P.CKA_ENCRYPT, value: true },
    { type: P.CKA_DECRYPT, value: true },
    { type: P.CKA_LABEL, value: 'bench-root' },
  ]);
}

const scratchTemplate = (value?: Buffer): pkcs11js.Template => [
  { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
  { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
  { type: P.CKA_TOKEN, value: false },
  { type: P.CKA_SENSITIVE, value: false },
  { type: P.CKA_EXTRACTABLE, value: true },
  ...(value === undefined ? [] : [{ type: P.CKA_VALUE, value }]),
];

const KWP = { mechanism: P.CKM_AES_KEY_WRAP_PAD };

async function main(): Promise<void> {
  p.load(spec.module);
  p.C_Initialize({ flags: P.CKF_OS_LOCKING_OK });
  const slot = findSlot(spec.tokenLabel);
  const maxSessions = Math.max(1, ...spec.asyncConcurrencies);
  const sessions = Array.from({ length: maxSessions }, () =>
    p.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION),
  );
  const s0 = sessions[0] as Buffer;
  p.C_Login(s0, P.CKU_USER, spec.pin);
  try {
    const root = rootKey(s0);
    const keyBytes = randomBytes(32);
    const scratch = p.C_CreateObject(s0, scratchTemplate(keyBytes));
    const wrapped = Buffer.from(p.C_WrapKey(s0, KWP, root, scratch, Buffer.alloc(48)));
    p.C_DestroyObject(s0, scratch);

    const wrap = (): void => {
      const tmp = p.C_CreateObject(s0, scratchTemplate(keyBytes));
      p.C_WrapKey(s0, KWP, root, tmp, Buffer.alloc(48));
      p.C_DestroyObject(s0, tmp);
    };
    const unwrap = (s: Buffer): void => {
      const tmp = p.C_UnwrapKey(s, KWP, root, wrapped, scratchTemplate());
      const v = p.C_GetAttributeValue(s, tmp, [{ type: P.CKA_VALUE }])[0]?.value;
      p.C_DestroyObject(s, tmp);
      if (v?.length !== 32) throw new Error('unwrap returned the wrong length');
    };
    const pt = randomBytes(1024);
    const gcm = (): void => {
      const parameter: pkcs11js.AesGCM = {
        type: P.CK_PARAMS_AES_GCM,
        iv: randomBytes(12),
        ivBits: 96,
        tagBits: 128,
      };
      p.C_EncryptInit(s0, { mechanism: P.CKM_AES_GCM, parameter }, root);
      p.C_Encrypt(s0, pt, Buffer.alloc(1024 + 16));
    };
    const bounds = (durationS: number): LoopBounds => ({ durationS, minOps: 50, maxOps: spec.maxOps });
    const sync: [string, () => void][] = [
      ['pkcs11-wrap', wrap],
      ['pkcs11-unwrap', () => unwrap(s0)],
      ['pkcs11-gcm-1k', gcm],
    ];
    for (const [name, fn] of sync) {
      for (let run = 0; run < spec.runs; run++) {
        measureSync(fn, bounds(spec.warmupS));
        emit(name, 1, run, measureSync(fn, bounds(spec.durationS)));
      }
    }
    // The async path the HSM layer takes (libuv pool, one session per worker).
    const unwrapAsync = async (w: number): Promise<void> => {
      const s = sessions[w] as Buffer;
      const tmp = await p.C_UnwrapKeyAsync(s, KWP, root, wrapped, scratchTemplate());
      const v = p.C_GetAttributeValue(s, tmp, [{ type: P.CKA_VALUE }])[0]?.value;
      p.C_DestroyObject(s, tmp);
      if (v?.length !== 32) throw new Error('unwrap returned the wrong length');
    };
    for (const c of spec.asyncConcurrencies) {
      for (let run = 0; run < spec.runs; run++) {
        await measureAsync(unwrapAsync, c, bounds(spec.warmupS));
        emit('pkcs11-unwrap-async', c, run, await measureAsync(unwrapAsync, c, bounds(spec.durationS)));
      }
    }
  } finally {
    for (const s of sessions) p.C_CloseSession(s);
    p.C_Finalize();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stdout.write(JSON.stringify({ type: 'error', message: (err as Error).message }) + '\n');
    process.exit(1);
  },
);
