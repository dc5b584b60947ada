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

/** Memory of a set of processes, in bytes, from /proc/PID/smaps_rollup. */
export interface Memory {
  /** Resident pages summed over the processes: pages they share (Node's code) count once a process. */
  rss: number;
  /** Proportional set: a shared page is split among the processes mapping it, so this is what they take together. */
  pss: number;
  /** Pages no other process maps (USS). */
  private: number;
}

/** The memory of `pids`; a process that is gone counts 0. */
export function memory(pids: number[]): Memory {
  const kb = { rss: 0, pss: 0, private: 0 };
  for (const pid of pids) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    } catch {
      continue;
    }
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
    kb.rss += field('Rss');
    kb.pss += field('Pss');
    kb.private += field('Private_Clean') + field('Private_Dirty');
  }
  return { rss: kb.rss * 1024, pss: kb.pss * 1024, private: kb.private * 1024 };
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
