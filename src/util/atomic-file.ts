// Writing a state file so that a crash at any moment leaves either the old content or the new, never half,
// and never through a symbolic link: the state directory belongs to the user an engine dropped to, and
// the next engine writes in it as root.

import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** Replaces `path` with `text`: temp file, fsync, rename, fsync of the directory; a failure leaves no temp file. */
export function writeFileAtomic(path: string, text: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  // A temp file a killed engine of the same pid left goes; O_EXCL then refuses whatever is put in its place.
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    try {
      writeFileSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    // A full disk fails the write: no temp file is left behind (unless the disk went read-only meanwhile).
    try {
      rmSync(tmp, { force: true });
    } catch {}
    throw e;
  }
  const dfd = openSync(dir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}
