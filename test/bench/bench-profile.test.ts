import assert from 'node:assert/strict';
import { test } from 'node:test';
import { summarizeProfile } from '../../bench/tools/profile-summary.ts';

test('summarizeProfile adds self time per function and per file', () => {
  const frame = (functionName: string, url: string) => ({ functionName, url, lineNumber: 9 });
  const s = summarizeProfile({
    nodes: [
      { id: 1, callFrame: frame('(root)', '') },
      { id: 2, callFrame: frame('seal', 'file:///work/main/daemon/src/keys/data-plane.ts') },
      { id: 3, callFrame: frame('open', 'file:///work/main/daemon/src/keys/data-plane.ts') },
      {
        id: 4,
        callFrame: frame('handle', 'file:///work/main/node_modules/@grpc/grpc-js/build/src/server.js'),
      },
    ],
    samples: [2, 2, 3, 4, 1],
    timeDeltas: [100, 100, 50, 25, 25],
  });
  assert.equal(s.totalUs, 300);
  assert.equal(s.byFile.get('daemon/src/keys/data-plane.ts'), 250, JSON.stringify([...s.byFile]));
  assert.equal(s.byFile.get('node_modules/@grpc/grpc-js/build/src/server.js'), 25);
  assert.equal(
    s.byFunction.get('seal daemon/src/keys/data-plane.ts:10'),
    200,
    JSON.stringify([...s.byFunction]),
  );
});
