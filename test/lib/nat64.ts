// What an IPv6-only network's tests add to the world of test/lib/world.ts (started with { ipv6: true }):
//
//   - a name with only an A record: a second dnsmasq in the world namespace at V4ONLY_DNS answers
//     V4ONLY_NAME locally (A SERVER, and NOERROR without records for AAAA, the answer DNS64 synthesizes
//     from) and forwards every other name to the world's own dnsmasq; the host resolves with it;
//   - a path with a smaller MTU: the router reaches MTU_SERVER (the world's too) by a route of MTU
//     PATH_MTU, so a datagram bigger than that with DF gets "fragmentation needed" from the router; an HTTP
//     sink there answers each POST with the sha256 and length of what it received;
//   - the addresses of RFC 6052 (an IPv4 address in a /96), and the PREF64 option (RFC 8781) of router
//     advertisements read from their bytes, since rdisc6 does not print it;
//   - in a VM namespace: SLAAC from softnet (attachVm64), a DHCPv4 client that leaves IPv6 alone (udhcpc4),
//     and tcpdump lines with the kernel's own link chatter told apart (captureLines, linkChatter).
//
// Everything runs in the world's namespaces or the topology's (so cleanup() removes it) and is checked to
// answer before the functions resolve.

import { randomInt } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startSink } from './http-sink.js';
import { acceptRa, addrs6, expand6, type Ula, vm64, waitAddress, waitLinkLocal } from './ipv6.js';
import { type Softnet, softnetForVm } from './softnet.js';
import { tcpdumpListening } from './tcpdump.js';
import type { Topology } from './topology.js';
import { SERVER, Tail, until, type World } from './world.js';

/** The network-specific NAT64 prefix the tests use (the world is on documentation addresses, see RFC 6052 3.1). */
export const NAT64_PREFIX = '2001:db8:64::/96';
/** The second dnsmasq's address in the world. */
export const V4ONLY_DNS = '203.0.113.53';
/** A name with an A record (SERVER) and no AAAA. */
export const V4ONLY_NAME = 'v4only.test';
/** The world's address behind the router's smaller-MTU route, and that MTU. */
export const MTU_SERVER = '203.0.113.14';
export const PATH_MTU = 1400;
/** The HTTP sink's port at MTU_SERVER. */
export const SINK_PORT = 8090;

/** A ULA /48 of fd00:64::/32 with a random third group (never with a leading zero, so it prints as built). */
export function nat64Ula(): Ula {
  const base = `fd00:64:${randomInt(0x1000, 0x10000).toString(16)}`;
  return { cidr: `${base}::/48`, base, gateway: `${base}::1` };
}

/** The IPv6 address of IPv4 `v4` in the /96 `prefix` (RFC 6052 2.2), in the compressed hex form tools print. */
export function synth64(v4: string, prefix = NAT64_PREFIX): string {
  const g = expand6(prefix.split('/')[0]);
  const [a, b, c, d] = v4.split('.').map(Number);
  g[6] = (a << 8) | b;
  g[7] = (c << 8) | d;
  const hex = g.map((x) => x.toString(16));
  // The longest run of zero groups becomes '::' (RFC 5952 4.2.3).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** A PREF64 option (RFC 8781 4) as read from its bytes. */
export interface Pref64 {
  /** The prefix with its length: `2001:db8:64::/96`. */
  prefix: string;
  /** The prefix length code (0: /96). */
  plc: number;
  /** Seconds (the scaled lifetime times 8). */
  lifetime: number;
}

/** One router advertisement's options, from its bytes. */
export interface RaOptions {
  /** Every option's type, in order. */
  types: number[];
  pref64: Pref64[];
}

const PLC_LENGTHS = [96, 64, 56, 48, 40, 32];

/** The bytes of each frame `tcpdump -xx` printed (one frame: a header line, then its `0xNNNN:` hex lines). */
export function framesOfHexDump(text: string): Buffer[] {
  const frames: string[] = [];
  for (const line of text.split('\n')) {
    const m = line.match(/^\s+0x[0-9a-f]{4}:\s+((?:[0-9a-f]{2,4}\s?)+)/);
    if (m) {
      if (frames.length === 0) frames.push('');
      frames[frames.length - 1] += m[1].replace(/\s+/g, '');
    } else if (line.trim() !== '') frames.push('');
  }
  return frames.filter(Boolean).map((h) => Buffer.from(h, 'hex'));
}

/** The options of an Ethernet frame carrying an ICMPv6 router advertisement, or null if it is not one. */
export function raOptions(frame: Buffer): RaOptions | null {
  // Ethernet, then IPv6 with ICMPv6 straight after (an RA carries no extension header), then the RA's 16 bytes.
  if (frame.length < 14 + 40 + 16 || frame.readUInt16BE(12) !== 0x86dd) return null;
  if (frame[14 + 6] !== 58 || frame[14 + 40] !== 134) return null;
  const end = Math.min(frame.length, 14 + 40 + frame.readUInt16BE(14 + 4));
  const types: number[] = [];
  const pref64: Pref64[] = [];
  for (let at = 14 + 40 + 16; at + 2 <= end; ) {
    const len = frame[at + 1] * 8;
    if (len === 0 || at + len > end) break;
    types.push(frame[at]);
    if (frame[at] === 38 && len === 16) {
      const word = frame.readUInt16BE(at + 2);
      const plc = word & 7;
      const groups: string[] = [];
      for (let i = 0; i < 6; i++) groups.push(frame.readUInt16BE(at + 4 + 2 * i).toString(16));
      const bits = PLC_LENGTHS[plc] ?? -1;
      pref64.push({ prefix: `${groups.join(':')}:0:0/${bits}`, plc, lifetime: (word >> 3) * 8 });
    }
    at += len;
  }
  return { types, pref64 };
}

/** A capture of the router advertisements reaching `ifname`, with their bytes. */
export interface RaCapture {
  /** The advertisements seen so far. */
  seen(): RaOptions[];
  /** Ends tcpdump; the advertisements and all it printed. */
  stop(): Promise<{ ras: RaOptions[]; text: string }>;
}

/** Starts tcpdump -xx for router advertisements coming in on `ifname` in `ns`; resolves once it listens. */
export async function captureRas(topo: Topology, ns: string, ifname: string): Promise<RaCapture> {
  const child = topo.spawn(ns, 'tcpdump', [
    '-n',
    '-l',
    '-xx',
    '--immediate-mode',
    '-s',
    '1500',
    '-Q',
    'in',
    '-i',
    ifname,
    'icmp6 and ip6[40] == 134',
  ]);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString('latin1');
  });
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  await tcpdumpListening(child, `tcpdump for advertisements on ${ifname} in ${ns}`);
  const parse = () =>
    framesOfHexDump(out)
      .map(raOptions)
      .filter((r): r is RaOptions => r !== null);
  return {
    seen: parse,
    async stop() {
      await sleep(200);
      child.kill('SIGTERM');
      await closed;
      return { ras: parse(), text: out };
    },
  };
}

