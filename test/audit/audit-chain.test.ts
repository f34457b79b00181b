// The chain and the verifier: known-answer canonical bytes, then every single-byte edit, every
// deletion, every adjacent swap and every truncation of a real chain is named at the right entry.
import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseEntryLine } from '../../daemon/src/audit/audit-parse.ts';
import { exportCheckpoints } from '../../daemon/src/audit/audit-reader.ts';
import type { ExportedCheckpoint } from '../../daemon/src/audit/audit-reader.ts';
import {
  GENESIS_HASH,
  canonicalBytes,
  chainHash,
  entryLine,
  recordFromInput,
} from '../../daemon/src/audit/audit-record.ts';
import type { AuditEntry, RecordEntry } from '../../daemon/src/audit/audit-record.ts';
import { verifyAuditBytes, verifyAuditFile } from '../../daemon/src/audit/audit-verifier.ts';
import type { VerifyReport } from '../../daemon/src/audit/audit-verifier.ts';
import { createSoftwareSigner } from '../../daemon/src/audit/checkpoint.ts';
import type { CheckpointSigner } from '../../daemon/src/audit/checkpoint.ts';
import { buildChain, lineAt, linesOf, rec } from './audit-fixtures.ts';
import type { LineInfo } from './audit-fixtures.ts';

describe('canonical bytes (known answers, FORMAT.md)', () => {
  const e: RecordEntry = {
    type: 'record',
    seq: 7,
    timeMs: Date.UTC(2026, 0, 2, 3, 4, 5, 678),
    requestId: 'req-1',
    identity: 'spiffe://acme/t1/svc',
    org: 'acme',
    tenant: 't1',
    rpc: 'keybroker.v1.Crypto/Encrypt',
    customer: 'default',
    keyVersion: 3,
    result: 'denied',
    code: 'PERMISSION_DENIED',
    reason: 'no rule',
  };
  const str = (s: string) =>
    Buffer.from(s).length.toString(16).padStart(4, '0') + Buffer.from(s).toString('hex');
  const expected = [
    '01',
    '01', // layout version, type record
    '0000000000000007', // seq
    Date.UTC(2026, 0, 2, 3, 4, 5, 678).toString(16).padStart(16, '0'), // time ms
    str('req-1'),
    str('spiffe://acme/t1/svc'),
    str('acme'),
    str('t1'),
    str('keybroker.v1.Crypto/Encrypt'),
    str('default'),
    'ffff', // keyName absent
    '01',
    '00000003', // keyVersion present, 3
    '02', // result denied
    str('PERMISSION_DENIED'),
    str('no rule'),
  ].join('');
  it('record layout matches the document field by field', () => {
    assert.equal(canonicalBytes(e).toString('hex'), expected);
  });
  it('genesis and first chain hash are pinned', () => {
    assert.equal(
      GENESIS_HASH.toString('hex'),
      '9a2e4f89bfd75eb06ba920f19f57d4d0d020d198aca80fe7fb8868aebda14e6b',
    );
    assert.equal(
      chainHash(GENESIS_HASH, canonicalBytes(e)).toString('hex'),
      '1fad11a79201325e4cb0db74b49ffa39e7f58bc686672c3d5509d4d462d6c164',
    );
  });
  it('absent and empty strings differ', () => {
    const { customer: _c, ...noCustomer } = e;
    assert.notEqual(
      canonicalBytes(noCustomer).toString('hex'),
      canonicalBytes({ ...e, customer: '' }).toString('hex'),
    );
  });
  it('a line round-trips; an equivalent but non-canonical line is refused', () => {
    const line = entryLine(e, 'ab'.repeat(32));
    assert.deepEqual(parseEntryLine(line.slice(0, -1)).entry, e);
    assert.throws(() => parseEntryLine(line.slice(0, -1).replace('"seq":7', '"seq": 7')), /canonical/);
    assert.throws(() => parseEntryLine(line.slice(0, -1).replace('"req-1"', '"req\\u002d1"')), /canonical/);
  });
});

