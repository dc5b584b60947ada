// The measurements, each run from inside the VM namespace against the world's server: over IPv4 TCP both
// ways, 64-byte UDP and ping at 20 and at 2 a second (issue 15 judges the round trip at both rates), then,
// for a peer that gives the VM IPv6, TCP both ways over IPv6; and the parsing of what iperf3 and ping
// report. A ping figure is the median of the replies' own times, so one slow wakeup does not move it.
// For a peer with a process of its own, TCP and UDP also record the CPU that process spent on them (not
// ping: at 2 or 20 frames a second a process's idle timers and V8's housekeeping weigh as much as the pings).

import { cpuNs } from './cpu.js';
import { reachesServer6 } from './peer.js';
import { median } from './summary.js';
import { SERVER, SERVER6, type Topology } from './topology.js';

/** The metrics of one peer in one round; a metric that could not be measured is absent. */
export interface Metrics {
  /** iperf3 TCP VM -> world, bits a second the receiver got. */
  tcpUp?: number;
  /** iperf3 TCP world -> VM (-R), bits a second the receiver got. */
  tcpDown?: number;
  /** iperf3 UDP, 64-byte payloads VM -> world, datagrams a second the world received. */
  udpPps?: number;
  /** The same test's datagrams a second the VM's iperf3 got sent: shows whether the sender or the path limited it. */
  udpSentPps?: number;
  /** ping VM -> server at 20 a second, median round trip of the replies in microseconds. */
  ping20Us?: number;
  /** ping VM -> server at 2 a second, median round trip of the replies in microseconds. */
  ping2Us?: number;
  /** iperf3 -6 TCP VM -> world's IPv6 server, bits a second the receiver got. */
  tcp6Up?: number;
  /** iperf3 -6 TCP world -> VM (-R) over IPv6, bits a second the receiver got. */
  tcp6Down?: number;
  /** The peer's process during TCP VM -> world: percent of one core over the test's length. */
  tcpUpCpu?: number;
  /** The same during TCP world -> VM. */
  tcpDownCpu?: number;
  /** The peer's process during 64-byte UDP: microseconds of CPU a datagram the world received. */
  udpCpuUs?: number;
}

export type Metric = keyof Metrics;

/** One ping run: `count` echo requests `interval` seconds apart, whose median round trip is `metric`. */
export interface PingRun {
  metric: 'ping20Us' | 'ping2Us';
  count: number;
  interval: number;
}

/** The ping runs of issue 15's round-trip targets, in the order they run. */
export const PING_RUNS: PingRun[] = [
  { metric: 'ping20Us', count: 100, interval: 0.05 },
  { metric: 'ping2Us', count: 20, interval: 0.5 },
];

/** How the measurements run. */
export interface MeasureOptions {
  /** iperf3 test length, seconds. */
  seconds: number;
  pings: PingRun[];
}

interface IperfSum {
  seconds: number;
  bits_per_second: number;
  packets?: number;
  lost_packets?: number;
}

interface IperfReport {
  error?: string;
  end?: { sum_sent?: IperfSum; sum_received?: IperfSum };
}

async function iperf(
  topo: Topology,
  vm: string,
  port: number,
  seconds: number,
  extra: string[],
  server = SERVER,
): Promise<{ sent: IperfSum; received: IperfSum }> {
  const args = ['-c', server, '-p', String(port), '-t', String(seconds), '--connect-timeout', '3000', '-J'];
  let stdout = '';
  try {
    stdout = (await topo.lab.exec(vm, 'iperf3', [...args, ...extra], (seconds + 20) * 1000)).stdout;
  } catch (e) {
    // iperf3 exits non-zero on failure but still prints its JSON with the reason.
    stdout = (e as { stdout?: string }).stdout ?? '';
    if (!stdout) throw e;
  }
  const report = JSON.parse(stdout) as IperfReport;
  const sent = report.end?.sum_sent;
  const received = report.end?.sum_received;
  if (report.error || !sent || !received) {
    throw new Error(`iperf3 ${extra.join(' ')}: ${report.error ?? 'no sender and receiver sums'}`);
  }
  return { sent, received };
}

/**
 * TCP throughput in bits a second as the receiving side counted it; `reverse` is world -> VM, `ipv6` to
 * the IPv6 server (whose port `port` must then be).
 */
export async function tcpThroughput(
  topo: Topology,
  vm: string,
  port: number,
  seconds: number,
  reverse: boolean,
  ipv6 = false,
): Promise<number> {
  const extra = [...(ipv6 ? ['-6'] : []), ...(reverse ? ['-R'] : [])];
  const { received } = await iperf(topo, vm, port, seconds, extra, ipv6 ? SERVER6 : SERVER);
  return received.bits_per_second;
}

/** 64-byte UDP datagrams a second the world received, and the VM sent, while the VM sent as fast as it could. */
export async function udpRate(
  topo: Topology,
  vm: string,
  port: number,
  seconds: number,
): Promise<{ received: number; sent: number }> {
  const { sent, received } = await iperf(topo, vm, port, seconds, ['-u', '-l', '64', '-b', '0']);
  if (sent.packets === undefined || received.packets === undefined || received.lost_packets === undefined) {
    throw new Error('iperf3 -u: no packet counts');
  }
  return {
    received: (received.packets - received.lost_packets) / received.seconds,
    sent: sent.packets / sent.seconds,
  };
}

