// A LAN for the bridge tests: softnet runs in a host namespace and bridges its VMs to `lan0`, a veth whose
// other end is a port of a Linux bridge in a LAN namespace, where dnsmasq serves DHCP; a LAN host in a
// namespace of its own is another port of that bridge.
//
//   vm ── softnet (--vm-net-type bridge --bridge-interface lan0) [host] lan0 ══ up0 ┐
//                                                                                  br0 10.77.0.1/24 [lan]: dnsmasq
//                                                          [peer] eth0 10.77.0.10 ══ p0 ┘
//
// dnsmasq runs in the foreground with a configuration of the test's own (DHCP only, no DNS, no ping
// before an offer), its lease file and log in the test directory. No address here is routed anywhere:
// nothing leaves the namespaces. Everything is removed by the Topology's cleanup, also when a test fails.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Topology } from './topology.js';
import { until } from './world.js';

export const BRIDGE_IFACE = 'lan0';
export const LAN_SERVER = '10.77.0.1';
export const LAN_PEER = '10.77.0.10';
export const LAN_POOL = { first: '10.77.0.100', last: '10.77.0.150' } as const;
export const LAN_LEASE_S = 120;

/** One lease in dnsmasq's lease file. */
export interface DnsmasqLease {
  mac: string;
  ip: string;
  clientId: string;
}

/** The namespaces, the bridge and dnsmasq. Construct, then start(); the topology removes it all. */
export class BridgedLan {
  host!: string;
  lan!: string;
  peer!: string;
  readonly leaseFile: string;
  readonly logFile: string;

  constructor(readonly topo: Topology) {
    this.leaseFile = join(topo.dir, 'dnsmasq.leases');
    this.logFile = join(topo.dir, 'dnsmasq.log');
  }

  /** Makes the namespaces and links and starts dnsmasq; resolves once it serves DHCP. */
  async start(): Promise<void> {
    const { topo } = this;
    this.host = await topo.netns('host');
    this.lan = await topo.netns('lan');
    this.peer = await topo.netns('peer');
    const ip = (ns: string, ...args: string[]) => topo.exec(ns, 'ip', args);
    await ip(this.lan, 'link', 'add', 'br0', 'type', 'bridge');
    await ip(
      this.host,
      'link',
      'add',
      BRIDGE_IFACE,
      'type',
      'veth',
      'peer',
      'name',
      'up0',
      'netns',
      this.lan,
    );
    await ip(this.peer, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'p0', 'netns', this.lan);
    for (const port of ['up0', 'p0']) {
      await ip(this.lan, 'link', 'set', port, 'master', 'br0');
      await ip(this.lan, 'link', 'set', port, 'up');
    }
    await ip(this.lan, 'addr', 'add', `${LAN_SERVER}/24`, 'dev', 'br0');
    await ip(this.lan, 'link', 'set', 'br0', 'up');
    await ip(this.peer, 'addr', 'add', `${LAN_PEER}/24`, 'dev', 'eth0');
    await ip(this.peer, 'link', 'set', 'eth0', 'up');
    // The host's end carries no address: the host is not on this LAN, its VMs are.
    await ip(this.host, 'link', 'set', BRIDGE_IFACE, 'up');

    const conf = join(topo.dir, 'dnsmasq.conf');
    writeFileSync(
      conf,
      [
        'port=0',
        'interface=br0',
        'bind-interfaces',
        `dhcp-range=${LAN_POOL.first},${LAN_POOL.last},255.255.255.0,${LAN_LEASE_S}`,
        `dhcp-option=option:router,${LAN_SERVER}`,
        `dhcp-leasefile=${this.leaseFile}`,
        'dhcp-authoritative',
        'no-ping',
        'log-dhcp',
        `log-facility=${this.logFile}`,
        'user=root',
        `pid-file=${join(topo.dir, 'dnsmasq.pid')}`,
        '',
      ].join('\n'),
    );
    const dnsmasq = topo.spawn(this.lan, 'dnsmasq', ['--no-daemon', `--conf-file=${conf}`]);
    let err = '';
    dnsmasq.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    await until('dnsmasq serves DHCP', async () => {
      if (dnsmasq.exitCode !== null) throw new Error(`dnsmasq exited:\n${err}`);
      return this.log().includes('DHCP, IP range');
    });
  }

  /** What dnsmasq logged. */
  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** dnsmasq's lease file: one lease a line, "expiry mac ip hostname client-id". */
  leases(): DnsmasqLease[] {
    let text = '';
    try {
      text = readFileSync(this.leaseFile, 'utf8');
    } catch {}
    return text
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [, mac, ip, , clientId] = line.split(' ');
        return { mac, ip, clientId };
      });
  }
}

/** Whether `ip` is in dnsmasq's pool. */
export function inPool(ip: string): boolean {
  const last = Number(ip.split('.')[3]);
  return ip.startsWith('10.77.0.') && last >= 100 && last <= 150;
}
