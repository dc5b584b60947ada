// The CPU a peer's own process spends on a test, read from /proc: the run time of each of its threads in
// nanoseconds (schedstat), exact where the 10 ms ticks of /proc/PID/stat would blur a test of a few
// seconds. The kernel's path has no process: its work runs in the VM's and the world's system calls.

import { readdirSync, readFileSync } from 'node:fs';

/** Nanoseconds process `pid` has run, all its threads together; throws if it is gone. */
export function cpuNs(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // A thread that ended between the listing and the read: its time is no longer counted anywhere.
    }
  }
  return total;
}
