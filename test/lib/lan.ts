// A LAN and VMs for the isolation tests: one host namespace where softnet runs (one process per VM, each
// with its own host link and subnet), a LAN namespace behind the host, and the VMs' namespaces.
//
//   vm A ── softnet (host link softnet0, gateway 192.168.64.1/24) ─┐
//   vm B ── softnet (host link softnet1, gateway 192.168.65.1/24) ─┤
//                                                                 host ── lan0 198.51.100.2/24 ══ eth0 198.51.100.1 [lan]
//
// The LAN holds 10.0.0.10/8, 172.16.0.10/12 and 192.168.1.10/24 (private: softnet blocks them unless told
// otherwise) and 203.0.113.10/24 (documentation, standing in for the world: tests allow it with --allow), all
// on its one veth; the host routes those prefixes to it, and lan0 is the uplink for NAT. busybox httpd
// answers on 22, 80 and 8080 at every LAN address, and on 8080 at every address of the host (its gateways
// included). No default route anywhere: nothing can leave the namespaces.
//
// Every namespace accepts unsolicited ARP (arp_accept=1): a forged ARP frame that got through would create
// or change a neighbour entry, so the tests that look at neighbour tables fail if softnet lets one pass.
// Everything is removed by cleanup(), also when a test fails (the Topology's exit handler).

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Softnet, softnetForVm } from './softnet.js';
import { tcpdumpListening } from './tcpdump.js';
import type { Topology } from './topology.js';
import { until, vmOnline } from './world.js';

export const UPLINK = 'lan0';
export const HOST_UPLINK_IP = '198.51.100.2';
export const LAN_ROUTER = '198.51.100.1';
/** The LAN's hosts: private addresses, each in its own RFC 1918 range. */
export const LAN_HOSTS = ['10.0.0.10', '172.16.0.10', '192.168.1.10'] as const;
/** The world's stand-in (documentation space, so a test allows it explicitly). */
export const WORLD = '203.0.113.10';
export const WORLD_NET = '203.0.113.0/24';
export const LAN_PORTS = [22, 80, 8080] as const;
/** The host's HTTP service, at each of its addresses. */
export const HOST_PORT = 8080;
/** What every busybox httpd here serves at /. */
export const PAGE = 'softnet isolation test page\n';

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** A VM as the tests name it: its MAC, and the host link and subnet of its softnet. */
export interface VmSpec {
  name: string;
  mac: string;
  hostLink: string;
  subnet: string;
  gateway: string;
}

export const VM_A: VmSpec = {
  name: 'vma',
  mac: '52:54:00:15:0a:01',
  hostLink: 'softnet0',
  subnet: '192.168.64.0/24',
  gateway: '192.168.64.1',
};
export const VM_B: VmSpec = {
  name: 'vmb',
  mac: '52:54:00:15:0b:01',
  hostLink: 'softnet1',
  subnet: '192.168.65.0/24',
  gateway: '192.168.65.1',
};

/** A running VM: its namespace, its softnet, its leased address, its gateway's MAC and its external MAC. */
export interface Vm {
  spec: VmSpec;
  ns: string;
  softnet: Softnet;
  ip: string;
  gatewayMac: string;
  /** The MAC the host knows the VM by (softnet's MAC translation). */
  extMac: string;
}

/** The host and LAN namespaces and their servers. Construct, register cleanup() in an after hook, then start(). */
export class Lan {
  host!: string;
  lan!: string;
  /** The LAN's MAC on the veth: the host's neighbour entry for LAN_ROUTER. */
  lanMac!: string;
  readonly www: string;

  constructor(readonly topo: Topology) {
    this.www = join(topo.dir, 'www');
  }

