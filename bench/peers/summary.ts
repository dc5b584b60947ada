// From the rounds to what the bench reports: medians per peer, softnet/peer ratios, each peer's IPv6 TCP
// over its IPv4 TCP, and issue 15's targets (IPv4 only, against the kernel's path and pasta measured in
// the same run) with how far each one is from being met. TCP is judged round by round, against the
// kernel's figure of the same round, because a median can hide a round that falls short.

import type { Metric, Metrics } from './measure.js';

/** How a metric is shown and which way is better. */
export interface MetricInfo {
  key: Metric;
  label: string;
  unit: string;
  /** Divides the raw value into `unit`. */
  scale: number;
  higherIsBetter: boolean;
  digits: number;
}

const TCP_UP: MetricInfo = {
  key: 'tcpUp',
  label: 'TCP VM->world',
  unit: 'Gbit/s',
  scale: 1e9,
  higherIsBetter: true,
  digits: 2,
};
const TCP_DOWN: MetricInfo = { ...TCP_UP, key: 'tcpDown', label: 'TCP world->VM' };
const UDP: MetricInfo = {
  key: 'udpPps',
  label: 'UDP 64 B VM->world',
  unit: 'kpps',
  scale: 1e3,
  higherIsBetter: true,
  digits: 0,
};
const PING20: MetricInfo = {
  key: 'ping20Us',
  label: 'ping RTT at 20/s',
  unit: 'µs',
  scale: 1,
  higherIsBetter: false,
  digits: 0,
};
const PING2: MetricInfo = { ...PING20, key: 'ping2Us', label: 'ping RTT at 2/s' };

/** The metrics softnet has targets for (all IPv4), in report order. */
export const METRICS: MetricInfo[] = [TCP_UP, TCP_DOWN, UDP, PING20, PING2];

/** The ping metrics, for the round trip softnet adds over each peer. */
export const PINGS: MetricInfo[] = [PING20, PING2];

/** The IPv6 metrics: compared with the peers, no target of their own. */
export const METRICS6: MetricInfo[] = [
  { ...TCP_UP, key: 'tcp6Up', label: 'TCP VM->world over IPv6' },
  { ...TCP_DOWN, key: 'tcp6Down', label: 'TCP world->VM over IPv6' },
];

/** The metrics softnet is compared with each peer on. */
export const COMPARED: MetricInfo[] = [...METRICS, ...METRICS6];

/** Every metric recorded: the compared ones, with context that is shown but not compared after UDP's. */
export const ALL_METRICS: MetricInfo[] = [
  TCP_UP,
  TCP_DOWN,
  UDP,
  { ...UDP, key: 'udpSentPps', label: 'UDP 64 B sent by the VM' },
  PING20,
  PING2,
  ...METRICS6,
];

const CPU_SHARE: MetricInfo = {
  key: 'tcpUpCpu',
  label: 'TCP VM->world',
  unit: '% of a core',
  scale: 1,
  higherIsBetter: false,
  digits: 0,
};
const CPU_US: MetricInfo = {
  ...CPU_SHARE,
  key: 'udpCpuUs',
  label: 'UDP 64 B VM->world',
  unit: 'µs a datagram',
  digits: 1,
};

/** The CPU of the peer's own process during IPv4 TCP and UDP: what bounds a userspace peer. */
export const CPU_METRICS: MetricInfo[] = [
  CPU_SHARE,
  { ...CPU_SHARE, key: 'tcpDownCpu', label: 'TCP world->VM' },
  CPU_US,
];

/** Everything a round can hold, for the medians and the formatting. */
const RECORDED: MetricInfo[] = [...ALL_METRICS, ...CPU_METRICS];

/** Each IPv6 TCP metric and the IPv4 one it is set against. */
export const IPV6_OVER_IPV4: Array<[ipv6: Metric, ipv4: Metric]> = [
  ['tcp6Up', 'tcpUp'],
  ['tcp6Down', 'tcpDown'],
];

/** One peer in one round. */
export interface RoundResult {
  round: number;
  peer: string;
  /** The machine's 1-minute load average when this peer's turn began (other work on it shows here). */
  load: number;
  metrics: Metrics;
  /** The MTU of the VM's interface while it was measured. */
  mtu?: number;
  /** Why a metric, or the whole peer (when it could not be attached), is missing. */
  errors: string[];
}

/** One peer over all rounds. */
export interface PeerSummary {
  name: string;
  description: string;
  /** Whether the IPv6 figures were measured for this peer. */
  ipv6: boolean;
  /** Every round's value of each metric that was measured. */
  samples: Record<Metric, number[]>;
  /** The median of the samples; absent when no round measured the metric. */
  median: Metrics;
  /** The VM interface MTUs seen over the rounds. */
  mtus: number[];
  errors: string[];
}

/** softnet's figure over the kernel's in one round. */
export interface RoundRatio {
  round: number;
  ratio: number;
}

