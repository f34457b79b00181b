/**
 * Every keybroker command shown in README.md and docs/*.md parses against the real CLI.
 *
 * Fenced `sh`/`bash`/`shell` and unlabelled blocks are read line by line (backslash continuations joined,
 * comments dropped, split at pipes, `&&`, `||` and `;`); each segment that starts with
 * `keybroker`, `daemon/bin/keybroker` or `/usr/bin/keybroker` is parsed by the CLI's own parser
 * (`buildCli` of `daemon/src/cli/main.ts`), in this process: the command path, positionals,
 * required options, choices and unknown options (yargs strict mode) are validated, then a
 * middleware stops the parse before any handler runs. A block preceded by
 * `<!-- illustrative -->` (a synopsis with alternatives or placeholders) is skipped.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../support/softhsm-token.ts';
import { buildCli } from '../../daemon/src/cli/main.ts';

export interface ShownCommand {
  file: string;
  line: number;
  args: string[];
}

const FENCE_LANGS = new Set(['', 'sh', 'bash', 'shell']);
const ILLUSTRATIVE = '<!-- illustrative -->';
const CLI_NAMES = new Set(['keybroker', 'daemon/bin/keybroker', '/usr/bin/keybroker']);

/** Shell words of one line, quotes removed; operators (`|`, `&&`, `||`, `;`) are their own words. */
export function shellWords(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "'" || c === '"') {
      const end = line.indexOf(c, i + 1);
      const stop = end < 0 ? line.length : end;
      cur += line.slice(i + 1, stop);
      has = true;
      i = stop;
    } else if (c === ' ' || c === '\t') {
      if (has) out.push(cur);
      cur = '';
      has = false;
    } else if (c === '#' && !has) {
      break; // a comment
    } else if (c === '|' || c === ';' || (c === '&' && line[i + 1] === '&')) {
      if (has) out.push(cur);
      const op = (c === '|' || c === '&') && line[i + 1] === c ? c + c : c;
      out.push(op);
      i += op.length - 1;
      cur = '';
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

/** Drop redirections (`> f`, `2>&1`, `<f`) and leading `VAR=value` words from one simple command. */
function commandArgs(words: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < words.length; i++) {
    const w = words[i]!;
    if (/^\d?(>>?|<)(&\d)?$/.test(w)) {
      if (!/&\d$/.test(w)) i++; // the target word follows
      continue;
    }
    if (/^\d?(>>?|<)/.test(w)) continue; // `>file`, `2>/dev/null`, `2>&1`
    if (out.length === 0 && /^[A-Z_][A-Z0-9_]*=/.test(w)) continue;
    out.push(w);
  }
  return out;
}

