/**
 * `npm run build` (also run by `npm pack` through `prepare`): copies the repository's protos into
 * proto/ so the package is self-contained, then compiles src/ to dist/ (JavaScript + declarations).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';

const pkg = resolve(import.meta.dirname, '..');
const repoProtos = resolve(pkg, '../../proto/keybroker');
rmSync(resolve(pkg, 'dist'), { recursive: true, force: true });
if (existsSync(repoProtos)) {
  rmSync(resolve(pkg, 'proto'), { recursive: true, force: true });
  cpSync(repoProtos, resolve(pkg, 'proto/keybroker'), { recursive: true, filter: (f) => !f.endsWith('.md') });
} else if (!existsSync(resolve(pkg, 'proto/keybroker/v1/crypto.proto'))) {
  throw new Error('no protos: build inside the keybroker repository');
}
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', resolve(pkg, 'tsconfig.build.json')], { stdio: 'inherit' });
process.stdout.write('built dist/ and proto/\n');
