// IPv6 as a VM namespace's real tools see it: its addresses (kernel SLAAC), what rdisc6 reads from the
// router's advertisement, what dhcpcd gets by DHCPv6, its neighbour table; and the ways a test watches and
// attacks a link: tcpdump with every ND option printed, scapy frames built from the test's expressions.
// Addresses are compared as numbers (expand6), never as text, since tools print them in different forms.

import { randomInt } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tcpdumpListening } from './tcpdump.js';
import type { Topology } from './topology.js';
import { until } from './world.js';

const PYTHON = '/usr/bin/python3';

/** A test network's ULA /48 (--ipv6-prefix) and the addresses softnet derives from it. */
export interface Ula {
  /** The /48 as --ipv6-prefix takes it: `fd00:5:abcd::/48`. */
  cidr: string;
  /** Its first three groups: `fd00:5:abcd`. */
  base: string;
  /** The gateway's ULA address on the host link and at the VMs' DNS: P::1. */
  gateway: string;
}

/** A ULA /48 of fd00:5::/32 with a random third group (never one with a leading zero, so it prints as built). */
export function testUla(): Ula {
  const base = `fd00:5:${randomInt(0x1000, 0x10000).toString(16)}`;
  return { cidr: `${base}::/48`, base, gateway: `${base}::1` };
}

/** The /64 softnet gives the VM attached `id`-th (1, 2, ...) to a network of `ula`. */
export function vm64(ula: Ula, id: number): string {
  return `${ula.base}:${id.toString(16)}::/64`;
}

/** An IPv6 address (with an optional %zone) as eight 16-bit groups; throws on anything else. */
export function expand6(text: string): number[] {
  const addr = text.split('%')[0].toLowerCase();
  const halves = addr.split('::');
  if (halves.length > 2) throw new Error(`not an IPv6 address: ${text}`);
  const groups = (s: string) => (s === '' ? [] : s.split(':'));
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const all = [...head, ...Array<string>(Math.max(fill, 0)).fill('0'), ...tail];
  if (all.length !== 8 || all.some((g) => !/^[0-9a-f]{1,4}$/.test(g)))
    throw new Error(`not an IPv6 address: ${text}`);
  return all.map((g) => Number.parseInt(g, 16));
}

/** Whether two IPv6 texts name the same address. */
export function same6(a: string, b: string): boolean {
  const x = expand6(a);
  const y = expand6(b);
  return x.every((g, i) => g === y[i]);
}

/** Whether `addr` is inside `cidr` (`prefix/len`). */
export function inPrefix(addr: string, cidr: string): boolean {
  const [p, lenText] = cidr.split('/');
  const len = Number(lenText);
  const a = expand6(addr);
  const b = expand6(p);
  for (let i = 0; i < 8; i++) {
    const bits = Math.min(16, Math.max(0, len - i * 16));
    const mask = bits === 0 ? 0 : (0xffff << (16 - bits)) & 0xffff;
    if ((a[i] & mask) !== (b[i] & mask)) return false;
  }
  return true;
}

/** One address of `ip -6 -j addr`. */
export interface Addr6 {
  local: string;
  prefixlen: number;
  scope: string;
  tentative?: boolean;
  dadfailed?: boolean;
  dynamic?: boolean;
}

/** The IPv6 addresses on `ifname` in `ns`. */
export async function addrs6(topo: Topology, ns: string, ifname: string): Promise<Addr6[]> {
  const r = await topo.exec(ns, 'ip', ['-6', '-j', 'addr', 'show', 'dev', ifname]);
  const links = JSON.parse(r.stdout || '[]') as Array<{ addr_info?: Array<Addr6 & { family: string }> }>;
  return links.flatMap((l) => l.addr_info ?? []).filter((a) => a.family === 'inet6');
}