/** A target of softnet's, and whether this run met it. */
export interface TargetResult {
  metric: Metric;
  /** The target in words, e.g. ">= 1.20x the kernel and >= 2.00x pasta". */
  target: string;
  /** Whether it was met; null (not judged) when a figure it needs is missing. */
  met: boolean | null;
  /** What was measured, and by how much the target is missed; or why it was not judged. */
  detail: string;
  /** The median softnet needs, a floor or for ping a ceiling; for TCP, whose target holds each round, only a guide. */
  level?: number;
  /** TCP: every round with both figures, softnet's over the kernel's. */
  rounds?: RoundRatio[];
  /** TCP: the lowest of `rounds`. */
  worst?: RoundRatio;
}

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** `peer`'s figures for `key` over the rounds that measured it, in round order. */
function samplesOf(rounds: RoundResult[], peer: string, key: Metric): number[] {
  return rounds
    .filter((r) => r.peer === peer)
    .map((r) => r.metrics[key])
    .filter((x): x is number => x !== undefined);
}

/** Groups the rounds by peer, in `peers` order, with medians. */
export function summarize(
  peers: Array<{ name: string; description: string; ipv6: boolean }>,
  rounds: RoundResult[],
): PeerSummary[] {
  return peers.map(({ name, description, ipv6 }) => {
    const mine = rounds.filter((r) => r.peer === name);
    const samples = Object.fromEntries(
      RECORDED.map((m) => [m.key, samplesOf(rounds, name, m.key)]),
    ) as Record<Metric, number[]>;
    const med: Metrics = {};
    for (const m of RECORDED) med[m.key] = median(samples[m.key]);
    return {
      name,
      description,
      ipv6,
      samples,
      median: med,
      mtus: [...new Set(mine.map((r) => r.mtu).filter((m): m is number => m !== undefined))],
      errors: mine.flatMap((r) => r.errors.map((e) => `round ${r.round}: ${e}`)),
    };
  });
}

/** softnet's median over `peer`'s, per compared metric; absent where either is missing. */
export function ratios(softnet: PeerSummary, peer: PeerSummary): Metrics {
  const out: Metrics = {};
  for (const m of COMPARED) {
    const a = softnet.median[m.key];
    const b = peer.median[m.key];
    if (a !== undefined && b !== undefined && b > 0) out[m.key] = a / b;
  }
  return out;
}

/** A peer's median IPv6 TCP over its median IPv4 TCP, keyed by the IPv6 metric; absent where either is missing. */
export function ipv6OverIpv4(peer: PeerSummary): Metrics {
  const out: Metrics = {};
  for (const [six, four] of IPV6_OVER_IPV4) {
    const a = peer.median[six];
    const b = peer.median[four];
    if (a !== undefined && b !== undefined && b > 0) out[six] = a / b;
  }
  return out;
}

/** Formats a raw value of `metric` in its unit. */
export function fmt(metric: Metric, v: number | undefined): string {
  const m = RECORDED.find((x) => x.key === metric)!;
  return v === undefined ? 'missing' : (v / m.scale).toFixed(m.digits);
}

const TCP_MIN_KERNEL = 0.85;
const UDP_MIN_KERNEL = 1.2;
const UDP_MIN_PASTA = 2;
/** The share of pasta's added round trip (over the kernel's) that softnet may add. */
const PING_MAX_OF_PASTA = 0.5;

/** How a peer is named in a sentence. */
function called(peer: string): string {
  return peer === 'kernel' ? 'the kernel' : peer;
}

function signed(us: number): string {
  return `${us >= 0 ? '+' : '-'}${Math.abs(us).toFixed(0)}`;
}

function figure(m: MetricInfo, v: number): string {
  return `${fmt(m.key, v)} ${m.unit}`;
}

/** Each of `peers`' median of `m` over the rounds, and the peers that have none. */
function medians(
  results: RoundResult[],
  m: MetricInfo,
  peers: string[],
): { values: Record<string, number>; missing: string[] } {
  const values: Record<string, number> = {};
  const missing: string[] = [];
  for (const peer of peers) {
    const v = median(samplesOf(results, peer, m.key));
    if (v === undefined) missing.push(peer);
    else values[peer] = v;
  }
  return { values, missing };
}

/** Why `peer` has no figure for `m`: the first error naming the metric, or one that cost a whole round. */
function missingReason(results: RoundResult[], peer: string, m: MetricInfo): string {
  const mine = results.filter((r) => r.peer === peer);
  if (mine.length === 0) return `no figure for ${called(peer)}: not in this run`;
  for (const r of mine) {
    const why =
      r.errors.find((e) => e.startsWith(`${m.key}:`)) ??
      (Object.keys(r.metrics).length === 0 ? r.errors[0] : undefined);
    if (why) return `no figure for ${called(peer)}: round ${r.round}: ${why}`;
  }
  return `no figure for ${called(peer)}`;
}

function notJudged(m: MetricInfo, target: string, results: RoundResult[], missing: string[]): TargetResult {
  const detail = missing.map((p) => missingReason(results, p, m)).join('; ');
  return { metric: m.key, target, met: null, detail };
}

