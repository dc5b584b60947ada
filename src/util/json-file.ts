// Reading state files. They are never read through a symbolic link: the state directory belongs to the
// user an engine dropped to, and the next engine opens it as root.

import { closeSync, constants, openSync, readFileSync } from 'node:fs';

/** The text of state file `path`; a symbolic link there is refused (ELOOP), not followed. */
export function readStateFile(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** The parsed content of `path`, or `fallback` when there is no such file; other failures throw. */
export function readJsonFile(path: string, fallback: unknown): unknown {
  try {
    return JSON.parse(readStateFile(path));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return fallback;
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}
