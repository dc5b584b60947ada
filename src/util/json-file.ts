// Reading state files. They are never read through a symbolic link: the state directory belongs to the
// user an engine dropped to, and the next engine opens it as root.

import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import type { StateFiles } from './state-files.js';

/** The text of state file `path`; a symbolic link there is refused (ELOOP), not followed. */
export function readStateFile(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * The list under `key` of a softnet file of version 1 (`{"version": 1, KEY: [...]}`), or none when there is
 * no such file; a file of another form throws, naming it as a `what` file.
 */
export function readVersionedList(path: string, key: string, what: string): unknown[] {
  const data = readJsonFile(path, { version: 1, [key]: [] }) as Record<string, unknown> | null;
  const list = data?.[key];
  if (data?.version !== 1 || !Array.isArray(list)) throw new Error(`${path}: not a softnet ${what} file`);
  return list;
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

/**
 * `read()`; when it throws (the file is not JSON, not of its form, not readable), the file is moved aside
 * (StateFiles.quarantine) and `fallback` returned, so an engine starts without it.
 */
export function readOrSetAside<T>(path: string, files: StateFiles, fallback: T, read: () => T): T {
  try {
    return read();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    files.quarantine(path, message.startsWith(`${path}: `) ? message.slice(path.length + 2) : message);
    return fallback;
  }
}