/** A running tcpdump printing one line a packet; stop() ends it and returns those lines. */
export interface LineCapture {
  seen(): string;
  stop(): Promise<string[]>;
}

/**
 * Starts `tcpdump -n` on `iface` in `ns` (only what comes in with `inbound`) and resolves once it listens.
 * stop() leaves what is in flight 300 ms to arrive first.
 */
export async function captureLines(
  topo: Topology,
  ns: string,
  iface: string,
  filter: string,
  inbound = false,
): Promise<LineCapture> {
  const args = ['-n', '-l', '--immediate-mode', '-i', iface, ...(inbound ? ['-Q', 'in'] : [])];
  const child = topo.spawn(ns, 'tcpdump', [...args, filter]);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString('latin1');
  });
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  await tcpdumpListening(child, `tcpdump on ${iface} in ${ns}`);
  return {
    seen: () => out,
    async stop() {
      await sleep(300);
      child.kill('SIGTERM');
      await closed;
      return out.split('\n').filter(Boolean);
    },
  };
}

/**
 * Whether a `tcpdump -n` line is a kernel's own link chatter from a link-local address (router and neighbour
 * solicitations, MLD): what the host namespace's kernel sends on the uplink by itself, whatever softnet does.
 */
export function linkChatter(line: string): boolean {
  return /^\S+ IP6 fe80:[0-9a-f:]+ > (ff02|fe80):[0-9a-f:]+: (HBH )?ICMP6, (router solicitation|neighbor (solicitation|advertisement)|multicast listener)/.test(
    line,
  );
}

/**
 * Starts the second dnsmasq (V4ONLY_DNS, V4ONLY_NAME A SERVER only; everything else asked of the world's)
 * and makes the host resolve with it, so softnet's DNS forwards there. Call before softnet starts.
 */