describe('what a record may contain', () => {
  it('reason text is scrubbed of PINs, long hex/base64 and control characters', () => {
    const r = recordFromInput(
      rec(1, {
        reason:
          'bad pin=123456 for key 00112233445566778899aabbccddeeff0011 tok QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\nnext',
      }),
    );
    assert.equal(r.reason, 'bad pin=[redacted] for key [redacted] tok [redacted] next');
  });
  it('fields are cut to their limits and control characters cannot fake a new line', () => {
    const r = recordFromInput(rec(1, { requestId: 'x'.repeat(1000), identity: 'spiffe://a\n{"v":1}' }));
    assert.equal(r.requestId.length, 128);
    assert.ok(!r.identity.includes('\n'));
  });
  it('the input type has no field for key bytes, plaintext, ciphertext or PINs', () => {
    const keys = Object.keys(recordFromInput(rec(5)));
    for (const k of keys)
      assert.doesNotMatch(k, /key$|plain|cipher|pin|secret|data/i, `unexpected field ${k}`);
  });
});

describe('verifier on a real chain', () => {
  let dir: string;
  let chain: Awaited<ReturnType<typeof buildChain>>;
  let anchors: ExportedCheckpoint[];
  // In memory: the same verifier as on files, without ~10,000 temporary files.
  const check = (bytes: Buffer, opts: Parameters<typeof verifyAuditFile>[1] = {}): Promise<VerifyReport> =>
    verifyAuditBytes(bytes, opts);
  const expectBad = (r: VerifyReport, line: LineInfo, what: string) => {
    assert.equal(r.ok, false, `${what}: verify passed`);
    assert.equal(
      r.firstBad?.seq,
      line.seq,
      `${what}: first bad seq ${r.firstBad?.seq} (${r.firstBad?.problem}), want ${line.seq}`,
    );
    assert.equal(
      r.firstBad?.offset,
      line.offset,
      `${what}: offset ${r.firstBad?.offset}, want ${line.offset}`,
    );
  };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kb-audit-chain-'));
    chain = await buildChain(dir, 14, 4);
    anchors = [...(await exportCheckpoints(chain.path)).checkpoints];
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('passes, checking every checkpoint signature', async () => {
    const r = await verifyAuditFile(chain.path, { publicKeys: [chain.signer.publicKeyPem], anchors });
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.equal(r.records, 14);
    assert.equal(r.checkpoints, 4, '3 periodic + 1 on close');
    assert.equal(r.checkpointsVerified, 4);
    assert.deepEqual(r.warnings, []);
    assert.equal(r.entries, chain.lines.length);
  });

  it('names the entry hit by ANY single-byte edit (every byte, xor 0x01; every 7th, xor 0x80)', async () => {
    for (let i = 0; i < chain.bytes.length; i++) {
      for (const mask of i % 7 === 0 ? [0x01, 0x80] : [0x01]) {
        const b = Buffer.from(chain.bytes);
        b[i] = (b[i] ?? 0) ^ mask;
        expectBad(await check(b), lineAt(chain.lines, i), `byte ${i} ^ ${mask}`);
      }
    }
  });

  it('names the entry after ANY deleted line', async () => {
    const ls = chain.lines;
    for (let k = 0; k < ls.length - 1; k++) {
      const l = ls[k] as LineInfo;
      const b = Buffer.concat([chain.bytes.subarray(0, l.offset), chain.bytes.subarray(l.offset + l.length)]);
      expectBad(await check(b), l, `delete seq ${l.seq}`);
    }
    // The last line: nothing after it to disagree, so only an exported checkpoint can tell.
    const last = ls[ls.length - 1] as LineInfo;
    const cut = chain.bytes.subarray(0, last.offset);
    const without = await check(cut);
    assert.equal(without.ok, true);
    assert.match(without.warnings.join(), /does not end with a checkpoint/);
    expectBad(await check(cut, { anchors }), last, 'delete last line, with exported checkpoints');
  });

  it('names the first of ANY two swapped adjacent lines', async () => {
    const ls = chain.lines;
    for (let k = 0; k + 1 < ls.length; k++) {
      const a = ls[k] as LineInfo;
      const c = ls[k + 1] as LineInfo;
      const b = Buffer.concat([
        chain.bytes.subarray(0, a.offset),
        chain.bytes.subarray(c.offset, c.offset + c.length),
        chain.bytes.subarray(a.offset, a.offset + a.length),
        chain.bytes.subarray(c.offset + c.length),
      ]);
      expectBad(await check(b), a, `swap seq ${a.seq} and ${c.seq}`);
    }
  });

  it('names the entry cut by ANY truncation (with exported checkpoints)', async () => {
    for (let len = 0; len < chain.bytes.length; len++) {
      const r = await check(chain.bytes.subarray(0, len), { anchors });
      expectBad(r, lineAt(chain.lines, len), `truncate to ${len}`);
    }
  });

  it('a rewritten chain with recomputed hashes passes the hashes but fails the checkpoint signature', async () => {
    // The attacker edits record 2 and recomputes every later hash (and checkpoint coverage).
    let prev = GENESIS_HASH;
    const out: string[] = [];
    for (const l of chain.lines) {
      const { entry } = parseEntryLine(chain.bytes.toString('utf8', l.offset, l.offset + l.length - 1));
      let e: AuditEntry = entry;
      if (e.type === 'record' && e.seq === 2) e = { ...e, identity: 'spiffe://acme/t1/innocent' };
      if (e.type === 'checkpoint') e = { ...e, coveredHash: prev.toString('hex') };
      prev = chainHash(prev, canonicalBytes(e));
      out.push(entryLine(e, prev.toString('hex')));
    }
    const forged = Buffer.from(out.join(''));
    assert.equal((await check(forged)).ok, true, 'without a public key only the hashes are checked');
    const firstCheckpoint = linesOf(forged).find((l) =>
      forged.toString('utf8', l.offset, l.offset + l.length).includes('"type":"checkpoint"'),
    ) as LineInfo;
    const r = await check(forged, { publicKeys: [chain.signer.publicKeyPem] });
    expectBad(r, firstCheckpoint, 'forged chain');
    assert.match(r.firstBad?.problem ?? '', /signature invalid/);
  });

  it('a checkpoint signed by a key not given is refused', async () => {
    const other = createSoftwareSigner();
    const r = await verifyAuditFile(chain.path, { publicKeys: [other.publicKeyPem] });
    assert.equal(r.ok, false);
    assert.match(r.firstBad?.problem ?? '', /unknown key/);
  });

  it('RSA-PSS (SHA-256, MGF1-SHA-256, 32-byte salt, as a PKCS#11 token signs) checkpoints verify', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
    const signer: CheckpointSigner = {
      alg: 'rsa-pss-sha256-3072',
      publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      sign: async (bytes) =>
        sign('sha256', bytes, { key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }),
    };
    const d = mkdtempSync(join(dir, 'rsa-'));
    const c = await buildChain(d, 5, 2, signer);
    const r = await verifyAuditFile(c.path, { publicKeys: [signer.publicKeyPem] });
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.equal(r.checkpointsVerified, 3);
  });

  it('ML-DSA-65 checkpoints verify too', async () => {
    const d = mkdtempSync(join(dir, 'mldsa-'));
    const c = await buildChain(d, 5, 2, createSoftwareSigner('ml-dsa-65'));
    const r = await verifyAuditFile(c.path, { publicKeys: [c.signer.publicKeyPem] });
    assert.equal(r.ok, true, JSON.stringify(r.firstBad));
    assert.equal(r.checkpointsVerified, 3);
  });
});
