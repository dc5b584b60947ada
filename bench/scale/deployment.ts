// How many VMs get softnet. Today there is only the per-VM form: one softnet process a VM, each with its
// own host link, subnet, NAT port range and state directory, side by side in one host namespace. When one
// engine serves many VMs, another Deployment that starts one process and attaches every VM to it is all
// the scale bench needs; the measurements only see attach(), detach(), pids() and ranges().

import { attachSoftnet, type SoftnetAttachment, type SoftnetSlot } from '../peers/softnet.js';
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

/** One softnet process a VM (the per-VM form, as a VM tool starts it). */
export class PerVmProcesses implements Deployment {
  readonly description =
    'one softnet process per VM (per-VM form: --vm-netns, own --host-link, --subnet, --nat-ports, --state-dir)';
  private readonly attached: SoftnetAttachment[] = [];
  private readonly slots: SoftnetSlot[] = [];

  async attach(topo: Topology, vms: string[], parallel: number): Promise<void> {
    for (let i = 0; i < vms.length; i += parallel) {
      const group = vms.slice(i, i + parallel).map((vm) => {
        const s = slot(this.slots.length);
        this.slots.push(s);
        return attachSoftnet(topo, vm, s);
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

  ranges(): Array<[number, number]> {
    return this.slots.map((s) => s.natPorts.split('-').map(Number) as [number, number]);
  }
}