/** Waits for a usable (not tentative) global address of `cidr` on `ifname` in `ns`; returns it. */
export async function waitAddress(
  topo: Topology,
  ns: string,
  ifname: string,
  cidr: string,
  timeoutMs = 20_000,
): Promise<string> {
  const usable = (a: Addr6) =>
    a.scope === 'global' && !a.tentative && !a.dadfailed && inPrefix(a.local, cidr);
  return until(
    `an address of ${cidr} on ${ifname} in ${ns}`,
    async () => (await addrs6(topo, ns, ifname)).find(usable)?.local,
    timeoutMs,
    200,
  );
}

/** Waits for `ifname`'s link-local address to finish DAD; returns it. */
export async function waitLinkLocal(
  topo: Topology,
  ns: string,
  ifname: string,
  timeoutMs = 10_000,
): Promise<string> {
  return until(
    `a usable link-local address on ${ifname} in ${ns}`,
    async () => (await addrs6(topo, ns, ifname)).find((a) => a.scope === 'link' && !a.tentative)?.local,
    timeoutMs,
    100,
  );
}

/**
 * Makes the kernel of `ns` do SLAAC from router advertisements (accept_ra=2, so even if forwarding were on)
 * on its links, also those made later: call before softnet makes the VM's NIC, so its first RS goes out.
 */
export async function acceptRa(topo: Topology, ns: string, ifname?: string): Promise<void> {
  const keys = ifname ? [ifname] : ['all', 'default'];
  await topo.exec(ns, 'sysctl', ['-qw', ...keys.map((k) => `net.ipv6.conf.${k}.accept_ra=2`)]);
}

/** A prefix option of a router advertisement as rdisc6 prints it. */
export interface RaPrefix {
  prefix: string;
  onLink: boolean;
  autonomous: boolean;
  valid: number;
  preferred: number;
}

/** A router advertisement as rdisc6 prints it. */
export interface Ra {
  hopLimit: number;
  managed: boolean;
  other: boolean;
  /** Seconds. */
  routerLifetime: number;
  prefixes: RaPrefix[];
  mtu: number | null;
  rdnss: string[];
  /** The router's source link-layer address option. */
  sourceMac: string | null;
  /** The advertisement's source address. */
  from: string;
  /** All rdisc6 printed. */
  text: string;
}

/** The fields rdisc6 prints for one advertisement. */
export function parseRdisc6(text: string): Ra {
  const field = (name: string) => text.match(new RegExp(`^\\s*${name}\\s*:\\s*(.*)$`, 'm'))?.[1].trim();
  const yes = (v: string | undefined) => v === 'Yes';
  const seconds = (v: string | undefined) => Number(v?.match(/^(\d+)/)?.[1] ?? Number.NaN);
  const prefixes: RaPrefix[] = [];
  // Each prefix block: " Prefix : P/len" then its indented lines, up to the next option.
  const blocks = text.split(/^ Prefix\s*:\s*/m).slice(1);
  for (const b of blocks) {
    const line = (name: string) => b.match(new RegExp(`^\\s*${name}\\s*:\\s*(.*)$`, 'm'))?.[1].trim();
    prefixes.push({
      prefix: b.split('\n')[0].trim(),
      onLink: yes(line('On-link')),
      autonomous: yes(line('Autonomous address conf\\.')),
      valid: seconds(line('Valid time')),
      preferred: seconds(line('Pref\\. time')),
    });
  }
  const rdnss = [...text.matchAll(/^\s*Recursive DNS server\s*:\s*(\S+)/gm)].map((m) => m[1]);
  const mtu = field('MTU');
  return {
    hopLimit: Number(field('Hop limit')?.match(/^(\d+)/)?.[1] ?? Number.NaN),
    managed: yes(field('Stateful address conf\\.')),
    other: yes(field('Stateful other conf\\.')),
    routerLifetime: seconds(field('Router lifetime')),
    prefixes,
    mtu: mtu ? Number(mtu.match(/^(\d+)/)?.[1]) : null,
    rdnss,
    sourceMac: field('Source link-layer address')?.toLowerCase() ?? null,
    from: text.match(/^\s*from (\S+)/m)?.[1] ?? '',
    text,
  };
}

