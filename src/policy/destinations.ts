// Where a VM may send: the user's --allow/--block rules first (longest prefix, block wins a tie), then the
// defaults: the gateway allowed, the host's other addresses blocked, non-global destinations blocked,
// everything else allowed. A bridged VM has the user's rules only.

import { type RuleTable, Verdict } from './rules.js';
import { specialPurposeTable } from './special.js';

/** Entries of the verdict cache: a power of two. */
const CACHE = 256;

/** The destination policy of one network. */
export class DestinationPolicy {
  private readonly defaults = specialPurposeTable();
  private readonly hostAddrs = new Set<number>();

  private readonly gateway: number;
  /**
   * The last verdicts, direct-mapped by address: a global destination misses every prefix length of the
   * special-purpose table, which is up to a dozen Map lookups a packet; a VM talks to few addresses at a
   * time. The rules never change but for addHostAddress(), which empties it.
   */
  private readonly cachedAddr = new Int32Array(CACHE);
  /** Per entry: 0 empty, 1 allowed, 2 blocked. */
  private readonly cachedVerdict = new Uint8Array(CACHE);

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
    this.cachedVerdict.fill(0);
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
    const i = (dst ^ (dst >>> 11) ^ (dst >>> 22)) & (CACHE - 1);
    const cached = this.cachedVerdict[i];
    if (cached !== 0 && this.cachedAddr[i] === (dst | 0)) return cached === 1;
    const allowed = this.decide(dst);
    this.cachedAddr[i] = dst | 0;
    this.cachedVerdict[i] = allowed ? 1 : 2;
    return allowed;
  }

  private decide(dst: number): boolean {
    const v = this.user.lookup(dst);
    if (v !== Verdict.NONE) return v === Verdict.ALLOW;
    if ((dst | 0) === this.gateway) return true;
    if (this.hostAddrs.has(dst | 0)) return false;
    return this.defaults.lookup(dst) !== Verdict.BLOCK;
  }
}
