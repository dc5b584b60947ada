// CPU time and memory of processes, from /proc: what softnet costs while its VMs are idle.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** CPU seconds (user + system) that `pids` have used so far; a process that is gone counts 0. */
export function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // The command name may hold spaces and parentheses: the fields start after its last ')'.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {}
  }
  return ticks / TICKS;
}

/** The resident memory of `pids`, in bytes. */
export function rssBytes(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch {}
  }
  return kb * 1024;
}

/** The ranges that `reserved` (the text of ip_local_reserved_ports) does not wholly cover. */
export function unreserved(reserved: string, ranges: Array<[number, number]>): Array<[number, number]> {
  const have = reserved
    .trim()
    .split(',')
    .filter(Boolean)
    .map((r) => {
      const [a, b] = r.split('-').map(Number);
      return [a, b ?? a] as [number, number];
    });
  return ranges.filter(([lo, hi]) => !have.some(([a, b]) => a <= lo && hi <= b));
}