/** Solicits a router advertisement on `ifname` in `ns` with rdisc6 (3 tries, 1 s apart); rejects if none comes. */
export async function rdisc6(topo: Topology, ns: string, ifname: string): Promise<Ra> {
  const r = await topo.status(ns, 'rdisc6', ['-1', '-n', '-r', '3', '-w', '1000', ifname], 15_000);
  if (r.code !== 0)
    throw new Error(`rdisc6 on ${ifname} got no advertisement (exit ${r.code}):\n${r.stdout}${r.stderr}`);
  return parseRdisc6(r.stdout);
}

/** ping -6 from `ns`, never failing: how many replies came and what ping printed. */
export async function ping6(
  topo: Topology,
  ns: string,
  dst: string,
  count = 3,
): Promise<{ received: number; out: string }> {
  const r = await topo.status(
    ns,
    'ping',
    ['-6', '-n', '-c', String(count), '-i', '0.3', '-W', '1', dst],
    20_000,
  );
  const out = r.stdout + r.stderr;
  return { received: Number(out.match(/(\d+) received/)?.[1] ?? 0), out };
}

/** One entry of an IPv6 neighbour table (`ip -6 -j neigh`). */
export interface Neighbour6 {
  dst: string;
  dev: string;
  lladdr?: string;
  state?: string[];
}

/** The IPv6 neighbour table of `ns`. */
export async function neighbours6(topo: Topology, ns: string): Promise<Neighbour6[]> {
  const r = await topo.exec(ns, 'ip', ['-6', '-j', 'neigh', 'show']);
  const list = JSON.parse(r.stdout || '[]') as Neighbour6[];
  return list.map((n) => ({ ...n, lladdr: n.lladdr?.toLowerCase() }));
}

/** The MAC `ns` has for `addr` on `ifname` (after a ping that makes it ask), or undefined. */
export async function macOf(
  topo: Topology,
  ns: string,
  addr: string,
  ifname: string,
): Promise<string | undefined> {
  await ping6(topo, ns, addr.includes('%') || !addr.startsWith('fe80') ? addr : `${addr}%${ifname}`, 1);
  const list = await neighbours6(topo, ns);
  return list.find((n) => n.dev === ifname && n.lladdr && same6(n.dst, addr))?.lladdr;
}

/** A running tcpdump; stop() ends it and returns what it printed. */
export interface Sniffer6 {
  seen(): string;
  stop(): Promise<string>;
}

/**
 * Starts `tcpdump -n -e -vv -A` on `iface` in `ns` (ND options and payloads printed; only frames coming in
 * with `inbound`, so what `ns` itself sends is not mistaken for what reached it) and resolves once it listens.
 */
export async function sniff6(
  topo: Topology,
  ns: string,
  iface: string,
  filter = 'ip6',
  inbound = false,
): Promise<Sniffer6> {
  const args = ['-n', '-e', '-vv', '-A', '-l', '--immediate-mode', '-s', '512', '-i', iface];
  if (inbound) args.push('-Q', 'in');
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
      // What is in flight reaches the capture before it ends.
      await sleep(300);
      child.kill('SIGTERM');
      await closed;
      return out;
    },
  };
}

// Sends, on interface argv[1], the frames of each further argument: a scapy expression (the test's own) for
// a frame or a list of frames. tiny_first_fragment() builds the two fragments of a TCP SYN whose first
// fragment (under Ether `eth`) ends with a destination options header, so the TCP header is all in the
// second (RFC 7112).
const SCAPY6_SENDER = `
import sys
from scapy.all import *
conf.verb = 0
def tiny_first_fragment(eth, src, dst, sport, dport, marker, ident):
    whole = IPv6(src=src, dst=dst) / IPv6ExtHdrDestOpt(nh=6) / TCP(sport=sport, dport=dport, flags='S') / Raw(marker)
    body = bytes(whole)[40:]
    head = IPv6(src=src, dst=dst, nh=44)
    return [
        eth / head / IPv6ExtHdrFragment(nh=60, offset=0, m=1, id=ident) / Raw(body[:8]),
        eth / head / IPv6ExtHdrFragment(nh=60, offset=1, m=0, id=ident) / Raw(body[8:]),
    ]
frames = []
for e in sys.argv[2:]:
    v = eval(e)
    frames.extend(v if isinstance(v, list) else [v])
sendp(frames, iface=sys.argv[1])
print(len(frames))
`;