/** softnet's `s` against `floor` times `peer`'s `p`, in words: the ratio, and what is missing when short. */
function against(m: MetricInfo, s: number, peer: string, p: number, floor: number): string {
  const ratio = s / p;
  const short =
    s >= floor * p
      ? ''
      : ` (short by ${(floor - ratio).toFixed(2)}x, ${figure(m, floor * p - s)} more needed)`;
  return `${ratio.toFixed(2)}x ${called(peer)}'s ${figure(m, p)}${short}`;
}

/** TCP: at least TCP_MIN_KERNEL times the kernel's figure in every round that has both. */
function tcpTarget(results: RoundResult[], m: MetricInfo): TargetResult {
  const target = `>= ${TCP_MIN_KERNEL.toFixed(2)}x the kernel in every round`;
  const { values, missing } = medians(results, m, ['softnet', 'kernel']);
  if (missing.length) return notJudged(m, target, results, missing);
  const pairs: Array<{ round: number; s: number; k: number }> = [];
  const skipped: string[] = [];
  for (const round of [...new Set(results.map((r) => r.round))].sort((a, b) => a - b)) {
    const [s, k] = ['softnet', 'kernel'].map(
      (peer) => results.find((r) => r.round === round && r.peer === peer)?.metrics[m.key],
    );
    if (s !== undefined && k !== undefined) pairs.push({ round, s, k });
    else {
      const lacking = [s === undefined ? 'softnet' : '', k === undefined ? 'the kernel' : ''].filter(Boolean);
      skipped.push(`round ${round} not judged (no figure for ${lacking.join(' or ')})`);
    }
  }
  if (pairs.length === 0) {
    return {
      metric: m.key,
      target,
      met: null,
      detail: 'no round has figures for both softnet and the kernel',
    };
  }
  const rounds = pairs.map(({ round, s, k }) => ({ round, ratio: s / k }));
  const worst = rounds.reduce((a, b) => (b.ratio < a.ratio ? b : a));
  const { s, k } = pairs.find((p) => p.round === worst.round)!;
  const below = rounds.filter((r) => r.ratio < TCP_MIN_KERNEL).length;
  const counted = `${rounds.length} round${rounds.length === 1 ? '' : 's'}`;
  const detail = [
    `worst round ${worst.round}: softnet ${figure(m, s)} = ${against(m, s, 'kernel', k, TCP_MIN_KERNEL)}`,
    below ? `${below} of ${counted} below ${TCP_MIN_KERNEL.toFixed(2)}x` : `${counted} judged`,
    `the medians' ratio ${(values.softnet / values.kernel).toFixed(2)}x`,
    ...skipped,
  ].join('; ');
  const level = TCP_MIN_KERNEL * values.kernel;
  return { metric: m.key, target, met: below === 0, detail, level, rounds, worst };
}

/** UDP: at least UDP_MIN_KERNEL times the kernel's median and UDP_MIN_PASTA times pasta's. */
function udpTarget(results: RoundResult[], m: MetricInfo): TargetResult {
  const target = `>= ${UDP_MIN_KERNEL.toFixed(2)}x the kernel and >= ${UDP_MIN_PASTA.toFixed(2)}x pasta`;
  const { values, missing } = medians(results, m, ['softnet', 'kernel', 'pasta']);
  if (missing.length) return notJudged(m, target, results, missing);
  const { softnet: s, kernel: k, pasta: p } = values;
  const level = Math.max(UDP_MIN_KERNEL * k, UDP_MIN_PASTA * p);
  const detail = `softnet ${figure(m, s)} = ${against(m, s, 'kernel', k, UDP_MIN_KERNEL)}, ${against(m, s, 'pasta', p, UDP_MIN_PASTA)}`;
  return { metric: m.key, target, met: s >= level, detail, level };
}

/** ping: softnet adds at most PING_MAX_OF_PASTA of what pasta adds to the kernel's round trip. */
function pingTarget(results: RoundResult[], m: MetricInfo): TargetResult {
  const target = `added over the kernel <= ${PING_MAX_OF_PASTA.toFixed(2)}x what pasta adds`;
  const { values, missing } = medians(results, m, ['softnet', 'kernel', 'pasta']);
  if (missing.length) return notJudged(m, target, results, missing);
  const { softnet: s, kernel: k, pasta: p } = values;
  const allowed = PING_MAX_OF_PASTA * (p - k);
  const met = s - k <= allowed;
  const detail =
    `softnet ${s.toFixed(0)} µs, the kernel ${k.toFixed(0)} µs, pasta ${p.toFixed(0)} µs: softnet adds ` +
    `${signed(s - k)} µs, pasta ${signed(p - k)} µs, so at most ${signed(allowed)} µs` +
    (met ? '' : `; over by ${(s - k - allowed).toFixed(0)} µs`);
  return { metric: m.key, target, met, detail, level: k + allowed };
}

/** softnet against issue 15's targets, each relative to the kernel's path and pasta measured in the same run. */
export function targets(results: RoundResult[]): TargetResult[] {
  return [
    tcpTarget(results, TCP_UP),
    tcpTarget(results, TCP_DOWN),
    udpTarget(results, UDP),
    pingTarget(results, PING20),
    pingTarget(results, PING2),
  ];
}
