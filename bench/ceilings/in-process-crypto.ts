/**
 * In-process crypto ceilings: what the daemon's data path costs with no gRPC, no process hop and
 * no hierarchy — Node's AES-256-GCM with an HKDF-SHA256 per-message DEK, laid out as wire format
 * v1 does it (32-byte salt, 64 bytes of HKDF output for DEK ‖ key commitment, 12-byte nonce) —
 * and AES-256-GCM over a 64 MiB stream in 64 KiB chunks. Run pinned to the server's core.
 *
 * Usage: node bench/ceilings/in-process-crypto.ts SPEC.json   (prints RunLine JSON per run)
 */
import {
  createCipheriv,
  createHmac,
  createDecipheriv,
  createSecretKey,
  decapsulate,
  encapsulate,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';
import { readFileSync } from 'node:fs';
import { measureSync, type LoopBounds } from '../lib/loop-measure.ts';
import type { RunLine } from '../load/load-spec.ts';

/** One in-process scenario. */
export type InProcessOp =
  | { readonly name: string; readonly kind: 'encrypt' | 'decrypt' | 'rewrap'; readonly bytes: number }
  | { readonly name: string; readonly kind: 'data-key' }
  /** Node's native ML-KEM-768 / ML-DSA-65 (OpenSSL 3.5), the Keys service's default engine. */
  | {
      readonly name: string;
      readonly kind: 'mlkem768-encapsulate' | 'mlkem768-decapsulate' | 'mldsa65-sign' | 'mldsa65-verify';
    }
  /** A blind-index token as the daemon computes it: NFKC, lowercase, trim, HMAC-SHA256. */
  | { readonly name: string; readonly kind: 'blind-index-hmac' }
  | {
      readonly name: string;
      readonly kind: 'stream';
      readonly totalBytes: number;
      readonly chunkBytes: number;
    };

export interface InProcessSpec {
  readonly ops: readonly InProcessOp[];
  readonly runs: number;
  readonly warmupS: number;
  readonly durationS: number;
  readonly maxOps: number;
}

// Keys go in as KeyObjects, as wire/envelope-v1.ts passes them (raw bytes cost Node a thrown
// internal error per call), so this ceiling is the daemon's own crypto path.
const cek = createSecretKey(randomBytes(32));
const INFO = Buffer.from('keybroker dek v1 bench-prefix-of-about-forty-bytes......');
const AAD = Buffer.from('bench aad');

interface Sealed {
  salt: Buffer;
  nonce: Buffer;
  body: Buffer;
  tag: Buffer;
}

function seal(plaintext: Buffer): Sealed {
  const salt = randomBytes(32);
  const okm = Buffer.from(hkdfSync('sha256', cek, salt, INFO, 64));
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', createSecretKey(okm.subarray(0, 32)), nonce);
  c.setAAD(AAD);
  const body = Buffer.concat([c.update(plaintext), c.final()]);
  okm.fill(0);
  return { salt, nonce, body, tag: c.getAuthTag() };
}

function open(s: Sealed): Buffer {
  const okm = Buffer.from(hkdfSync('sha256', cek, s.salt, INFO, 64));
  const d = createDecipheriv('aes-256-gcm', createSecretKey(okm.subarray(0, 32)), s.nonce);
  d.setAAD(AAD);
  d.setAuthTag(s.tag);
  const pt = Buffer.concat([d.update(s.body), d.final()]);
  okm.fill(0);
  return pt;
}

/** One call of `op`, prepared once (so data generation is outside the timed loop). */
function prepare(op: InProcessOp): { fn: (i: number) => void; unitsPerCall: number } {
  switch (op.kind) {
    case 'encrypt': {
      const pt = randomBytes(op.bytes);
      return { fn: () => void seal(pt), unitsPerCall: 1 };
    }
    case 'decrypt':
    case 'rewrap': {
      const pool = Array.from({ length: 64 }, () => seal(randomBytes(op.bytes)));
      const rewrap = op.kind === 'rewrap';
      return {
        fn: (i) => {
          const pt = open(pool[i % pool.length] as Sealed);
          if (rewrap) seal(pt);
        },
        unitsPerCall: 1,
      };
    }
    case 'mlkem768-encapsulate':
    case 'mlkem768-decapsulate': {
      const { publicKey, privateKey } = generateKeyPairSync('ml-kem-768');
      const enc = encapsulate(publicKey);
      return op.kind === 'mlkem768-encapsulate'
        ? { fn: () => void encapsulate(publicKey), unitsPerCall: 1 }
        : { fn: () => void decapsulate(privateKey, enc.ciphertext), unitsPerCall: 1 };
    }
    case 'mldsa65-sign':
    case 'mldsa65-verify': {
      const { publicKey, privateKey } = generateKeyPairSync('ml-dsa-65');
      const msg = randomBytes(256);
      const sig = sign(null, msg, privateKey);
      return op.kind === 'mldsa65-sign'
        ? { fn: () => void sign(null, msg, privateKey), unitsPerCall: 1 }
        : {
            fn: () => {
              if (!verify(null, msg, publicKey, sig)) throw new Error('ML-DSA-65 verify failed');
            },
            unitsPerCall: 1,
          };
    }
    case 'blind-index-hmac': {
      // The same values as bench/load/blind-index-ops.ts, one key as a KeyObject (as the daemon).
      const key = createSecretKey(randomBytes(32));
      const values = Array.from({ length: 4096 }, (_, i) => Buffer.from(` User.${i}@Example.COM `));
      return {
        fn: (i) => {
          const s = (values[i % values.length] as Buffer)
            .toString('utf8')
            .normalize('NFKC')
            .toLowerCase()
            .trim();
          createHmac('sha256', key).update(Buffer.from(s, 'utf8')).digest();
        },
        unitsPerCall: 1,
      };
    }
    case 'data-key':
      // A data key is 32 random bytes sealed under a derived key, like a 32-byte encrypt.
      return { fn: () => void seal(randomBytes(32)), unitsPerCall: 1 };
    case 'stream': {
      const chunk = randomBytes(op.chunkBytes);
      const n = Math.ceil(op.totalBytes / op.chunkBytes);
      const key = randomBytes(32);
      const prefix = randomBytes(7);
      return {
        fn: () => {
          for (let i = 0; i < n; i++) {
            const nonce = Buffer.alloc(12);
            prefix.copy(nonce, 0);
            nonce.writeUInt32BE(i, 7);
            nonce[11] = i === n - 1 ? 1 : 0;
            const c = createCipheriv('aes-256-gcm', key, nonce);
            c.setAAD(AAD);
            c.update(chunk);
            c.final();
            c.getAuthTag();
          }
        },
        unitsPerCall: op.totalBytes / (1024 * 1024),
      };
    }
  }
}

function main(): void {
  const path = process.argv[2];
  if (path === undefined) throw new Error('usage: in-process-crypto.ts SPEC.json');
  const spec = JSON.parse(readFileSync(path, 'utf8')) as InProcessSpec;
  for (const op of spec.ops) {
    const { fn, unitsPerCall } = prepare(op);
    const bounds = (durationS: number): LoopBounds => ({
      durationS,
      minOps: op.kind === 'stream' ? 2 : 50,
      maxOps: op.kind === 'stream' ? 1000 : spec.maxOps,
      unitsPerCall,
    });
    for (let run = 0; run < spec.runs; run++) {
      measureSync(fn, bounds(spec.warmupS));
      const sample = measureSync(fn, bounds(spec.durationS));
      const line: RunLine = { type: 'run', scenario: op.name, concurrency: 1, run, sample };
      process.stdout.write(JSON.stringify(line) + '\n');
    }
  }
}

try {
  main();
} catch (err) {
  process.stdout.write(JSON.stringify({ type: 'error', message: (err as Error).message }) + '\n');
  process.exit(1);
}