/** Builds each scapy expression (a frame, or a list of frames) and sends them in order on `iface` in `ns`; returns how many. */
export async function scapy6(topo: Topology, ns: string, iface: string, exprs: string[]): Promise<number> {
  const r = await topo.exec(ns, PYTHON, ['-c', SCAPY6_SENDER, iface, ...exprs], 60_000);
  const n = Number(r.stdout.trim());
  if (!(n >= exprs.length))
    throw new Error(`scapy sent ${r.stdout.trim()} frames for ${exprs.length}:\n${r.stderr}`);
  return n;
}

/** What dhcpcd told its hook script for DHCPv6 and router advertisements. */
export interface Dhcpcd6Result {
  /** The addresses of its IA_NA. */
  addresses: string[];
  /** The DNS servers of the DHCPv6 answer. */
  dns: string[];
  /** The reason of every hook run, in order (BOUND6, ROUTERADVERT, ...). */
  reasons: string[];
  /** Everything dhcpcd printed. */
  output: string;
}

/**
 * Runs dhcpcd for DHCPv6 on `ifname` in `ns` (in the foreground, asking for an address and DNS), until its
 * hook reports a DHCPv6 binding or `timeoutMs` passes; then stops it and reports what it got.
 */
export async function dhcpcd6(
  topo: Topology,
  ns: string,
  ifname: string,
  timeoutMs = 30_000,
): Promise<Dhcpcd6Result> {
  const log = join(topo.dir, `dhcpcd6-${ns}.env`);
  const hook = join(topo.dir, `dhcpcd6-${ns}.sh`);
  const conf = join(topo.dir, `dhcpcd6-${ns}.conf`);
  writeFileSync(log, '');
  writeFileSync(
    hook,
    `#!/bin/sh
echo "reason=$reason addr=$new_dhcp6_ia_na1_ia_addr1 dns=$new_dhcp6_name_servers" >> ${log}
exit 0
`,
    { mode: 0o755 },
  );
  // No system hooks (-c names ours); the DNS option asked for in the ORO; a DUID of the link's MAC only.
  writeFileSync(conf, 'ipv6only\nduid ll\noption dhcp6_name_servers\nia_na\n');
  const child = topo.spawn(ns, 'dhcpcd', ['-6', '-B', '-d', '-f', conf, '-c', hook, ifname]);
  let output = '';
  child.stdout!.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const lines = () => readFileSync(log, 'utf8').split('\n').filter(Boolean);
  try {
    await until(
      'dhcpcd reports a DHCPv6 binding',
      async () => {
        if (child.exitCode !== null) throw new Error(`dhcpcd exited ${child.exitCode}:\n${output}`);
        return lines().some((l) => /^reason=(BOUND6|REBOOT6|RENEW6|REBIND6) /.test(l));
      },
      timeoutMs,
      200,
    );
  } catch (e) {
    (e as Error).message += `\ndhcpcd printed:\n${output}\nits hook saw:\n${lines().join('\n')}`;
    throw e;
  } finally {
    child.kill('SIGTERM');
    const hard = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(hard);
  }
  const bound = lines().filter((l) => /^reason=(BOUND6|REBOOT6|RENEW6|REBIND6) /.test(l));
  const last = bound[bound.length - 1];
  const value = (k: string) => last.match(new RegExp(`${k}=(\\S*)`))?.[1] ?? '';
  return {
    addresses: value('addr').split(/\s+/).filter(Boolean),
    dns: (last.match(/dns=(.*)$/)?.[1] ?? '').split(/\s+/).filter(Boolean),
    reasons: lines().map((l) => l.match(/^reason=(\S*)/)?.[1] ?? ''),
    output,
  };
}
