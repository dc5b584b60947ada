// Reading a small JSON state file that may not exist yet.

import { readFileSync } from 'node:fs';

/** The parsed content of `path`, or `fallback` when there is no such file; other failures throw. */
export function readJsonFile(path: string, fallback: unknown): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return fallback;
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}
