// Writes daemon/src/wire/data-plane-kats.json from the shared Wycheproof vectors (chosen tcIds,
// fields unmodified) and the format-v1 golden ciphertext. test/wire/data-plane-self-test.test.ts
// checks the shipped file still equals what this derives.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { dataPlaneKatsFromSources } from './data-plane-kat-sources.ts';

writeFileSync(
  resolve(import.meta.dirname, '../../daemon/src/wire/data-plane-kats.json'),
  JSON.stringify(dataPlaneKatsFromSources(), null, 2) + '\n',
);