  /** Makes the namespaces and the link, starts the servers and waits until each answers the host. */
  async start(): Promise<void> {
    const { topo } = this;
    this.host = await topo.netns('host');
    this.lan = await topo.netns('lan');
    const ip = (ns: string, ...args: string[]) => topo.exec(ns, 'ip', args);
    await acceptUnsolicitedArp(topo, this.host);
    await topo.exec(this.host, 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    await topo.exec(this.lan, 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    await ip(this.host, 'link', 'add', UPLINK, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.lan);
    await ip(this.host, 'addr', 'add', `${HOST_UPLINK_IP}/24`, 'dev', UPLINK);
    await ip(this.host, 'link', 'set', UPLINK, 'up');
    await ip(this.lan, 'addr', 'add', `${LAN_ROUTER}/24`, 'dev', 'eth0');
    for (const a of ['10.0.0.10/8', '172.16.0.10/12', '192.168.1.10/24', `${WORLD}/24`]) {
      await ip(this.lan, 'addr', 'add', a, 'dev', 'eth0');
    }
    await ip(this.lan, 'link', 'set', 'eth0', 'up');
    for (const r of ['10.0.0.0/8', '172.16.0.0/12', '192.168.1.0/24', WORLD_NET]) {
      await ip(this.host, 'route', 'add', r, 'via', LAN_ROUTER);
    }

    mkdirSync(this.www, { recursive: true });
    writeFileSync(join(this.www, 'index.html'), PAGE);
    for (const port of LAN_PORTS) this.httpd(this.lan, port);
    this.httpd(this.host, HOST_PORT);
    // Each server answers by the kernel's path (from the host), so a blocked VM is softnet's doing.
    for (const addr of [...LAN_HOSTS, WORLD]) {
      for (const port of LAN_PORTS) {
        await until(`${addr}:${port} answers the host`, async () => {
          const r = await httpGet(topo, this.host, `http://${addr}:${port}/`, 2);
          return r.code === 0 && r.stdout === PAGE;
        });
      }
    }
    await until('the host service answers', async () => {
      const r = await httpGet(topo, this.host, `http://127.0.0.1:${HOST_PORT}/`, 2);
      return r.code === 0 && r.stdout === PAGE;
    });
    const neigh = await neighbours(topo, this.host);
    const router = neigh.find((n) => n.dst === LAN_ROUTER && n.dev === UPLINK && n.lladdr);
    if (!router) throw new Error(`the host has no neighbour entry for ${LAN_ROUTER}`);
    this.lanMac = router.lladdr!;
  }

  /** Serves the page with busybox httpd on `port` in `ns`. */
  httpd(ns: string, port: number): void {
    this.topo.spawn(ns, 'busybox', ['httpd', '-f', '-p', String(port), '-h', this.www]);
  }

  /** Makes the VM's namespace, starts its softnet in the host with `args` and gets it a lease. */
  async vm(spec: VmSpec, args: string[]): Promise<Vm> {
    const ns = await this.topo.netns(spec.name);
    await acceptUnsolicitedArp(this.topo, ns);
    const vm: Vm = { spec, ns, softnet: undefined as unknown as Softnet, ip: '', gatewayMac: '', extMac: '' };
    await this.attach(vm, args);
    return vm;
  }

  /** Stops the VM's softnet and starts another with `args` (the same engine state, so the same lease). */
  async restart(vm: Vm, args: string[]): Promise<void> {
    await vm.softnet.stop('SIGTERM');
    await this.attach(vm, args);
  }

  private async attach(vm: Vm, args: string[]): Promise<void> {
    const { spec } = vm;
    vm.softnet = await softnetForVm(this.topo, this.host, vm.ns, spec.mac, [
      '--host-link',
      spec.hostLink,
      '--subnet',
      spec.subnet,
      '--state-dir',
      join(this.topo.dir, 'state'),
      ...args,
    ]);
    const started = await vm.softnet.waitFor(/softnet: started .*gateway_mac=(\S+)/);
    vm.gatewayMac = started[1];
    vm.extMac = await vm.softnet.externalMac();
    const lease = await vmOnline(this.topo, vm.ns);
    if (lease.router !== spec.gateway) throw new Error(`lease names router ${lease.router}`);
    vm.ip = lease.ip;
  }

  async cleanup(): Promise<void> {
    await this.topo.cleanup();
  }
}

/** Makes `ns` take unsolicited ARP into its neighbour table, on its links and on those made later. */
export async function acceptUnsolicitedArp(topo: Topology, ns: string): Promise<void> {
  await topo.exec(ns, 'sysctl', [
    '-qw',
    'net.ipv4.conf.all.arp_accept=1',
    'net.ipv4.conf.default.arp_accept=1',
  ]);
}

/** One entry of a neighbour table (`ip -j neigh`). */
export interface Neighbour {
  dst: string;
  dev: string;
  lladdr?: string;
  state?: string[];
}

/** The IPv4 neighbour table of `ns`. */
export async function neighbours(topo: Topology, ns: string): Promise<Neighbour[]> {
  const r = await topo.exec(ns, 'ip', ['-4', '-j', 'neigh', 'show']);
  const list = JSON.parse(r.stdout || '[]') as Neighbour[];
  return list.map((n) => ({ ...n, lladdr: n.lladdr?.toLowerCase() }));
}

/** "<address> dev <dev> lladdr <mac>" for each entry that has a MAC, sorted: a table to compare. */
export function neighbourLines(list: Neighbour[]): string[] {
  return list
    .filter((n) => n.lladdr)
    .map((n) => `${n.dst} dev ${n.dev} lladdr ${n.lladdr}`)
    .sort();
}

/** curl in `ns`, never failing: exit code and output. */
export async function httpGet(
  topo: Topology,
  ns: string,
  url: string,
  timeoutS: number,
  extra: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return topo.status(ns, 'curl', ['-sS', '-m', String(timeoutS), ...extra, url], (timeoutS + 10) * 1000);
}

/** A running tcpdump printing link headers and payloads in ASCII. */
export interface Sniffer {
  seen(): string;
  stop(): Promise<string>;
}

/**
 * Starts `tcpdump -n -e -A` on `iface` in `ns` (packet-buffered, immediate mode) and resolves once it is
 * listening. Everything it prints, stdout, is read on 'close' by stop().
 */
export async function sniff(topo: Topology, ns: string, iface: string, filter = 'not ip6'): Promise<Sniffer> {
  const child = topo.spawn(ns, 'tcpdump', ['-n', '-e', '-A', '-l', '--immediate-mode', '-i', iface, filter]);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString('latin1');
  });
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  await tcpdumpListening(child, `tcpdump on ${iface}`);
  return {
    seen: () => out,
    async stop() {
      // What is in flight reaches the capture before it ends.
      await sleep(200);
      child.kill('SIGTERM');
      await closed;
      return out;
    },
  };
}

