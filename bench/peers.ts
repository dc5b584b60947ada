// The peers bench: softnet, the kernel's own path (veth + nftables masquerade), pasta and slirp4netns,
// each giving a VM namespace its path to the same world, measured interleaved over several rounds: iperf3
// TCP both ways, 64-byte UDP datagrams a second, ping round trip at 20 and at 2 a second, and TCP both
// ways over IPv6 for the peers that give the VM IPv6 (all but slirp4netns). Prints the medians,
// softnet/peer ratios, each peer's IPv6 TCP over its IPv4 TCP and issue 15's targets (against the kernel
// and pasta), and writes JSON, markdown and an SVG chart under bench/results/.
// Run as root: make bench-peers, or node dist/bench/peers.js [--rounds N] [--seconds S]
// [--peers softnet,kernel,...] [--out DIR].

import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { svgChart } from './peers/chart.js';
import { conditions, load1 } from './peers/conditions.js';
import { kernel } from './peers/kernel.js';
import { Lab, sweepStale } from './peers/lab.js';
import { type MeasureOptions, measureAll, PING_RUNS, vmMtu } from './peers/measure.js';
import { pasta } from './peers/pasta.js';
import type { Peer } from './peers/peer.js';
import { markdownReport, type RunRecord, textReport } from './peers/report.js';
import { slirp4netns } from './peers/slirp4netns.js';
import { softnet } from './peers/softnet.js';
import {
  ALL_METRICS,
  fmt,
  ipv6OverIpv4,
  type RoundResult,
  ratios,
  summarize,
  targets,
} from './peers/summary.js';
import { Topology } from './peers/topology.js';

const ALL: Peer[] = [softnet, kernel, pasta, slirp4netns];
/** The program each peer needs, so a missing one is reported instead of failing every round. */
const PROGRAMS: Record<string, string> = {
  softnet: 'busybox',
  kernel: 'nft',
  pasta: 'pasta',
  slirp4netns: 'slirp4netns',
};

function installed(program: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** One peer in one round: a fresh VM namespace, attach, the measurements, detach. */
async function measurePeer(
  topo: Topology,
  peer: Peer,
  round: number,
  opts: MeasureOptions,
): Promise<RoundResult> {
  const program = PROGRAMS[peer.name];
  const base = { round, peer: peer.name, load: load1() };
  if (program && !installed(program)) {
    return { ...base, metrics: {}, errors: [`not run: ${program} is not installed`] };
  }
  const vm = await topo.vm();
  try {
    let attachment: Awaited<ReturnType<Peer['attach']>>;
    try {
      attachment = await peer.attach(topo, vm);
    } catch (e) {
      return { ...base, metrics: {}, errors: [`could not attach: ${errorText(e)}`] };
    }
    const { metrics, errors } = await measureAll(topo, vm, opts, peer.ipv6, attachment.pid);
    const mtu = await vmMtu(topo, vm).catch((e) => {
      errors.push(`mtu: ${errorText(e)}`);
      return undefined;
    });
    await attachment.detach().catch((e) => errors.push(`detach: ${errorText(e)}`));
    return { ...base, metrics, mtu, errors };
  } finally {
    topo.lab.removeNetns(vm);
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function progress(r: RoundResult, rounds: number): string {
  const figures = ALL_METRICS.filter((m) => r.metrics[m.key] !== undefined).map(
    (m) => `${m.label} ${fmt(m.key, r.metrics[m.key])} ${m.unit}`,
  );
  const problems = r.errors.map((e) => `(${e.split('\n')[0]})`);
  return `round ${r.round}/${rounds} ${r.peer} (load ${r.load.toFixed(2)}): ${[...figures, ...problems].join(', ')}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '5' },
      peers: { type: 'string', default: ALL.map((p) => p.name).join(',') },
      out: { type: 'string', default: fileURLToPath(new URL('../../bench/results/', import.meta.url)) },
    },
  });
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  const chosen = values.peers.split(',').map((name) => {
    const p = ALL.find((x) => x.name === name);
    if (!p) throw new Error(`--peers: unknown peer '${name}' (known: ${ALL.map((x) => x.name).join(', ')})`);
    return p;
  });
  if (!(rounds >= 1 && rounds <= 10 && seconds >= 1 && seconds <= 60)) {
    throw new Error('--rounds must be 1-10 and --seconds 1-60');
  }
  if (process.getuid?.() !== 0) throw new Error('the peers bench makes namespaces: run it as root');

  const stale = sweepStale();
  if (stale.length) log(`removed namespaces a killed bench left: ${stale.join(' ')}`);
  const opts: MeasureOptions = { seconds, pings: PING_RUNS };
  const startedAt = new Date().toISOString();
  const loadAtStart = load1();
  const results: RoundResult[] = [];
  const lab = new Lab();
  try {
    const topo = await Topology.build(lab);
    for (let round = 1; round <= rounds; round++) {
      // Each round starts with another peer, so no peer always runs right after the same one.
      const order = chosen.map((_, i) => chosen[(i + round - 1) % chosen.length]);
      for (const peer of order) {
        const r = await measurePeer(topo, peer, round, opts);
        log(progress(r, rounds));
        results.push(r);
      }
    }
  } finally {
    await lab.cleanup();
  }

  const peers = summarize(chosen, results);
  const soft = peers.find((p) => p.name === 'softnet');
  const run: RunRecord = {
    startedAt,
    finishedAt: new Date().toISOString(),
    conditions: conditions(),
    load: { atStart: loadAtStart, atEnd: load1() },
    rounds,
    measure: opts,
    peers,
    ratios: Object.fromEntries(
      soft ? peers.filter((p) => p !== soft).map((p) => [p.name, ratios(soft, p)]) : [],
    ),
    ipv6OverIpv4: Object.fromEntries(peers.filter((p) => p.ipv6).map((p) => [p.name, ipv6OverIpv4(p)])),
    targets: targets(results),
    results,
  };
  process.stdout.write(`\n${textReport(run)}`);
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, 'peers.json'), `${JSON.stringify(run, null, 2)}\n`);
  writeFileSync(join(values.out, 'peers.md'), markdownReport(run));
  writeFileSync(join(values.out, 'peers.svg'), svgChart(run));
  log(`wrote peers.json, peers.md and peers.svg in ${values.out}`);
}

main().catch((e) => {
  log(`peers bench: ${errorText(e)}`);
  process.exitCode = 1;
});
