// Where a VM may send: the user's --allow/--block rules first (longest prefix, block wins a tie), then the
// defaults: the gateway allowed, the host's other addresses blocked, non-global destinations blocked,
// everything else allowed.

import { type RuleTable, Verdict } from './rules.js';
import { specialPurposeTable } from './special.js';

/** The destination policy of one network. */
export class DestinationPolicy {
  private readonly defaults = specialPurposeTable();
  private readonly hostAddrs = new Set<number>();

  constructor(
    private readonly user: RuleTable,
    private readonly gateway: number,
  ) {}

  /** Blocks the host's own addresses (other than the gateway) unless a user rule allows them. */
  addHostAddress(addr: number): void {
    this.hostAddrs.add(addr | 0);
  }

  /** Whether a VM may send to `dst`. */
  allows(dst: number): boolean {
    const v = this.user.lookup(dst);
    if (v !== Verdict.NONE) return v === Verdict.ALLOW;
    if (dst === this.gateway) return true;
    if (this.hostAddrs.has(dst | 0)) return false;
    return this.defaults.lookup(dst) !== Verdict.BLOCK;
  }
}
