/**
 * Worker-thread side of HsmWorker (see hsm-worker.ts for the design and its numbers): runs each
 * batch of jobs (AES-GCM, ECDSA) with sync C_*Init + C_Encrypt/C_Decrypt/C_Sign on this thread's
 * own session.
 * Sync is the point here: this thread is not the event loop, and a batch of back-to-back calls
 * avoids the per-call thread hand-off that capped C_EncryptAsync.
 *
 * The module is the process's: `load` shares the main thread's dlopen and C_Initialize (this thread
 * never calls C_Initialize or C_Finalize; if the module is not initialised the calls fail with
 * CKR_CRYPTOKI_NOT_INITIALIZED, which the main thread treats as device loss). Login state and
 * object handles are per process, so the main thread's key handles are valid here.
 */
import { parentPort, workerData } from 'node:worker_threads';
import pkcs11js from 'pkcs11js';
import { JOB_HEADER, JOB_OPS } from './hsm-worker.ts';
import type { HsmJob, JobFailure, WorkerInit, WorkerReply, WorkerRequest } from './hsm-worker.ts';
import { Pkcs11Error, toPkcs11Error } from './pkcs11-error.ts';

const P = pkcs11js;
const GCM_TAG = 16;
const ECDSA_P256_SIG = 64;

const port = parentPort;
if (!port) throw new Error('hsm-worker-thread.ts must run in a worker thread');
const init = workerData as WorkerInit;
const p = new P.PKCS11();
p.load(init.modulePath);

const INIT_FN = { encrypt: 'C_EncryptInit', decrypt: 'C_DecryptInit', 'sign-ecdsa': 'C_SignInit' } as const;
const CALL_FN = { encrypt: 'C_Encrypt', decrypt: 'C_Decrypt', 'sign-ecdsa': 'C_Sign' } as const;

let session: Buffer | undefined;
let sessionGen = 0;

