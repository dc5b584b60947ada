// The bench's outputs: the printed table, the markdown table and the JSON record of a run. The targets
// are issue 15's; the round trip softnet adds is shown at both ping rates, as the ping target is stated.

import type { Conditions } from './conditions.js';
import type { MeasureOptions, Metrics } from './measure.js';
import {
  ALL_METRICS,
  COMPARED,
  CPU_METRICS,
  fmt,
  IPV6_OVER_IPV4,
  METRICS,
  METRICS6,
  type MetricInfo,
  type PeerSummary,
  PINGS,
  type RoundResult,
  type TargetResult,
} from './summary.js';

/** Everything a run measured and under which conditions; what peers.json holds. */
export interface RunRecord {
  startedAt: string;
  finishedAt: string;
  conditions: Conditions;
  load: { atStart: number; atEnd: number };
  rounds: number;
  measure: MeasureOptions;
  peers: PeerSummary[];
  /** softnet's median over each other peer's, by peer name. */
  ratios: Record<string, Metrics>;
  /** Each peer's median IPv6 TCP over its IPv4 TCP (keyed tcp6Up, tcp6Down), by peer name. */
  ipv6OverIpv4: Record<string, Metrics>;
  targets: TargetResult[];
  results: RoundResult[];
}

type Table = string[][];

/** The VM interface MTU of every peer, as one figure when they all agree. */
export function guestMtu(run: RunRecord): string {
  const all = new Set(run.peers.flatMap((p) => p.mtus));
  if (all.size === 1) return String([...all][0]);
  return run.peers.map((p) => `${p.name} ${p.mtus.join('/') || 'unknown'}`).join(', ');
}

function pingRuns(measure: MeasureOptions): string {
  return measure.pings.map((p) => `${p.count} x ${p.interval * 1000} ms`).join(' and ');
}

function header(run: RunRecord): string[] {
  const c = run.conditions;
  return [
    `softnet peers bench, ${run.startedAt} on ${c.hostname}: ${c.cpus} CPUs (${c.cpuModel}), Linux ${c.kernel}, node ${c.node}`,
    `guest MTU ${guestMtu(run)} (read in each VM); ${run.rounds} round${run.rounds === 1 ? '' : 's'} with the peers interleaved, medians; iperf3 ${run.measure.seconds} s a test; ping ${pingRuns(run.measure)}, medians of the replies`,
    `load average (1 min) ${run.load.atStart.toFixed(2)} at the start, ${run.load.atEnd.toFixed(2)} at the end; iperf3 ${c.tools.iperf3}, passt ${c.tools.passt}, slirp4netns ${c.tools.slirp4netns}`,
  ];
}

/** Whether `m` was not measured for `peer` by design (an IPv6 metric of a peer without IPv6 here). */
function notRun(peer: PeerSummary, m: MetricInfo): boolean {
  return !peer.ipv6 && METRICS6.includes(m);
}

function figures(run: RunRecord): Table {
  const rows: Table = [['metric', 'unit', ...run.peers.map((p) => p.name)]];
  for (const m of ALL_METRICS) {
    rows.push([
      m.label,
      m.unit,
      ...run.peers.map((p) => (notRun(p, m) ? 'not run' : fmt(m.key, p.median[m.key]))),
    ]);
  }
  return rows;
}

function ratioTable(run: RunRecord): Table {
  const others = run.peers.filter((p) => p.name !== 'softnet');
  const softnet = run.peers.find((p) => p.name === 'softnet');
  const rows: Table = [['softnet / peer', ...others.map((p) => p.name)]];
  for (const m of COMPARED) {
    const better = m.higherIsBetter ? 'higher is better' : 'lower is better';
    rows.push([
      `${m.label} (${better})`,
      ...others.map((p) => {
        if (notRun(p, m)) return 'not run';
        const r = run.ratios[p.name]?.[m.key];
        return r === undefined ? 'missing' : `${r.toFixed(2)}x`;
      }),
    ]);
  }
  for (const m of PINGS) {
    rows.push([
      `${m.label} added by softnet`,
      ...others.map((p) => {
        const s = softnet?.median[m.key];
        const o = p.median[m.key];
        if (s === undefined || o === undefined) return 'missing';
        return `${s >= o ? '+' : ''}${(s - o).toFixed(0)} µs`;
      }),
    ]);
  }
  return rows;
}

