// From the rounds to what the bench reports: medians per peer, softnet/peer ratios, each peer's IPv6 TCP
// over its IPv4 TCP, and the targets (stated against the kernel's path, IPv4 only) with how far each one
// is from being met.

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
const PING: MetricInfo = {
  key: 'pingUs',
  label: 'ping RTT',
  unit: 'µs',
  scale: 1,
  higherIsBetter: false,
  digits: 0,
};

/** The metrics softnet has targets for (all IPv4), in report order. */
export const METRICS: MetricInfo[] = [TCP_UP, TCP_DOWN, UDP, PING];

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
  PING,
  ...METRICS6,
];

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

/** A target of softnet against the kernel's path, and whether this run met it. */
export interface TargetResult {
  metric: Metric;
  /** The target in words, e.g. ">= 0.80x the kernel". */
  target: string;
  /** Whether it was met; null when softnet or the kernel has no figure. */
  met: boolean | null;
  /** What was measured, and by how much the target is missed. */
  detail: string;
}

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs: number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** Groups the rounds by peer, in `peers` order, with medians. */
export function summarize(
  peers: Array<{ name: string; description: string; ipv6: boolean }>,
  rounds: RoundResult[],
): PeerSummary[] {
  return peers.map(({ name, description, ipv6 }) => {
    const mine = rounds.filter((r) => r.peer === name);
    const samples = Object.fromEntries(ALL_METRICS.map((m) => [m.key, []])) as unknown as Record<
      Metric,
      number[]
    >;
    for (const r of mine) {
      for (const m of ALL_METRICS) {
        const v = r.metrics[m.key];
        if (v !== undefined) samples[m.key].push(v);
      }
    }
    const med: Metrics = {};
    for (const m of ALL_METRICS) med[m.key] = median(samples[m.key]);
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
  const m = ALL_METRICS.find((x) => x.key === metric)!;
  return v === undefined ? 'missing' : (v / m.scale).toFixed(m.digits);
}

const MIN_RATIO: Partial<Record<Metric, number>> = { tcpUp: 0.8, tcpDown: 0.8, udpPps: 1.0 };
const MAX_ADDED_RTT_US = 20;

/** Where softnet's target for `metric` lies, given the kernel's figure: a floor, or for ping a ceiling. */
export function targetLevel(metric: Metric, kernel: number): number {
  const min = MIN_RATIO[metric];
  return min !== undefined ? min * kernel : kernel + MAX_ADDED_RTT_US;
}

/** softnet against the targets of issue 7, each relative to the kernel's path measured in the same run. */
export function targets(softnet: PeerSummary | undefined, kernel: PeerSummary | undefined): TargetResult[] {
  return METRICS.map((m): TargetResult => {
    const s = softnet?.median[m.key];
    const k = kernel?.median[m.key];
    const min = MIN_RATIO[m.key];
    const target =
      min !== undefined ? `>= ${min.toFixed(2)}x the kernel` : `<= ${MAX_ADDED_RTT_US} µs over the kernel`;
    if (s === undefined || k === undefined || k <= 0) {
      const missing = [s === undefined ? 'softnet' : '', k === undefined ? 'kernel' : ''].filter(Boolean);
      return {
        metric: m.key,
        target,
        met: null,
        detail: `not judged: no figure for ${missing.join(' and ')}`,
      };
    }
    const level = targetLevel(m.key, k);
    if (min !== undefined) {
      const ratio = s / k;
      const met = s >= level;
      const detail =
        `softnet ${fmt(m.key, s)} ${m.unit} = ${ratio.toFixed(2)}x the kernel's ${fmt(m.key, k)} ${m.unit}` +
        (met
          ? ''
          : `; short by ${(min - ratio).toFixed(2)}x (${fmt(m.key, level - s)} ${m.unit} more needed)`);
      return { metric: m.key, target, met, detail };
    }
    const added = s - k;
    const met = s <= level;
    const detail =
      `softnet ${s.toFixed(0)} µs, kernel ${k.toFixed(0)} µs: ${added >= 0 ? '+' : ''}${added.toFixed(0)} µs` +
      (met ? '' : `; over by ${(s - level).toFixed(0)} µs`);
    return { metric: m.key, target, met, detail };
  });
}