function openSession(gen: number, slot: Uint8Array): Buffer {
  if (session && sessionGen === gen) return session;
  closeSession();
  try {
    session = p.C_OpenSession(Buffer.from(slot), P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  } catch (err) {
    throw toPkcs11Error(err, 'C_OpenSession');
  }
  sessionGen = gen;
  return session;
}

function closeSession(): void {
  const s = session;
  session = undefined;
  sessionGen = 0;
  if (!s) return;
  try {
    p.C_CloseSession(s);
  } catch (err) {
    // The device may be gone or the module already re-initialised: the session is dead either way.
    void err;
  }
}

/**
 * *Init succeeded and the call failed: close the operation with its *Final. Most failures already
 * ended it (OPERATION_NOT_INITIALIZED); any other answer means the session is replaced.
 */
function endOperation(s: Buffer, op: HsmJob['op']): void {
  const scratch = Buffer.alloc(1024);
  try {
    if (op === 'encrypt') p.C_EncryptFinal(s, scratch);
    else if (op === 'decrypt') p.C_DecryptFinal(s, scratch);
    else p.C_SignFinal(s, scratch);
  } catch (err) {
    const e = toPkcs11Error(err, `${INIT_FN[op].slice(0, -4)}Final`);
    if (!(e instanceof Pkcs11Error && e.ckr === 'CKR_OPERATION_NOT_INITIALIZED')) closeSession();
  }
}

interface Job {
  readonly op: HsmJob['op'];
  readonly key: Buffer;
  readonly iv: Buffer;
  readonly aad: Buffer;
  readonly data: Buffer;
}

/** Views (no copies) of the jobs packed in `buf` (layout in hsm-worker.ts). */
function unpack(buf: ArrayBuffer, n: number): Job[] {
  const view = new DataView(buf);
  const jobs: Job[] = [];
  let off = 0;
  const take = (len: number): Buffer => {
    const b = Buffer.from(buf, off, len);
    off += len;
    return b;
  };
  for (let i = 0; i < n; i++) {
    const op = JOB_OPS[view.getUint32(off, true)];
    if (op === undefined) throw new Error('malformed batch');
    const lens = [4, 8, 12, 16].map((d) => view.getUint32(off + d, true));
    off += JOB_HEADER;
    const [key, iv, aad, data] = lens.map((len) => take(len));
    if (!key || !iv || !aad || !data) throw new Error('malformed batch');
    jobs.push({ op, key, iv, aad, data });
  }
  return jobs;
}

/** Output bytes a job may need: GCM adds the 16-byte tag, decrypt removes it, P-256 r ‖ s is 64. */
function outCap(j: Job): number {
  if (j.op === 'encrypt') return j.data.length + GCM_TAG;
  return j.op === 'decrypt' ? j.data.length : ECDSA_P256_SIG;
}

/** Run one job (*Init, then the one-shot call; its *Final on failure), writing into `out`. */
function runJob(s: Buffer, j: Job, out: Buffer): number {
  // pkcs11js passes an empty buffer as NULL, which Cryptoki reads as a length query that leaves
  // the operation active: never start one (the Hsm boundary refuses these inputs anyway).
  if (j.data.length === 0) throw new Error('empty input');
  try {
    if (j.op === 'sign-ecdsa') p.C_SignInit(s, { mechanism: P.CKM_ECDSA }, j.key);
    else {
      const parameter: pkcs11js.AesGCM = {
        type: P.CK_PARAMS_AES_GCM,
        iv: j.iv,
        aad: j.aad,
        ivBits: 96,
        tagBits: 128,
      };
      const mech = { mechanism: P.CKM_AES_GCM, parameter };
      if (j.op === 'encrypt') p.C_EncryptInit(s, mech, j.key);
      else p.C_DecryptInit(s, mech, j.key);
    }
  } catch (err) {
    throw toPkcs11Error(err, INIT_FN[j.op]);
  }
  try {
    if (j.op === 'encrypt') return p.C_Encrypt(s, j.data, out).length;
    if (j.op === 'decrypt') return p.C_Decrypt(s, j.data, out).length;
    return p.C_Sign(s, j.data, out).length;
  } catch (err) {
    endOperation(s, j.op);
    throw toPkcs11Error(err, CALL_FN[j.op]);
  }
}

function failure(i: number, err: unknown): JobFailure {
  if (err instanceof Pkcs11Error) return { i, ckr: err.ckr, code: err.code, fn: err.fn };
  return { i, message: err instanceof Error ? err.message : String(err) };
}

function runBatch(m: Extract<WorkerRequest, { t: 'batch' }>): WorkerReply {
  const jobs = unpack(m.buf, m.n);
  // Outputs go straight into the reply buffer.
  let size = jobs.length * 8;
  for (const j of jobs) size += outCap(j);
  const buf = new ArrayBuffer(size);
  const index = new DataView(buf);
  const failures: JobFailure[] = [];
  let off = jobs.length * 8;
  for (const [i, j] of jobs.entries()) {
    const cap = outCap(j);
    try {
      const len = runJob(openSession(m.gen, m.slot), j, Buffer.from(buf, off, cap));
      index.setUint32(i * 8, off, true);
      index.setUint32(i * 8 + 4, len, true);
    } catch (err) {
      failures.push(failure(i, err));
    }
    off += cap;
  }
  return { t: 'done', id: m.id, buf, failures };
}

port.on('message', (m: WorkerRequest) => {
  if (m.t === 'close') {
    closeSession();
    port.postMessage({ t: 'closed', id: m.id } satisfies WorkerReply);
    return;
  }
  const reply = runBatch(m);
  // The request held the callers' plaintexts (encrypt, sign): zero it before it goes to the GC.
  new Uint8Array(m.buf).fill(0);
  port.postMessage(reply, reply.t === 'done' ? [reply.buf] : []);
});
