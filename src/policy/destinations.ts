// Where a VM may send: the user's --allow/--block rules first (longest prefix, block wins a tie), then the
// defaults: the gateway allowed, the host's other addresses blocked, non-global destinations blocked,
// everything else allowed. A bridged VM has the user's rules only.

import { type RuleTable, Verdict } from './rules.js';
import { specialPurposeTable } from './special.js';

/** The destination policy of one network. */
export class DestinationPolicy {
  private readonly defaults = specialPurposeTable();
  private readonly hostAddrs = new Set<number>();

  private readonly gateway: number;

  constructor(
    private readonly user: RuleTable,
    gateway: number,
    /** Whether a blocked packet is answered (RST, ICMP administratively prohibited) rather than dropped. */
    readonly reject = false,
  ) {
    this.gateway = gateway | 0;
  }

  /** Blocks the host's own addresses (other than the gateway) unless a user rule allows them. */
  addHostAddress(addr: number): void {
    this.hostAddrs.add(addr | 0);
  }

  /**
   * Whether a VM may send to `dst`, another VM of its own network: only a rule of the user's allows that,
   * whatever the subnet, so VMs are apart by default even on a global one.
   */
  allowsVm(dst: number): boolean {
    return this.user.lookup(dst) === Verdict.ALLOW;
  }

  /**
   * Whether a bridged VM may send to `dst` on its LAN: unless a rule of the user's blocks it. The defaults
   * are for a VM behind softnet's gateway; a bridged VM is a host of the LAN, which is mostly private
   * addresses.
   */
  allowsOnLan(dst: number): boolean {
    return this.user.lookup(dst) !== Verdict.BLOCK;
  }

  /**
   * Whether a VM may send to `dst`. The hot path passes `addr | 0`: a signed 32-bit value crosses a call
   * without being boxed, where an address above 2^31 would be allocated as a heap number.
   */
  allows(dst: number): boolean {
    const v = this.user.lookup(dst);
    if (v !== Verdict.NONE) return v === Verdict.ALLOW;
    if ((dst | 0) === this.gateway) return true;
    if (this.hostAddrs.has(dst | 0)) return false;
    return this.defaults.lookup(dst) !== Verdict.BLOCK;
  }
}
