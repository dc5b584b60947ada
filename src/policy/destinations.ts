// Where a VM may send: the user's --allow/--block rules first (longest prefix, block wins a tie), then the
// defaults: the gateway allowed, the host's other addresses blocked, non-global destinations blocked,
// everything else allowed. A bridged VM has the user's rules only.
//
// Theory of operation: each family has its own user table and defaults (IPv4: one int32 per address;
// IPv6: four). The gateway is the network's gateway IPv4 address and, for IPv6, fe80::1 and the host
// link's ULA address once setGateway6() names it. Verdicts are cached per family in a small direct-mapped
// cache; anything that changes a verdict (a host address, the IPv6 gateway) empties that family's cache.

import { type RuleTable, Verdict } from './rules.js';
import { RuleTable6 } from './rules6.js';
import { specialPurposeTable } from './special.js';
import { specialPurposeTable6 } from './special6.js';

/** Entries of the verdict cache: a power of two. */
const CACHE = 256;

/** fe80::1, softnet's address on every VM's link, as words. */
const LINK_LOCAL_GATEWAY = [0xfe800000 | 0, 0, 0, 1] as const;

/** The cache slot of an IPv6 address: a multiplicative hash of its four words, top bits. */
function slot6(w0: number, w1: number, w2: number, w3: number): number {
  const h = Math.imul(
    w0 ^ Math.imul(w1 ^ Math.imul(w2 ^ Math.imul(w3, 0x9e3779b1), 0x85ebca6b), 0xc2b2ae35),
    0x9e3779b1,
  );
  return (h >>> 24) & (CACHE - 1);
}

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

  private readonly defaults6 = specialPurposeTable6();
  /** The host's own IPv6 addresses, four words each; a host has few, so a scan is cheap. */
  private hostAddrs6: Int32Array = new Int32Array(0);
  /** The host link's ULA address, four words, once setGateway6() has named it. */
  private readonly gateway6 = new Int32Array(4);
  private hasGateway6 = false;
  /** The IPv6 verdict cache: four words per entry, and the verdicts as for IPv4. */
  private readonly cachedAddr6 = new Int32Array(4 * CACHE);
  private readonly cachedVerdict6 = new Uint8Array(CACHE);

  constructor(
    private readonly user: RuleTable,
    gateway: number,
    /** Whether a blocked packet is answered (RST, ICMP administratively prohibited) rather than dropped. */
    readonly reject = false,
    private readonly user6: RuleTable6 = new RuleTable6(),
  ) {
    this.gateway = gateway | 0;
  }

  /** Names the gateway's IPv6 address on the host link (the network's ULA one); fe80::1 is always it too. */
  setGateway6(ula: ArrayLike<number>): void {
    for (let i = 0; i < 4; i++) this.gateway6[i] = ula[i] | 0;
    this.hasGateway6 = true;
    this.cachedVerdict6.fill(0);
  }

  /** Blocks one of the host's own IPv6 addresses (other than the gateway's) unless a user rule allows it. */
  addHostAddress6(words: ArrayLike<number>): void {
    const grown = new Int32Array(this.hostAddrs6.length + 4);
    grown.set(this.hostAddrs6);
    for (let i = 0; i < 4; i++) grown[this.hostAddrs6.length + i] = words[i] | 0;
    this.hostAddrs6 = grown;
    this.cachedVerdict6.fill(0);
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

  /** Whether a VM may send to w0..w3, inside another VM's prefix: only a rule of the user's allows that. */
  allowsVm6(w0: number, w1: number, w2: number, w3: number): boolean {
    return this.user6.lookup(w0, w1, w2, w3) === Verdict.ALLOW;
  }

  /** Whether a bridged VM may send to w0..w3 on its LAN: unless a rule of the user's blocks it. */
  allowsOnLan6(w0: number, w1: number, w2: number, w3: number): boolean {
    return this.user6.lookup(w0, w1, w2, w3) !== Verdict.BLOCK;
  }

  /** Whether a VM may send to the IPv6 address w0..w3 (words passed `| 0`, as for allows()). */
  allows6(w0: number, w1: number, w2: number, w3: number): boolean {
    const i = slot6(w0, w1, w2, w3);
    const cached = this.cachedVerdict6[i];
    const a = this.cachedAddr6;
    const j = 4 * i;
    if (
      cached !== 0 &&
      a[j] === (w0 | 0) &&
      a[j + 1] === (w1 | 0) &&
      a[j + 2] === (w2 | 0) &&
      a[j + 3] === (w3 | 0)
    )
      return cached === 1;
    const allowed = this.decide6(w0, w1, w2, w3);
    a[j] = w0;
    a[j + 1] = w1;
    a[j + 2] = w2;
    a[j + 3] = w3;
    this.cachedVerdict6[i] = allowed ? 1 : 2;
    return allowed;
  }

  private decide6(w0: number, w1: number, w2: number, w3: number): boolean {
    const v = this.user6.lookup(w0, w1, w2, w3);
    if (v !== Verdict.NONE) return v === Verdict.ALLOW;
    if (this.isGateway6(w0, w1, w2, w3)) return true;
    const h = this.hostAddrs6;
    for (let j = 0; j < h.length; j += 4) {
      if (h[j] === (w0 | 0) && h[j + 1] === (w1 | 0) && h[j + 2] === (w2 | 0) && h[j + 3] === (w3 | 0))
        return false;
    }
    return this.defaults6.lookup(w0, w1, w2, w3) !== Verdict.BLOCK;
  }

  private isGateway6(w0: number, w1: number, w2: number, w3: number): boolean {
    const g = this.gateway6;
    const ll = LINK_LOCAL_GATEWAY;
    return (
      ((w0 | 0) === ll[0] && (w1 | 0) === ll[1] && (w2 | 0) === ll[2] && (w3 | 0) === ll[3]) ||
      (this.hasGateway6 && (w0 | 0) === g[0] && (w1 | 0) === g[1] && (w2 | 0) === g[2] && (w3 | 0) === g[3])
    );
  }
}
