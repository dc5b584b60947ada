// State files are never written or read through a symbolic link a user put in the state directory.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { writeFileAtomic } from '../../src/util/atomic-file.js';
import { readJsonFile, readStateFile } from '../../src/util/json-file.js';

const dir = mkdtempSync(join(tmpdir(), 'softnet-state-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a link at the temp file name is removed, not written through', () => {
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'untouched');
  const path = join(dir, 'leases.json');
  symlinkSync(victim, `${path}.tmp-${process.pid}`);
  writeFileAtomic(path, '{"version":1}');
  assert.equal(readFileSync(victim, 'utf8'), 'untouched');
  assert.equal(readStateFile(path), '{"version":1}');
});

test('a state file that is a link is refused, not read', () => {
  const secret = join(dir, 'secret');
  writeFileSync(secret, '{"a":1}');
  const path = join(dir, 'attachments.json');
  symlinkSync(secret, path);
  assert.throws(() => readStateFile(path), { code: 'ELOOP' });
  assert.throws(() => readJsonFile(path, null), /ELOOP|symbolic links/);
  assert.equal(readJsonFile(join(dir, 'none.json'), 'fallback'), 'fallback');
});
