// Real DHCP clients inside a VM namespace: busybox udhcpc, ISC dhclient and dhcpcd. Each one's hook
// script appends what the client was told to a file, so a test reads the lease as the client saw it.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Topology } from './topology.js';

/** A lease as a client reported it. */
export interface ClientLease {
  ip: string;
  lease: number;
  router: string;
  event: string;
}

function script(topo: Topology, name: string, body: string): string {
  const path = join(topo.dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\nexit 0\n`, { mode: 0o755 });
  return path;
}

function events(path: string): ClientLease[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {}
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [event, ip, lease, router] = line.split(' ');
      return { event, ip, lease: Number(lease), router };
    });
}

/** busybox udhcpc: configures the address it gets, like its default script. */
export class Udhcpc {
  readonly log: string;
  readonly script: string;

  constructor(
    private readonly topo: Topology,
    private readonly ns: string,
    private readonly ifname = 'eth0',
  ) {
    this.log = join(topo.dir, `udhcpc-${ns}.events`);
    this.script = script(
      topo,
      `udhcpc-${ns}.sh`,
      `echo "$1 $ip $lease $router" >> ${this.log}
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac`,
    );
  }

  /** Gets a lease and exits (-q); rejects if none comes. */
  async once(extra: string[] = []): Promise<ClientLease> {
    await this.topo.exec(this.ns, 'busybox', [
      'udhcpc',
      '-i',
      this.ifname,
      '-f',
      '-q',
      '-n',
      '-t',
      '5',
      '-T',
      '2',
      '-s',
      this.script,
      ...extra,
    ]);
    return this.last();
  }

  /** Runs in the foreground until killed: SIGUSR1 renews, SIGUSR2 releases. */
  daemon(extra: string[] = []) {
    return this.topo.spawn(this.ns, 'busybox', [
      'udhcpc',
      '-i',
      this.ifname,
      '-f',
      '-t',
      '5',
      '-T',
      '2',
      '-s',
      this.script,
      ...extra,
    ]);
  }

  /** Every event the script saw, oldest first. */
  events(): ClientLease[] {
    return events(this.log);
  }

  /** The last bound or renewed lease. */
  last(): ClientLease {
    const e = this.events().filter((x) => x.event === 'bound' || x.event === 'renew');
    if (e.length === 0) throw new Error(`udhcpc reported no lease: ${JSON.stringify(this.events())}`);
    return e[e.length - 1];
  }
}

/** ISC dhclient: daemonizes after the lease; release() sends DHCPRELEASE and stops it. */
export class Dhclient {
  private readonly log: string;
  private readonly args: string[];

  constructor(
    private readonly topo: Topology,
    private readonly ns: string,
    ifname = 'eth0',
  ) {
    this.log = join(topo.dir, `dhclient-${ns}.events`);
    const sh = script(
      topo,
      `dhclient-${ns}.sh`,
      `echo "$reason $new_ip_address $new_dhcp_lease_time $new_routers" >> ${this.log}
case "$reason" in BOUND|RENEW|REBIND|REBOOT) ip addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;; esac`,
    );
    this.args = [
      '-4',
      '-sf',
      sh,
      '-lf',
      join(topo.dir, `dhclient-${ns}.leases`),
      '-pf',
      join(topo.dir, `dhclient-${ns}.pid`),
      ifname,
    ];
  }

  /** Gets a lease (-1: one try); resolves once the client has bound and gone to the background. */
  async obtain(): Promise<ClientLease> {
    await this.topo.exec(this.ns, 'dhclient', ['-1', ...this.args]);
    const bound = events(this.log).filter((e) => e.event === 'BOUND');
    if (bound.length === 0) throw new Error('dhclient reported no lease');
    return bound[bound.length - 1];
  }

  /** Releases the lease and stops the daemon (-r). */
  async release(): Promise<void> {
    await this.topo.exec(this.ns, 'dhclient', ['-r', ...this.args]);
  }
}

/** dhcpcd in one-shot mode: solicits, probes the address with ARP, binds and exits. */
export async function dhcpcdOnce(topo: Topology, ns: string, ifname: string): Promise<string> {
  const out = await topo.exec(
    ns,
    'dhcpcd',
    ['-4', '-1', '-B', '-f', '/dev/null', '-c', '/bin/true', ifname],
    60_000,
  );
  return out.stdout + out.stderr;
}
