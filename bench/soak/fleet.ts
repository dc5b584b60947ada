// The soak's VMs: brought up to a target count, then churned (one leaves, one new attaches, every few
// seconds) until the run ends, then all sent away. Half the leavers are deleted VMs (softnet frees their
// lease), half have their per-VM softnet stopped (the lease is kept); the MACs of the latter come back on
// later VMs, which must get their old address and nobody else's.

import type { SoakLab } from './lab.js';
import { type Leaving, SoakVm } from './vm.js';

/** VMs attached at once while filling: each start is a burst of CPU on a small machine. */
const PARALLEL = 4;

/** The VMs of one soak and what happened to them. */
export class Fleet {
  /** The VMs attached now (leavers are removed before they go). */
  readonly vms = new Set<SoakVm>();
  /** Every VM that ever attached, for the lease-lost count. */
  readonly all: SoakVm[] = [];
  /** Attaches or detaches that went wrong, one line each. */
  readonly problems: string[] = [];
  attached = 0;
  /** VMs replaced because they did not come back after a fault. */
  replaced = 0;
  readonly left: Record<Leaving, number> = { 'vm-deleted': 0, 'process-stopped': 0 };
  /** While set, churn waits: a restarting service must not meet a per-VM process that becomes an engine. */
  paused = false;
  private next = 0;
  private readonly reusable: string[] = [];
  private busy: Promise<void> = Promise.resolve();

  constructor(
    private readonly lab: SoakLab,
    readonly target: number,
    /** When the VMs' traffic loops end by themselves (epoch ms). */
    private readonly trafficEnds: number,
  ) {}

  /** Attaches VMs until there are `target`. */
  async fill(): Promise<void> {
    while (this.vms.size < this.target) {
      const n = Math.min(PARALLEL, this.target - this.vms.size);
      await Promise.all(Array.from({ length: n }, () => this.attachOne()));
      if (this.problems.length > this.target)
        throw new Error(`VMs do not attach:\n${this.problems.join('\n')}`);
    }
  }

  /** One VM leaves and a new one attaches, unless paused; waits for any churn in progress first. */
  churnOnce(): Promise<void> {
    const step = this.busy.then(async () => {
      if (this.paused) return;
      const list = [...this.vms];
      if (list.length > 0) {
        const vm = list[Math.floor(Math.random() * list.length)];
        const total = this.left['vm-deleted'] + this.left['process-stopped'];
        await this.detachOne(vm, total % 2 === 0 ? 'vm-deleted' : 'process-stopped');
      }
      if (!this.paused) await this.attachOne();
    });
    this.busy = step.catch(() => {});
    return step;
  }

  /** Pauses churn and resolves once none is in progress. */
  async pause(): Promise<void> {
    this.paused = true;
    await this.busy;
  }

  /**
   * VMs that did not reach the world again after a fault (each already counted as a failure) are replaced by
   * new ones, so one failure does not hide the next fault's effect on them.
   */
  async replaceDown(): Promise<void> {
    const down = [...this.vms].filter((vm) => vm.down !== null);
    if (down.length === 0) return;
    const paused = this.paused;
    await this.pause();
    for (const vm of down) await this.detachOne(vm, 'vm-deleted');
    this.replaced += down.length;
    await this.fill();
    this.paused = paused;
  }

  /** Every VM leaves (half each way, as in churn). */
  async drain(): Promise<void> {
    await this.pause();
    const list = [...this.vms];
    await Promise.all(
      list.map((vm, i) => this.detachOne(vm, i % 2 === 0 ? 'vm-deleted' : 'process-stopped')),
    );
  }

  private async attachOne(): Promise<void> {
    // Every other new VM takes a MAC whose lease was kept, when there is one.
    const mac =
      this.reusable.length > 0 && this.next % 2 === 0 ? this.reusable.shift()! : freshMac(this.next);
    const name = `v${this.next++}`;
    const secs = Math.ceil((this.trafficEnds - Date.now()) / 1000) + 60;
    try {
      const vm = await SoakVm.attach(this.lab, name, mac, secs);
      this.vms.add(vm);
      this.all.push(vm);
      this.attached++;
    } catch (e) {
      this.problems.push(`${name} (${mac}) did not attach: ${(e as Error).message.split('\n')[0]}`);
    }
  }

  private async detachOne(vm: SoakVm, how: Leaving): Promise<void> {
    this.vms.delete(vm);
    const problem = await vm.detach(how);
    if (problem) this.problems.push(problem);
    this.left[how]++;
    if (how === 'process-stopped') this.reusable.push(vm.mac);
  }
}

/** The MAC of the `n`th new VM. */
function freshMac(n: number): string {
  return `52:54:00:5a:${((n >> 8) & 255).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;
}
