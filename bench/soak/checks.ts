// What the soak checks while it runs and after: no address held by two VMs (by the service's list and by each
// VM's own NIC), no VM losing its lease while attached, the engine's memory, and, once the run's VMs have
// gone, the engine's fds, the host's TAP devices, nftables tables and reserved ports back at their counts.

import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Fleet } from './fleet.js';
import type { SoakLab } from './lab.js';

/** An address two VMs held at once, and who. */
export interface Duplicate {
  at: string;
  ip: string;
  holders: string[];
  source: 'service' | 'nics';
}

/** One VM as `network list-attached --json` shows it. */
interface Listed {
  mac: string;
  ip: string | null;
}

/** The engine's resident memory in bytes, or 0 if the process is gone. */
export function rssBytes(pid: number): number {
  try {
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return Number(kb ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** Samples the VMs' addresses and the engine's memory every few seconds until stopped. */
export class Sampler {
  readonly duplicates: Duplicate[] = [];
  /** Highest engine RSS seen, in bytes. */
  maxRss = 0;
  samples = 0;
  private running = true;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly lab: SoakLab,
    private readonly fleet: Fleet,
    private readonly everyMs = 3000,
  ) {}

  start(): void {
    this.loop = (async () => {
      while (this.running) {
        await this.sample();
        await sleep(this.everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  /** One round of every check. */
  async sample(): Promise<void> {
    this.samples++;
    this.maxRss = Math.max(this.maxRss, rssBytes(this.lab.enginePid));
    const vms = [...this.fleet.vms].filter((vm) => !vm.leaving);
    const nics = await Promise.all(vms.map((vm) => vm.addresses().catch(() => null)));
    const byIp = new Map<string, string[]>();
    vms.forEach((vm, i) => {
      const addrs = nics[i];
      if (addrs === null || vm.leaving) return;
      vm.checkLease(addrs);
      for (const a of addrs) byIp.set(a, [...(byIp.get(a) ?? []), vm.ns]);
    });
    this.record('nics', byIp);
    // The service's view; null while it is down (a fault restarting it).
    const listed = await this.lab.json<Listed[]>(['network', 'list-attached', 'default']);
    if (listed === null) return;
    const byListed = new Map<string, string[]>();
    for (const v of listed) if (v.ip) byListed.set(v.ip, [...(byListed.get(v.ip) ?? []), v.mac]);
    this.record('service', byListed);
    for (const vm of vms) {
      const entry = listed.find((v) => v.mac === vm.mac);
      if (vm.leaving || vm.lost !== null || !entry) continue;
      if (entry.ip && entry.ip !== vm.ip)
        vm.lost = `the service lists ${vm.mac} at ${entry.ip}, the VM holds ${vm.ip}, at ${new Date().toISOString()}`;
      // Listed with no address twice running: the service has forgotten the lease of a VM still using it.
      vm.unleased = entry.ip ? 0 : vm.unleased + 1;
      if (vm.unleased >= 2)
        vm.lost = `the service lists ${vm.mac} with no address, the VM holds ${vm.ip}, at ${new Date().toISOString()}`;
    }
  }

  private record(source: Duplicate['source'], byIp: Map<string, string[]>): void {
    for (const [ip, holders] of byIp) {
      if (holders.length > 1) this.duplicates.push({ at: new Date().toISOString(), ip, holders, source });
    }
  }
}

/** What must return to its count once the run's VMs have gone. */
export interface Footprint {
  engineFds: number;
  taps: string[];
  nftTables: string[];
  reservedPorts: string;
}

/** The engine's fd count (the least of three looks a second apart, so a passing connection does not count). */
async function engineFds(pid: number): Promise<number> {
  let least = Infinity;
  for (let i = 0; i < 3; i++) {
    try {
      least = Math.min(least, readdirSync(`/proc/${pid}/fd`).length);
    } catch {
      return -1;
    }
    if (i < 2) await sleep(1000);
  }
  return least;
}

/** The engine's and the host namespace's footprint now. */
export async function footprint(lab: SoakLab): Promise<Footprint> {
  const { topo, host } = lab;
  const taps = await topo.exec(host, 'ip', ['-o', 'link', 'show', 'type', 'tun']);
  const tables = await topo.exec(host, 'nft', ['list', 'tables']);
  const reserved = await topo.exec(host, 'cat', ['/proc/sys/net/ipv4/ip_local_reserved_ports']);
  return {
    engineFds: await engineFds(lab.enginePid),
    taps: [...taps.stdout.matchAll(/^\d+: ([^:@]+)/gm)].map((m) => m[1]).sort(),
    // A guard table's name ends in its engine's pid, which a restarted engine changes.
    nftTables: tables.stdout
      .split('\n')
      .filter(Boolean)
      .map((t) => t.replace(/_\d+$/, '_PID'))
      .sort(),
    reservedPorts: reserved.stdout.trim(),
  };
}

/** How `after` differs from `before`, one line per difference (none: no leak). */
export function leaks(before: Footprint, after: Footprint): string[] {
  const out: string[] = [];
  if (after.engineFds !== before.engineFds) out.push(`engine fds: ${before.engineFds} -> ${after.engineFds}`);
  const list = (a: string[]) => a.join(' ') || '(none)';
  if (list(after.taps) !== list(before.taps))
    out.push(`TAPs in the host: ${list(before.taps)} -> ${list(after.taps)}`);
  if (list(after.nftTables) !== list(before.nftTables))
    out.push(`nft tables: ${list(before.nftTables)} -> ${list(after.nftTables)}`);
  if (after.reservedPorts !== before.reservedPorts)
    out.push(`reserved ports: "${before.reservedPorts}" -> "${after.reservedPorts}"`);
  return out;
}
