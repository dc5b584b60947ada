// The scale bench's record and its printed and markdown forms.

import type { Conditions } from '../peers/conditions.js';
import type { Memory } from './usage.js';

/** Throughput with `vms` VMs running iperf3 to the world at once. */
export interface ActiveStep {
  vms: number;
  /** Each round's bits a second, one figure a VM (a round where an iperf3 failed is left out). */
  rounds: number[][];
  /** Medians over the rounds of: the mean per VM, the slowest VM, the sum. */
  perVm?: number;
  slowest?: number;
  total?: number;
  errors: string[];
}

/** softnet's cost while many VMs are attached and idle. */
export interface IdleCost {
  vms: number;
  seconds: number;
  cpuSeconds: number;
  memory: Memory;
  /** The part of those of the process that runs the engine for all the VMs, with one engine. */
  engine?: { cpuSeconds: number; memory: Memory };
  /** NAT port ranges the host namespace did not have reserved after every VM was attached. */
  unreserved: Array<[number, number]>;
}

/** One VM's throughput while it is the only one active, with `attached` VMs attached in all. */
export interface AloneStep {
  /** When it was measured: before the idle VMs came, with them, after they went. */
  when: string;
  attached: number;
  samples: number[];
  median?: number;
}

/** What scale.json holds. */
export interface ScaleRecord {
  startedAt: string;
  finishedAt: string;
  conditions: Conditions;
  load: { atStart: number; atEnd: number };
  deployment: string;
  seconds: number;
  rounds: number;
  /** VMs attached while the active steps ran. */
  attachedWhileActive: number;
  active: ActiveStep[];
  idle?: IdleCost;
  alone: AloneStep[];
  errors: string[];
}

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const gbit = (v: number | undefined) => (v === undefined ? 'missing' : (v / 1e9).toFixed(2));

function lines(r: ScaleRecord): { head: string[]; table: string[][]; tail: string[] } {
  const c = r.conditions;
  const head = [
    `softnet scale bench, ${r.startedAt} on ${c.hostname}: ${c.cpus} CPUs (${c.cpuModel}), Linux ${c.kernel}, node ${c.node}`,
    `load average (1 min) ${r.load.atStart.toFixed(2)} at the start, ${r.load.atEnd.toFixed(2)} at the end`,
    `deployment: ${r.deployment}`,
    `iperf3 TCP VM->world, ${r.seconds} s, every active VM at once to its own server; ${r.attachedWhileActive} VMs attached; median${r.rounds === 1 ? '' : 's'} of ${r.rounds} round${r.rounds === 1 ? '' : 's'}`,
  ];
  const table = [
    ['active VMs', 'per VM (Gbit/s)', 'slowest VM (Gbit/s)', 'total (Gbit/s)'],
    ...r.active.map((s) => [String(s.vms), gbit(s.perVm), gbit(s.slowest), gbit(s.total)]),
  ];
  const tail: string[] = [];
  if (r.idle) {
    const i = r.idle;
    const pct = (i.cpuSeconds / i.seconds) * 100;
    const m = i.memory;
    tail.push(
      `idle: ${i.vms} VMs attached and idle for ${i.seconds} s: softnet used ${i.cpuSeconds.toFixed(2)} CPU-seconds, ${pct.toFixed(1)} % of one core (${(pct / i.vms).toFixed(3)} % a VM)`,
      `  memory of its processes together: ${mib(m.pss)} MiB proportional (shared pages split among the processes sharing them), ${mib(m.private)} MiB private; resident summed ${mib(m.rss)} MiB (Node's shared code once a process)`,
    );
    if (i.engine) {
      const others = i.vms - 1;
      const e = i.engine.memory;
      const each = (v: number, w: number) => mib((v - w) / others);
      tail.push(
        `  of which the engine (the first VM's process): ${i.engine.cpuSeconds.toFixed(2)} CPU-seconds, ${((i.engine.cpuSeconds / i.seconds) * 100).toFixed(1)} % of one core, ${mib(e.pss)} MiB proportional, ${mib(e.private)} MiB private, ${mib(e.rss)} MiB resident`,
        `  each of the ${others} other per-VM processes: ${(((i.cpuSeconds - i.engine.cpuSeconds) / i.seconds / others) * 100).toFixed(3)} % of one core, ${each(m.pss, e.pss)} MiB proportional, ${each(m.private, e.private)} MiB private, ${each(m.rss, e.rss)} MiB resident`,
      );
    }
    if (i.unreserved.length) {
      tail.push(
        `  NOTE: ${i.unreserved.length} NAT port ranges were not in ip_local_reserved_ports after the VMs attached: ${i.unreserved.map(([a, b]) => `${a}-${b}`).join(', ')}`,
      );
    }
  }
  if (r.alone.length) {
    const others = (n: number) => `${n} other VM${n === 1 ? '' : 's'}`;
    tail.push(
      `one VM active, the others attached and idle (in this order): ${r.alone
        .map((a) => `${gbit(a.median)} Gbit/s with ${others(a.attached - 1)} (${a.when})`)
        .join('; ')}`,
    );
    const [before, withIdle, after] = r.alone.map((a) => a.median);
    if (before !== undefined && withIdle !== undefined && after !== undefined) {
      tail.push(
        `  with the idle VMs attached, one VM moved ${(withIdle / ((before + after) / 2)).toFixed(2)}x what it moved without them (the mean of before and after)`,
      );
    }
  }
  tail.push(...r.errors.map((e) => `error: ${e}`));
  return { head, table, tail };
}

/** The report printed at the end of a run. */
export function textReport(r: ScaleRecord): string {
  const { head, table, tail } = lines(r);
  const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
  const rows = table.map((row) => row.map((cell, i) => cell.padStart(widths[i])).join('  '));
  return [...head, '', ...rows, '', ...tail, ''].join('\n');
}

/** The same as markdown, for bench/results/scale.md. */
export function markdownReport(r: ScaleRecord): string {
  const { head, table, tail } = lines(r);
  const [h, ...body] = table;
  return [
    ...head.map((l) => `${l}  `),
    '',
    `| ${h.join(' | ')} |`,
    `|${h.map(() => '---:').join('|')}|`,
    ...body.map((row) => `| ${row.join(' | ')} |`),
    '',
    ...tail.map((l) => `- ${l.trim()}`),
    '',
  ].join('\n');
}
