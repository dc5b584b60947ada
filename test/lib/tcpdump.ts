// Waiting for a tcpdump to be ready: a test's frames sent before it listens are not in its capture.

import type { ChildProcess } from 'node:child_process';

/**
 * Resolves once the tcpdump `child` prints that it is listening (rejects if it exits first or takes over
 * 10 s); the function it resolves to returns all it has printed on stderr, its closing statistics too.
 */
export async function tcpdumpListening(child: ChildProcess, what = 'tcpdump'): Promise<() => string> {
  let err = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} did not start listening:\n${err}`)), 10_000);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('listening on')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', () => {
      clearTimeout(t);
      reject(new Error(`${what} exited:\n${err}`));
    });
  });
  return () => err;
}
