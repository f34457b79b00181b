// HSM profiles: every shipped profile validates against the schema and names only mechanisms the
// broker knows; malformed profiles are rejected with a message naming the file and the field.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { KbError } from '../../daemon/src/errors.ts';
import { mechanismCode, requiredMechanisms } from '../../daemon/src/hsm/hsm-doctor.ts';
import { PROFILES_DIR, loadProfile } from '../../daemon/src/hsm/hsm-profile.ts';

const shipped = readdirSync(PROFILES_DIR)
  .filter((f) => f.endsWith('.json') && f !== 'profile.schema.json')
  .map((f) => f.replace(/\.json$/, ''));
const tmp = mkdtempSync(join(tmpdir(), 'kb-profiles-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('shipped HSM profiles', () => {
  it('include the tested softhsm2 and opencryptoki and the five vendor profiles', () => {
    const expected = [
      'aws-cloudhsm',
      'google-cloud-kms',
      'opencryptoki',
      'softhsm2',
      'thales-luna',
      'utimaco',
      'yubihsm2',
    ];
    assert.deepEqual([...shipped].sort(), expected);
  });

  for (const name of shipped) {
    it(`${name}: validates, is named after its file, says what it cannot do in the HSM`, () => {
      const p = loadProfile(name);
      assert.equal(p.name, name);
      assert.ok(p.notInHsm.length > 0, 'notInHsm must not be empty');
      const tested = name === 'softhsm2' || name === 'opencryptoki';
      assert.equal(p.tested, tested, `${name}.tested`);
      if (!tested)
        assert.match(p.notes ?? '', /^UNTESTED: written from /, `${name}.notes must say it is untested`);
      for (const req of requiredMechanisms(p)) {
        assert.notEqual(mechanismCode(req.mechanism), undefined, `${name} requires unknown ${req.mechanism}`);
        assert.ok(req.why.length > 10, `${req.mechanism} needs a reason`);
      }
    });
  }

  it('loads by path as well as by name', () => {
    assert.equal(loadProfile(join(PROFILES_DIR, 'softhsm2.json')).name, 'softhsm2');
  });
});

describe('malformed HSM profiles', () => {
  const base = JSON.parse(readFileSync(join(PROFILES_DIR, 'softhsm2.json'), 'utf8')) as Record<
    string,
    unknown
  >;
  const cases: [string, Record<string, unknown> | string, RegExp][] = [
    ['missing wrap', { ...base, wrap: undefined }, /must have required property 'wrap'/],
    [
      'unknown wrap mechanism',
      { ...base, wrap: 'aes-ecb' },
      /\/wrap must be equal to one of the allowed values/,
    ],
    ['unknown top-level field', { ...base, wrapMechanism: 'x' }, /must NOT have additional properties/],
    ['pool size 0', { ...base, pool: { size: 0, maxWaiters: 1 } }, /\/pool\/size must be >= 1/],
    [
      'empty module path list',
      { ...base, module: { paths: [] } },
      /\/module\/paths must NOT have fewer than 1 items/,
    ],
    ['empty token selection', { ...base, token: {} }, /\/token must NOT have fewer than 1 properties/],
    [
      'bad quirk attribute',
      { ...base, quirks: { unwrapTemplateOmit: ['EXTRACTABLE'] } },
      /unwrapTemplateOmit\/0 must match/,
    ],
    [
      'bad extra mechanism',
      { ...base, extraMechanisms: [{ mechanism: 'AES', why: 'x' }] },
      /extraMechanisms\/0\/mechanism/,
    ],
    ['RSA-PSS without its mechanism', { ...base, signing: ['rsa-pss-sha256-3072'] }, /needs rsaPssMechanism/],
    ['not JSON', '{"name": ', /is not JSON/],
  ];
  for (const [what, content, message] of cases) {
    it(`rejects a profile with ${what}`, () => {
      const file = join(tmp, `${what.replace(/\W+/g, '-')}.json`);
      writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
      assert.throws(
        () => loadProfile(file),
        (err: unknown) =>
          err instanceof KbError &&
          err.code === 'INVALID_ARGUMENT' &&
          message.test(err.message) &&
          err.message.includes(file),
        `loadProfile(${what}) should throw INVALID_ARGUMENT matching ${message}`,
      );
    });
  }

  for (const name of ['no-such-profile', '../etc/passwd', 'UPPER']) {
    it(`rejects the profile name ${JSON.stringify(name)}`, () => {
      assert.throws(
        () => loadProfile(name),
        (err: unknown) => err instanceof KbError && err.code === 'INVALID_ARGUMENT',
      );
    });
  }
});
