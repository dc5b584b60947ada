// File descriptors as a resource the engine can run out of (a low `ulimit -n`, LimitNOFILE=, a host out
// of them). A VM is taken only while FD_HEADROOM fds are still free after it, so the engine never runs
// out in the middle of its own work (saving its records, answering DNS, opening a network) for the VMs it
// already runs: the newcomer is refused with a clear reason instead.

import { closeSync, openSync } from 'node:fs';
import { ControlError } from '../control/protocol.js';

const FD_HEADROOM = 16;

/** The reason given to a VM the engine cannot take for want of fds (`code`: EMFILE or ENFILE). */
export function outOfFdsMessage(code: string): string {
  return `the softnet engine is out of file descriptors (${code}): it cannot take this VM; raise its limit (LimitNOFILE=, ulimit -n) or stop some VMs`;
}

/** EMFILE or ENFILE when `e` is a failure for want of fds, else null. */
export function outOfFdsCode(e: unknown): string | null {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === 'EMFILE' || code === 'ENFILE' ? code : null;
}

/** Throws a ControlError saying so when fewer than FD_HEADROOM fds are free. */
export function checkFdHeadroom(): void {
  const held: number[] = [];
  try {
    for (let i = 0; i < FD_HEADROOM; i++) held.push(openSync('/dev/null', 'r'));
  } catch (e) {
    const code = outOfFdsCode(e);
    if (code) throw new ControlError(outOfFdsMessage(code));
    throw e;
  } finally {
    for (const fd of held) closeSync(fd);
  }
}