/** The median of the replies' round trips in microseconds; fails if any request goes unanswered. */
export async function pingRtt(topo: Topology, vm: string, count: number, interval: number): Promise<number> {
  const args = ['-n', '-c', String(count), '-i', String(interval), '-W', '1', SERVER];
  let stdout: string;
  try {
    stdout = (await topo.lab.exec(vm, 'ping', args, Math.ceil((count * interval + 10) * 1000))).stdout;
  } catch (e) {
    // ping exits 1 when no reply came (or it failed outright); what it printed still counts the replies.
    stdout = (e as { stdout?: string }).stdout ?? '';
    if (!stdout) throw e;
  }
  const times = replyTimes(stdout);
  if (times.size < count) throw new Error(`ping: ${times.size} of ${count} answered`);
  return median([...times.values()])! * 1000;
}

/** Each answered request's round trip in milliseconds, by sequence number, from ping's per-reply lines. */
export function replyTimes(stdout: string): Map<number, number> {
  const times = new Map<number, number>();
  for (const line of stdout.split('\n')) {
    // A duplicate came after the first reply: its time is not the request's round trip.
    if (line.includes('DUP!')) continue;
    const m = /icmp_seq=(\d+) .*time=([\d.]+) ms/.exec(line);
    if (m) times.set(Number(m[1]), Number(m[2]));
  }
  return times;
}

/** The MTU of the interface `vm` reaches the server through, as the VM's kernel has it. */
export async function vmMtu(topo: Topology, vm: string): Promise<number> {
  const route = await topo.lab.exec(vm, 'ip', ['-o', '-4', 'route', 'get', SERVER], 5000);
  const dev = /\bdev (\S+)/.exec(route.stdout)?.[1];
  if (!dev) throw new Error(`no route to ${SERVER}: ${route.stdout}`);
  const link = await topo.lab.exec(vm, 'ip', ['-o', 'link', 'show', 'dev', dev], 5000);
  const mtu = /\bmtu (\d+)/.exec(link.stdout)?.[1];
  if (!mtu) throw new Error(`no mtu for ${dev}: ${link.stdout}`);
  return Number(mtu);
}

/** One measurement, and how the CPU the peer's process spent on it (ns) becomes a metric of its own. */
interface Step {
  name: string;
  run: () => Promise<Metrics>;
  cpu?: (ns: number, got: Metrics) => Metrics;
}

/**
 * Runs every measurement once, the IPv6 ones only with `ipv6` and once the VM reaches the IPv6 server; a
 * failed one is reported in `errors` and left out of the metrics. With the `pid` of the peer's process,
 * IPv4 TCP and UDP also record the CPU that process spent on them.
 */
export async function measureAll(
  topo: Topology,
  vm: string,
  opts: MeasureOptions,
  ipv6: boolean,
  pid?: number,
): Promise<{ metrics: Metrics; errors: string[] }> {
  const port = topo.iperfPort(0);
  const port6 = topo.iperfPort6(0);
  // iperf3's connection set-up and teardown are outside its test length; the peer is idle in them.
  const share = (ns: number) => (ns / (opts.seconds * 1e9)) * 100;
  const steps: Step[] = [
    {
      name: 'tcpUp',
      run: async () => ({ tcpUp: await tcpThroughput(topo, vm, port, opts.seconds, false) }),
      cpu: (ns) => ({ tcpUpCpu: share(ns) }),
    },
    {
      name: 'tcpDown',
      run: async () => ({ tcpDown: await tcpThroughput(topo, vm, port, opts.seconds, true) }),
      cpu: (ns) => ({ tcpDownCpu: share(ns) }),
    },
    {
      name: 'udpPps',
      run: async () => {
        const { received, sent } = await udpRate(topo, vm, port, opts.seconds);
        return { udpPps: received, udpSentPps: sent };
      },
      cpu: (ns, got) => (got.udpPps ? { udpCpuUs: ns / 1000 / (got.udpPps * opts.seconds) } : {}),
    },
    ...opts.pings.map(
      ({ metric, count, interval }): Step => ({
        name: metric,
        run: async () => ({ [metric]: await pingRtt(topo, vm, count, interval) }),
      }),
    ),
  ];
  const steps6: Step[] = [
    {
      name: 'tcp6Up',
      run: async () => ({ tcp6Up: await tcpThroughput(topo, vm, port6, opts.seconds, false, true) }),
    },
    {
      name: 'tcp6Down',
      run: async () => ({ tcp6Down: await tcpThroughput(topo, vm, port6, opts.seconds, true, true) }),
    },
  ];
  const metrics: Metrics = {};
  const errors: string[] = [];
  if (ipv6) {
    // The VM's IPv6 may come later than its IPv4 (router advertisement, duplicate address detection):
    // waited for once, here, and when it never comes, both IPv6 figures are missing for that reason.
    const ready = await reachesServer6(topo, vm).then(
      () => null,
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
    if (ready === null) steps.push(...steps6);
    else for (const { name } of steps6) errors.push(`${name}: ${ready}`);
  }
  for (const { name, run, cpu } of steps) {
    try {
      await topo.ensureServers();
      const before = pid !== undefined && cpu ? cpuNs(pid) : undefined;
      const got = await run();
      Object.assign(metrics, got);
      if (before !== undefined && pid !== undefined && cpu) {
        try {
          Object.assign(metrics, cpu(cpuNs(pid) - before, got));
        } catch (e) {
          errors.push(`${name} CPU: ${firstLine(e)}`);
        }
      }
    } catch (e) {
      errors.push(`${name}: ${firstLine(e)}`);
    }
  }
  return { metrics, errors };
}

/** The first line of an error's message, for one-line reports. */
export function firstLine(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] : String(e);
}
