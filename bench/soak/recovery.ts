// How long each VM takes to reach the world again once a fault has ended: from the fault's end to the answer
// to the first probe the VM sent at or after it. Only VMs that had reached the world before the fault began
// count (one that attached during it has nothing to recover), and a VM that leaves meanwhile drops out. A VM
// that did not come back after an earlier fault is not waited for again: that failure is counted once.

import { setTimeout as sleep } from 'node:timers/promises';
import { GATEWAY, SERVER, WORLD_NAME } from '../../test/lib/world.js';
import type { Fleet } from './fleet.js';
import type { SoakLab } from './lab.js';
import type { SoakVm } from './vm.js';

/** What the VMs did after one fault (or one phase of it) ended. */
export interface Recovery {
  kind: string;
  /** Epoch ms of the fault's end. */
  end: number;
  /** Per VM that recovered: ms from the end to its first answer. */
  times: number[];
  /** VMs that had not recovered when the wait ended: "ns ip". */
  missing: string[];
}

/** Waits until every VM of `fleet` that reached the world before `start` has done so again after `end`. */
export async function worldRecovery(
  fleet: Fleet,
  kind: string,
  start: number,
  end: number,
  waitMs: number,
): Promise<Recovery> {
  const watched = [...fleet.vms].filter((vm) => vm.down === null && vm.probe.answeredBefore(start));
  const times = new Map<SoakVm, number>();
  for (;;) {
    for (const vm of watched) {
      const at = vm.probe.firstAnswerSentFrom(end);
      if (at !== null && !times.has(vm)) times.set(vm, at - end);
    }
    const pending = watched.filter((vm) => !times.has(vm) && fleet.vms.has(vm));
    if (pending.length === 0 || Date.now() - end > waitMs) {
      for (const vm of pending) vm.down = kind;
      return { kind, end, times: [...times.values()], missing: pending.map((vm) => `${vm.ns} ${vm.ip}`) };
    }
    await sleep(100);
  }
}

/** Like worldRecovery, for names: each VM asks the gateway's DNS until it answers; from `end` to that answer. */
export async function dnsRecovery(
  lab: SoakLab,
  fleet: Fleet,
  kind: string,
  end: number,
  waitMs: number,
): Promise<Recovery> {
  const watched = [...fleet.vms].filter((vm) => vm.down === null);
  const times: number[] = [];
  const missing: string[] = [];
  await Promise.all(
    watched.map(async (vm) => {
      while (Date.now() - end <= waitMs && fleet.vms.has(vm)) {
        const r = await lab.topo.status(
          vm.ns,
          'dig',
          [`@${GATEWAY}`, WORLD_NAME, '+short', '+time=1', '+tries=1'],
          5000,
        );
        if (r.stdout.trim() === SERVER) {
          times.push(Date.now() - end);
          return;
        }
        await sleep(100);
      }
      if (fleet.vms.has(vm)) missing.push(`${vm.ns} ${vm.ip}`);
    }),
  );
  return { kind, end, times, missing };
}
