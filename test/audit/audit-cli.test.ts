// `keybroker audit verify|tail|query|export-checkpoints` as an operator runs them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseSince } from '../../daemon/src/cli/audit-command.ts';
import { REPO_ROOT } from '../support/softhsm-token.ts';
import { buildChain } from './audit-fixtures.ts';

const MAIN = join(REPO_ROOT, 'daemon/src/cli/main.ts');
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [MAIN, 'audit', ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('keybroker audit CLI', () => {
  let dir: string;
  let chain: Awaited<ReturnType<typeof buildChain>>;
  let pem: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kb-audit-cli-'));
    chain = await buildChain(dir, 20, 8);
    pem = join(dir, 'key.pem');
    writeFileSync(pem, chain.signer.publicKeyPem);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('verify: exit 0 on a good chain, with signatures checked', () => {
    const r = cli('verify', '--file', chain.path, '--public-key', pem);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^OK: 23 entries \(20 records, 3 checkpoints, 3 signatures verified\)/);
  });

  it('verify: exit 1 naming seq and byte offset of the first bad record', () => {
    const b = Buffer.from(chain.bytes);
    const l = chain.lines[6];
    assert.ok(l);
    b[l.offset + 30] = (b[l.offset + 30] ?? 0) ^ 0x02;
    const bad = join(dir, 'bad.log');
    writeFileSync(bad, b);
    const r = cli('verify', '--file', bad);
    assert.equal(r.code, 1, r.out + r.err);
    assert.match(r.out, new RegExp(`^FAILED at seq ${l.seq}, byte offset ${l.offset}: `));
    const j = cli('verify', '--file', bad, '--json');
    assert.equal(j.code, 1);
    const rep = JSON.parse(j.out) as { ok: boolean; firstBad: { seq: number; offset: number } };
    assert.deepEqual([rep.ok, rep.firstBad.seq, rep.firstBad.offset], [false, l.seq, l.offset]);
  });

  it('export-checkpoints + verify --checkpoints detects a file cut at a line boundary', () => {
    const cps = join(dir, 'cps.json');
    assert.equal(cli('export-checkpoints', '--file', chain.path, '--out', cps).code, 0);
    const last = chain.lines[chain.lines.length - 1];
    assert.ok(last);
    const cut = join(dir, 'cut.log');
    writeFileSync(cut, chain.bytes.subarray(0, last.offset));
    const unsigned = cli('verify', '--file', cut, '--public-key', pem);
    assert.equal(unsigned.code, 1, 'the cut leaves an unsigned tail: an error by default');
    assert.match(unsigned.out, /unsigned tail: entries 19\.\.22/);
    assert.equal(
      cli('verify', '--file', cut, '--allow-unsigned-tail').code,
      0,
      'with the unsigned tail allowed and no anchors, a clean cut is not visible',
    );
    const r = cli('verify', '--file', cut, '--checkpoints', cps);
    assert.equal(r.code, 1);
    assert.match(r.out, /file truncated/);
    assert.equal((JSON.parse(readFileSync(cps, 'utf8')) as { checkpoints: unknown[] }).checkpoints.length, 3);
  });

  it('tail -n prints the last entries as JSON lines', () => {
    const r = cli('tail', '--file', chain.path, '-n', '2');
    assert.equal(r.code, 0, r.err);
    const lines = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq: number });
    assert.deepEqual(
      lines.map((l) => l.seq),
      [22, 23],
    );
  });

  it('query filters by tenant, rpc, result and since', () => {
    const r = cli(
      'query',
      '--file',
      chain.path,
      '--tenant',
      't1',
      '--rpc',
      'Encrypt',
      '--result',
      'ok',
      '--since',
      '2026-01-01T00:00:00Z',
    );
    assert.equal(r.code, 0, r.err);
    const recs = r.out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { tenant: string; rpc: string; result: string });
    assert.ok(recs.length > 0);
    for (const x of recs)
      assert.deepEqual([x.tenant, x.rpc, x.result], ['t1', 'keybroker.v1.Crypto/Encrypt', 'ok']);
    const none = cli('query', '--file', chain.path, '--since', '2099-01-01T00:00:00Z');
    assert.equal(none.out, '');
  });

  it('usage errors exit 2', () => {
    assert.equal(cli('verify').code, 2);
    assert.equal(cli('query', '--file', chain.path, '--result', 'maybe').code, 2);
  });

  it('--since accepts durations', () => {
    assert.equal(parseSince('15m', 1_000_000_000), 1_000_000_000 - 900_000);
    assert.throws(() => parseSince('yesterday'), /--since/);
  });
});