// Sends, on interface argv[1], one frame per further argument: each a scapy expression (the test's own).
const SCAPY_SENDER = `
import sys
from scapy.all import ARP, BOOTP, DHCP, ICMP, IP, TCP, UDP, Ether, Raw, conf, mac2str, sendp
conf.verb = 0
frames = [eval(e) for e in sys.argv[2:]]
sendp(frames, iface=sys.argv[1])
print(len(frames))
`;

/** Builds each scapy expression in `exprs` and sends the frames, in order, on `iface` inside `ns`. */
export async function scapySend(topo: Topology, ns: string, iface: string, exprs: string[]): Promise<void> {
  const r = await topo.exec(ns, PYTHON, ['-c', SCAPY_SENDER, iface, ...exprs], 60_000);
  if (r.stdout.trim() !== String(exprs.length)) {
    throw new Error(`scapy sent ${r.stdout.trim()} of ${exprs.length} frames:\n${r.stderr}`);
  }
}

/** Port states per host as nmap's greppable output reports them: host -> "port/state" list. */
export async function nmap(
  topo: Topology,
  ns: string,
  targets: readonly string[],
  ports: readonly number[],
): Promise<{ states: Map<string, string[]>; output: string }> {
  const r = await topo.exec(
    ns,
    'nmap',
    [
      '-n',
      '-sT',
      '-Pn',
      '-p',
      ports.join(','),
      '--max-retries',
      '1',
      '--host-timeout',
      '10s',
      '-oG',
      '-',
      ...targets,
    ],
    120_000,
  );
  const states = new Map<string, string[]>();
  for (const line of r.stdout.split('\n')) {
    const m = line.match(/^Host: (\S+) .*\tPorts: ([^\t]*)/);
    if (!m) continue;
    states.set(
      m[1],
      m[2]
        .split(', ')
        .map((p) => p.split('/'))
        .map(([port, state]) => `${port}/${state}`),
    );
  }
  return { states, output: r.stdout };
}
