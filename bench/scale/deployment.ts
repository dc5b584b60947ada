// How many VMs get softnet: one engine for all of them (the per-VM processes of VMs after the first hand
// their VMs to the first one's engine, as on a host that runs many VMs), or, to compare, one engine per VM
// (each with its own host link, subnet, NAT port range and state directory, side by side in one host
// namespace). The measurements only see attach(), detach(), pids() and ranges().

import { join } from 'node:path';
import { attachSoftnet, DEFAULT_SLOT, type SoftnetAttachment, type SoftnetSlot } from '../peers/softnet.js';
import type { Topology } from '../peers/topology.js';

/** softnet serving a growing set of VMs. */
export interface Deployment {
  /** What runs, in words, for the report. */
  readonly description: string;
  /** Connects `vms` too, `parallel` at a time; resolves once each reaches the server. */
  attach(topo: Topology, vms: string[], parallel: number): Promise<void>;
  /** Disconnects the `count` VMs attached last, `parallel` at a time. */
  detach(count: number, parallel: number): Promise<void>;
  /** The softnet processes serving the attached VMs. */
  pids(): number[];
  /** The one process among them that runs the engine for all the others, if there is one. */
  enginePid(): number | undefined;
  /** The NAT port ranges in use, [lo, hi] each. */
  ranges(): Array<[number, number]>;
}

const FIRST_NAT_PORT = 20000;
const PORTS_PER_VM = 256;

/** The host link, subnet, NAT ports and MAC of the `i`-th VM: disjoint from every other VM's. */
export function slot(i: number): SoftnetSlot {
  const lo = FIRST_NAT_PORT + i * PORTS_PER_VM;
  return {
    hostLink: `snb${i}`,
    subnet: `10.100.${i}.0/24`,
    natPorts: `${lo}-${lo + PORTS_PER_VM - 1}`,
    mac: `52:54:00:5c:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`,
  };
}

/** The `i`-th VM on the one engine's default network: only its MAC differs. */
function engineSlot(i: number): SoftnetSlot {
  return { ...DEFAULT_SLOT, mac: slot(i).mac };
}

/** VMs attached one after another, each by its own per-VM process. */
abstract class PerVmProcesses implements Deployment {
  abstract readonly description: string;
  protected readonly attached: SoftnetAttachment[] = [];
  protected readonly slots: SoftnetSlot[] = [];

  /** How the `i`-th VM's softnet starts. */
  protected abstract start(
    topo: Topology,
    vm: string,
    i: number,
  ): { slot: SoftnetSlot; stateDir: string | undefined };

  async attach(topo: Topology, vms: string[], parallel: number): Promise<void> {
    for (let i = 0; i < vms.length; i += parallel) {
      const group = vms.slice(i, i + parallel).map((vm) => {
        const { slot: s, stateDir } = this.start(topo, vm, this.slots.length);
        this.slots.push(s);
        return attachSoftnet(topo, vm, s, stateDir);
      });
      const settled = await Promise.allSettled(group);
      for (const r of settled) if (r.status === 'fulfilled') this.attached.push(r.value);
      const failed = settled.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
    }
  }

  async detach(count: number, parallel: number): Promise<void> {
    const gone = this.attached.splice(this.attached.length - count, count);
    this.slots.splice(this.slots.length - count, count);
    for (let i = 0; i < gone.length; i += parallel) {
      await Promise.all(gone.slice(i, i + parallel).map((a) => a.detach()));
    }
  }

  pids(): number[] {
    return this.attached.map((a) => a.child.pid).filter((p): p is number => p !== undefined);
  }

  abstract enginePid(): number | undefined;

  ranges(): Array<[number, number]> {
    const ranges = new Set(this.slots.map((s) => s.natPorts));
    return [...ranges].map((r) => r.split('-').map(Number) as [number, number]);
  }
}

/** One engine: every VM on its default network, the first VM's per-VM process running it. */
export class OneEngine extends PerVmProcesses {
  readonly description =
    "one engine: the first VM's per-VM process runs it, the others hand their VMs to it (one host link, one NAT guard, one capture socket)";

  /** The first VM alone, so its process runs the engine and, detached last, never hands it over mid-run. */
  override async attach(topo: Topology, vms: string[], parallel: number): Promise<void> {
    const first = this.attached.length === 0 ? vms.slice(0, 1) : [];
    await super.attach(topo, first, 1);
    await super.attach(topo, vms.slice(first.length), parallel);
  }

  enginePid(): number | undefined {
    return this.attached[0]?.child.pid;
  }

  protected start(topo: Topology, _vm: string, i: number) {
    return { slot: engineSlot(i), stateDir: join(topo.lab.dir, 'state-engine') };
  }
}

/** One engine per VM, each with its own host link, subnet, NAT port range and state directory. */
export class EnginePerVm extends PerVmProcesses {
  readonly description =
    'one engine per VM (per-VM form with its own --host-link, --subnet, --nat-ports, --state-dir and control socket)';

  protected start(_topo: Topology, _vm: string, i: number) {
    return { slot: slot(i), stateDir: undefined };
  }

  enginePid(): undefined {
    return undefined;
  }
}