export async function startV4OnlyDns(world: World): Promise<void> {
  const { topo } = world;
  await topo.exec(world.world, 'ip', ['addr', 'add', `${V4ONLY_DNS}/32`, 'dev', 'eth0']);
  const tail = new Tail(
    topo.spawn(world.world, 'dnsmasq', [
      '--no-daemon',
      '--no-resolv',
      '--no-hosts',
      '--conf-file=/dev/null',
      `--listen-address=${V4ONLY_DNS}`,
      '--bind-interfaces',
      `--local=/${V4ONLY_NAME}/`,
      `--address=/${V4ONLY_NAME}/${SERVER}`,
      `--server=${SERVER}`,
      `--pid-file=${join(topo.dir, 'dnsmasq-v4only.pid')}`,
      '--log-queries',
      `--log-facility=${join(topo.dir, 'dnsmasq-v4only.log')}`,
    ]),
  );
  const dig = (type: string, name: string) =>
    topo.status(world.world, 'dig', [`@${V4ONLY_DNS}`, type, name, '+time=1', '+tries=1'], 5000);
  await until(`the A-only dnsmasq at ${V4ONLY_DNS} answers`, async () => {
    if (tail.exited) throw new Error(`dnsmasq exited:\n${tail.output}`);
    const a = await dig('A', V4ONLY_NAME);
    return a.stdout.includes(`${V4ONLY_NAME}.\t`) && a.stdout.includes(SERVER);
  });
  // The control of DNS64's synthesis: the name has no AAAA here, and the answer says so without an error.
  const aaaa = await dig('AAAA', V4ONLY_NAME);
  if (!/status: NOERROR/.test(aaaa.stdout) || /ANSWER: [1-9]/.test(aaaa.stdout))
    throw new Error(`AAAA ${V4ONLY_NAME} is not an empty NOERROR answer:\n${aaaa.stdout}`);
  world.resolver(world.host, [V4ONLY_DNS]);
}

/** Makes MTU_SERVER (behind the router's route of PATH_MTU) and starts the HTTP sink there. */
export async function startSmallMtuSink(world: World): Promise<void> {
  const { topo } = world;
  await topo.exec(world.world, 'ip', ['addr', 'add', `${MTU_SERVER}/32`, 'dev', 'eth0']);
  await topo.exec(world.router, 'ip', [
    'route',
    'add',
    `${MTU_SERVER}/32`,
    'via',
    SERVER,
    'mtu',
    String(PATH_MTU),
  ]);
  await startSink(world, MTU_SERVER, SINK_PORT);
}

/** What busybox udhcpc got: its exit code and the events its script saw ("bound <ip> <router>" ...). */
export interface Dhcp4Result {
  code: number;
  events: string[];
  /** The address of the last "bound" event, or null. */
  ip: string | null;
  output: string;
}

/**
 * Runs busybox udhcpc -n -q -t `tries` on `ifname` in `ns`. On a lease its script adds the address and a
 * default route by the router, IPv4 only (the usual `ip addr flush` would take the SLAAC address too).
 */
export async function udhcpc4(topo: Topology, ns: string, ifname = 'eth0', tries = 3): Promise<Dhcp4Result> {
  const log = join(topo.dir, `udhcpc4-${ns}.events`);
  const script = join(topo.dir, `udhcpc4-${ns}.sh`);
  writeFileSync(log, '');
  writeFileSync(
    script,
    `#!/bin/sh
echo "$1 $ip $router" >> ${log}
case "$1" in
  bound|renew) ip -4 addr add "$ip/$mask" dev "$interface"; ip -4 route replace default via "$router" dev "$interface" ;;
esac
exit 0
`,
    { mode: 0o755 },
  );
  const r = await topo.status(
    ns,
    'busybox',
    ['udhcpc', '-i', ifname, '-f', '-n', '-q', '-t', String(tries), '-T', '1', '-s', script],
    (tries * 3 + 10) * 1000,
  );
  const events = readFileSync(log, 'utf8').split('\n').filter(Boolean);
  const bound = events.filter((e) => e.startsWith('bound ')).pop();
  return { code: r.code, events, ip: bound?.split(' ')[1] ?? null, output: r.stdout + r.stderr };
}

/** A VM namespace attached to softnet, whose kernel did SLAAC from softnet's advertisement. */
export interface Vm64 {
  ns: string;
  mac: string;
  softnet: Softnet;
  /** Its SLAAC address in its /64. */
  addr: string;
}

/**
 * Makes VM namespace `name` that does SLAAC, attaches it with `args` and waits for its address in the
 * `id`-th /64 of `ula`; the VM resolves names with the gateway P::1.
 */
export async function attachVm64(
  world: World,
  ula: Ula,
  name: string,
  mac: string,
  id: number,
  args: string[],
  ifname = 'eth0',
): Promise<Vm64> {
  const { topo } = world;
  const ns = await topo.netns(name);
  // Before softnet brings the NIC up, so the kernel's first router solicitation goes out with it.
  await acceptRa(topo, ns);
  await topo.exec(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=0']);
  const softnet = await softnetForVm(topo, world.host, ns, mac, args);
  let addr: string;
  try {
    addr = await waitAddress(topo, ns, ifname, vm64(ula, id), 20_000);
  } catch (e) {
    const have = (await addrs6(topo, ns, ifname)).map((a) => `${a.local}/${a.prefixlen} ${a.scope}`);
    throw new Error(
      `${(e as Error).message}\nits addresses: ${have.join(', ')}\nsoftnet:\n${softnet.lines.slice(-40).join('\n')}`,
    );
  }
  await waitLinkLocal(topo, ns, ifname);
  world.resolver(ns, [ula.gateway]);
  return { ns, mac, softnet, addr };
}