/** Each peer's IPv6 TCP over its own IPv4 TCP, measured in the same rounds. */
function familyTable(run: RunRecord): Table {
  const peers = run.peers.filter((p) => p.ipv6);
  const rows: Table = [['IPv6 TCP / IPv4 TCP', ...peers.map((p) => p.name)]];
  for (const [six, four] of IPV6_OVER_IPV4) {
    const label = ALL_METRICS.find((m) => m.key === four)!.label;
    rows.push([
      `${label} (higher is better)`,
      ...peers.map((p) => {
        const r = run.ipv6OverIpv4[p.name]?.[six];
        return r === undefined ? 'missing' : `${r.toFixed(2)}x`;
      }),
    ]);
  }
  return rows;
}

/** The CPU of each peer's own process during TCP and UDP (the kernel's path has none). */
function cpuTable(run: RunRecord): Table {
  const peers = run.peers.filter((p) => CPU_METRICS.some((m) => p.median[m.key] !== undefined));
  const rows: Table = [["the peer's own process", 'unit', ...peers.map((p) => p.name)]];
  for (const m of CPU_METRICS) rows.push([m.label, m.unit, ...peers.map((p) => fmt(m.key, p.median[m.key]))]);
  return rows;
}

function targetLines(run: RunRecord): string[] {
  return run.targets.map((t) => {
    const label = METRICS.find((m) => m.key === t.metric)!.label;
    const verdict = t.met === null ? 'not judged' : t.met ? 'met' : 'NOT MET';
    return `${label} ${t.target}: ${verdict} (${t.detail})`;
  });
}

function missingLines(run: RunRecord): string[] {
  return run.peers.flatMap((p) => p.errors.map((e) => `${p.name}: ${e}`));
}

function aligned(rows: Table): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => [...r[i]].length)));
  return rows.map((r) =>
    r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  '),
  );
}

function markdownTable(rows: Table): string[] {
  const [head, ...body] = rows;
  return [
    `| ${head.join(' | ')} |`,
    `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...body.map((r) => `| ${r.join(' | ')} |`),
  ];
}

/** The report printed at the end of a run. */
export function textReport(run: RunRecord): string {
  const missing = missingLines(run);
  return [
    ...header(run),
    '',
    ...aligned(figures(run)),
    '',
    ...aligned(ratioTable(run)),
    '',
    ...aligned(familyTable(run)),
    '',
    ...aligned(cpuTable(run)),
    '',
    'targets (issue 15), against the kernel path and pasta measured in this run:',
    ...targetLines(run).map((l) => `  ${l}`),
    ...(missing.length ? ['', 'missing measurements:', ...missing.map((l) => `  ${l}`)] : []),
    '',
  ].join('\n');
}

/** The same report as markdown, for bench/results/peers.md and the README. */
export function markdownReport(run: RunRecord): string {
  const missing = missingLines(run);
  return [
    ...header(run).map((l) => `${l}  `),
    '',
    ...markdownTable(figures(run)),
    '',
    ...markdownTable(ratioTable(run)),
    '',
    ...markdownTable(familyTable(run)),
    '',
    ...markdownTable(cpuTable(run)),
    '',
    'Targets (issue 15), against the kernel path and pasta measured in the same run:',
    '',
    ...targetLines(run).map((l) => `- ${l}`),
    ...(missing.length ? ['', 'Missing measurements:', '', ...missing.map((l) => `- ${l}`)] : []),
    '',
  ].join('\n');
}
