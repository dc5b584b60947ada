// The one topology every peer is measured in, dual-stack:
//
//   [vm] ── peer (runs in host) ── up0 198.51.100.2/24 ══ eth0 198.51.100.1/24, 203.0.113.10/24 [world]
//                                      2001:db8:1::2/64        2001:db8:1::1/64, 2001:db8:2::10/64
//
// The world is the host's default gateway (both families) and also holds the server addresses 203.0.113.10
// and 2001:db8:2::10, where iperf3 listens and which answer ping. Servers sit on those second addresses
// because pasta maps the host's default gateway address to the host's loopback. IPv6 addresses are added
// without duplicate address detection (nodad), so they work at once. Each peer gets a fresh VM namespace,
// so nothing one peer configured there (addresses, routes, neighbours) is seen by the next.

import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab } from './lab.js';

export const UPLINK = 'up0';
export const HOST_IP = '198.51.100.2';
export const GATEWAY = '198.51.100.1';
export const SERVER = '203.0.113.10';
export const WORLD_NET = '203.0.113.0/24';
export const HOST_IP6 = '2001:db8:1::2';
export const GATEWAY6 = '2001:db8:1::1';
export const SERVER6 = '2001:db8:2::10';
export const WORLD_NET6 = '2001:db8:2::/64';
const FIRST_IPERF_PORT = 5201;
/** IPv6 servers listen this far above the IPv4 ones, so neither family's tests take the other's server. */
const IPV6_PORT_OFFSET = 100;

/** The host and world namespaces and the world's iperf3 servers, shared by every peer of a run. */
export class Topology {
  /** The iperf3 servers: `serverCount` on SERVER, then as many on SERVER6. */
  private readonly servers: Array<ChildProcess | null>;
  private vms = 0;

  private constructor(
    readonly lab: Lab,
    readonly host: string,
    readonly world: string,
    serverCount: number,
  ) {
    this.servers = new Array(2 * serverCount).fill(null);
  }

  /** Makes the host and the world, with `serverCount` iperf3 servers a family (one per VM that runs at once). */
  static async build(lab: Lab, serverCount = 1): Promise<Topology> {
    const host = await lab.netns('host');
    const world = await lab.netns('world');
    const ip = (ns: string, ...args: string[]) => lab.exec(ns, 'ip', args);
    await ip(host, 'link', 'add', UPLINK, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', world);
    await ip(host, 'addr', 'add', `${HOST_IP}/24`, 'dev', UPLINK);
    await ip(host, 'link', 'set', UPLINK, 'up');
    await ip(host, 'route', 'add', 'default', 'via', GATEWAY);
    await ip(host, '-6', 'addr', 'add', `${HOST_IP6}/64`, 'dev', UPLINK, 'nodad');
    await ip(host, '-6', 'route', 'add', 'default', 'via', GATEWAY6);
    await ip(world, 'addr', 'add', `${GATEWAY}/24`, 'dev', 'eth0');
    await ip(world, 'addr', 'add', `${SERVER}/24`, 'dev', 'eth0');
    await ip(world, '-6', 'addr', 'add', `${GATEWAY6}/64`, 'dev', 'eth0', 'nodad');
    await ip(world, '-6', 'addr', 'add', `${SERVER6}/64`, 'dev', 'eth0', 'nodad');
    await ip(world, 'link', 'set', 'eth0', 'up');
    // pasta and slirp4netns answer the VM's ping with ICMP echo sockets of the host namespace, which a
    // namespace allows no group by default.
    await lab.exec(host, 'sysctl', ['-qw', 'net.ipv4.ping_group_range=0 2147483647']);
    const topo = new Topology(lab, host, world, serverCount);
    await topo.ensureServers();
    return topo;
  }

  /** The port of iperf3 server `i` on SERVER. */
  iperfPort(i = 0): number {
    return FIRST_IPERF_PORT + i;
  }

  /** The port of iperf3 server `i` on SERVER6. */
  iperfPort6(i = 0): number {
    return FIRST_IPERF_PORT + IPV6_PORT_OFFSET + i;
  }

  /** Server `i` of this.servers: its address and port. */
  private server(i: number): { addr: string; port: number; listening: string } {
    const half = this.servers.length / 2;
    if (i < half)
      return { addr: SERVER, port: this.iperfPort(i), listening: `${SERVER}:${this.iperfPort(i)} ` };
    const port = this.iperfPort6(i - half);
    return { addr: SERVER6, port, listening: `[${SERVER6}]:${port} ` };
  }

  /** A fresh VM namespace with loopback up and nothing else. */
  async vm(): Promise<string> {
    return this.lab.netns(`vm${this.vms++}`);
  }

  /** Starts any iperf3 server that is not running (one that exited after a failed test included). */
  async ensureServers(): Promise<void> {
    for (let i = 0; i < this.servers.length; i++) {
      const s = this.servers[i];
      if (s && s.exitCode === null && s.signalCode === null) continue;
      // --idle-timeout: a server left busy by a client killed mid-test takes the next test again.
      const { addr, port } = this.server(i);
      const child = this.lab.spawn(this.world, 'iperf3', [
        '-s',
        '-B',
        addr,
        '-p',
        String(port),
        '--idle-timeout',
        '30',
      ]);
      child.stdout!.resume();
      child.stderr!.resume();
      this.servers[i] = child;
    }
    await this.waitListening();
  }

  private async waitListening(): Promise<void> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const r = await this.lab.exec(this.world, 'ss', ['-Hltn'], 5000);
      const listening = this.servers.every((_, i) => r.stdout.includes(this.server(i).listening));
      if (listening) return;
      await sleep(100);
    }
    throw new Error("the world's iperf3 servers did not start listening within 5 s");
  }
}