/** The keybroker commands a Markdown text shows outside illustrative blocks. */
export function shownCommands(file: string, text: string): ShownCommand[] {
  const lines = text.split('\n');
  const out: ShownCommand[] = [];
  let inBlock = false;
  let skip = false;
  let lastNonEmpty = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const fence = /^\s*```\s*([A-Za-z]*)/.exec(line);
    if (fence) {
      if (inBlock) {
        inBlock = false;
      } else {
        inBlock = true;
        skip = !FENCE_LANGS.has(fence[1]!) || lastNonEmpty.trim() === ILLUSTRATIVE;
      }
      lastNonEmpty = line;
      continue;
    }
    if (line.trim() !== '') lastNonEmpty = line;
    if (!inBlock || skip) continue;
    let joined = line;
    const start = i + 1;
    while (joined.trimEnd().endsWith('\\') && i + 1 < lines.length) {
      joined = joined.trimEnd().slice(0, -1) + ' ' + lines[++i]!;
    }
    let segment: string[] = [];
    for (const w of [...shellWords(joined), '|']) {
      if (w === '|' || w === '||' || w === '&&' || w === ';') {
        const args = commandArgs(segment);
        if (args.length > 0 && CLI_NAMES.has(args[0]!)) out.push({ file, line: start, args: args.slice(1) });
        segment = [];
      } else {
        segment.push(w);
      }
    }
  }
  return out;
}

function docFiles(): string[] {
  const docs = readdirSync(join(REPO_ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs.sort()];
}

/** Thrown by the test's middleware once a command line has parsed and validated. */
class Parsed extends Error {}
/** Thrown by the test's fail handler (which runs before the CLI's own, exiting one). */
class Refused extends Error {}

/** Parse `args` as the CLI would, without running the command: 0 when it parses, else 2. */
async function dryRun(args: string[]): Promise<{ code: number; stderr: string }> {
  try {
    await buildCli(args)
      .exitProcess(false)
      .middleware(() => {
        throw new Parsed();
      })
      .fail((msg, err) => {
        throw err instanceof Parsed ? err : new Refused(msg ?? err?.message ?? 'refused');
      })
      .parseAsync();
  } catch (err) {
    if (err instanceof Parsed) return { code: 0, stderr: '' };
    if (err instanceof Refused) return { code: 2, stderr: err.message };
    throw err;
  }
  return { code: 1, stderr: 'the parse ran the command (the dry-run middleware did not stop it)' };
}

/** One parse at a time: yargs instances share the command modules. */
async function serially<T, R>(items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (const item of items) out.push(await fn(item));
  return out;
}

describe('the extractor', () => {
  const cases: { name: string; md: string; want: string[][] }[] = [
    {
      name: 'plain, prefixed, piped and continued commands',
      md: [
        '```sh',
        'keybroker init --data-dir .data   # a comment',
        "echo -n 'x y' | daemon/bin/keybroker encrypt --aad 'a b' > ct.bin",
        'daemon/bin/keybroker keys sign k \\',
        '  msg.txt -o sig.bin',
        'KB_LISTEN_PORT=0 keybroker serve --config c.json 2>&1 && keybroker admin keys',
        '```',
      ].join('\n'),
      want: [
        ['init', '--data-dir', '.data'],
        ['encrypt', '--aad', 'a b'],
        ['keys', 'sign', 'k', 'msg.txt', '-o', 'sig.bin'],
        ['serve', '--config', 'c.json'],
        ['admin', 'keys'],
      ],
    },
    {
      name: 'an illustrative block and other languages are skipped',
      md: [
        '<!-- illustrative -->',
        '```sh',
        'keybroker admin org list|create',
        '```',
        '```ts',
        'keybroker x',
        '```',
      ].join('\n'),
      want: [],
    },
    {
      name: 'other programs are not commands',
      md: ['```bash', 'openssl version', 'node -e "keybroker"', '```'].join('\n'),
      want: [],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(
        shownCommands('x.md', c.md).map((s) => s.args),
        c.want,
      );
    });
  }
});

describe('every command shown in README.md and docs/*.md parses', () => {
  test('the dry run refuses what the CLI refuses', async () => {
    const bad: { name: string; args: string[] }[] = [
      { name: 'unknown subcommand', args: ['keys', 'crate', 'k'] },
      { name: 'unknown option', args: ['keys', 'create', 'k', '--alg', 'ml-dsa-65', '--bogus', '1'] },
      { name: 'missing required option', args: ['keys', 'create', 'k'] },
      { name: 'missing positional', args: ['admin', 'tenant', 'create', 'acme'] },
      { name: 'bad choice', args: ['keys', 'create', 'k', '--alg', 'rsa'] },
    ];
    const results = await serially(bad, (b) => dryRun(b.args));
    bad.forEach((b, i) => assert.equal(results[i]!.code, 2, `${b.name}: ${b.args.join(' ')}`));
    assert.equal((await dryRun(['keys', 'create', 'k', '--alg', 'ml-dsa-65'])).code, 0);
  });

  test('README.md and docs/*.md', async () => {
    const shown = docFiles().flatMap((f) => shownCommands(f, readFileSync(join(REPO_ROOT, f), 'utf8')));
    assert.ok(shown.length >= 80, `expected the docs to show commands, found ${shown.length}`);
    assert.ok(
      shown.some((s) => s.file === 'README.md' && s.args[0] === 'keys'),
      'the README tour shows keys commands',
    );
    const results = await serially(shown, (s) => dryRun(s.args));
    const failures = shown
      .map((s, i) => ({ s, r: results[i]! }))
      .filter(({ r }) => r.code !== 0)
      .map(
        ({ s, r }) =>
          `${s.file}:${s.line}: keybroker ${s.args.join(' ')}\n    ${r.stderr.trim().split('\n').pop()}`,
      );
    assert.deepEqual(
      failures,
      [],
      `commands that do not parse (fix them or mark the block ${ILLUSTRATIVE}):`,
    );
  });
});
