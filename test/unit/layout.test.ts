// The layout reads downward: a frame's way goes port -> pipeline -> policy -> services or nat -> port, and
// the engine sits above all of them. No module below the engine may import from src/engine/: what both
// need (a network, an attachment, a bridged LAN) lives in src/net/.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));
const BELOW_ENGINE = [
  'wire',
  'ports',
  'pipeline',
  'policy',
  'services',
  'nat',
  'net',
  'capture',
  'stats',
  'util',
];

/** The module specifiers a TypeScript source imports, statically or dynamically. */
function importsOf(source: string): string[] {
  const specs: string[] = [];
  for (const m of source.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm))
    specs.push(m[1]);
  return specs;
}

/** The files under `folder` (of src/) that import from the engine, with the import. */
function reachingUp(folder: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(join(SRC, folder), { recursive: true }) as string[]) {
    if (!name.endsWith('.ts')) continue;
    for (const spec of importsOf(readFileSync(join(SRC, folder, name), 'utf8')))
      if (/(^|\/)engine\//.test(spec)) found.push(`src/${folder}/${name}: ${spec}`);
  }
  return found;
}

test('the import finder sees static, multi-line, type-only, side-effect and dynamic imports', () => {
  const source = [
    "import { a } from '../engine/a.js';",
    'import {',
    '  type B,',
    "} from '../engine/b.js';",
    "import type { C } from '../net/c.js';",
    "import '../engine/side.js';",
    "const d = await import('../engine/d.js');",
    "export { e } from '../engine/e.js';",
  ].join('\n');
  assert.deepEqual(importsOf(source), [
    '../engine/a.js',
    '../engine/b.js',
    '../net/c.js',
    '../engine/side.js',
    '../engine/d.js',
    '../engine/e.js',
  ]);
});

test('nothing under src/pipeline imports from src/engine', () => {
  assert.deepEqual(reachingUp('pipeline'), []);
});

test('no other folder below the engine imports from it either', () => {
  assert.deepEqual(BELOW_ENGINE.flatMap(reachingUp), []);
});
