// The NAT66 guard: guard.ts's table for the uplink's IPv6 address, in the `ip6` family. Replies to
// softnet's IPv6 flows arrive at the host's own address too, and its stack would answer them with RSTs and
// port unreachables; this table drops them before it sees them (the capture's packet socket has taken
// them already) and keeps conntrack off what softnet sends.
//
// Theory of operation
// - The table is named softnet6_<uplink>_<lo>_<hi>_<pid>, beside the IPv4 guard's softnet_...: guard.ts
//   lists both families, so a start removes a dead softnet's IPv6 tables with its IPv4 ones, and a
//   conflicting range is refused per family.
// - The port range is reserved in ip_local_reserved_ports, which the IPv6 stack honours too: the host
//   picks no port of the range for its own IPv6 connections either. The reservation is shared with the
//   IPv4 guard of the same range; each holds it, and removing one gives back only what no other live guard
//   holds (guard.ts releaseRange).
// - The address is only in the rules, not in the name: readdress() swaps the rules of both chains for a
//   new address in one nft transaction, so no packet meets a table without rules, and the forward sets
//   (their elements) stay as they are.
// - Every call that changes the table or the reservation runs under the guard lock (guard.ts
//   withGuardLock), held by the caller, as for the IPv4 guard.

import { formatIpv6 } from '../wire/addr.js';
import { claimGuard, nft, nftOrThrow, releaseRange } from './guard.js';

/** The rules of both chains for address `a` (text), range `range` and uplink `dev` (quoted). */
function rules(table: string, a: string, range: string, dev: string): string {
  return `add rule ip6 ${table} guard ip6 daddr ${a} tcp dport ${range} drop
add rule ip6 ${table} guard ip6 daddr ${a} udp dport ${range} drop
add rule ip6 ${table} guard ip6 daddr ${a} icmpv6 type echo-reply icmpv6 id ${range} drop
add rule ip6 ${table} guard iifname ${dev} ip6 daddr ${a} tcp dport @forward_tcp drop
add rule ip6 ${table} guard iifname ${dev} ip6 daddr ${a} udp dport @forward_udp drop
add rule ip6 ${table} untracked ip6 saddr ${a} tcp sport ${range} notrack
add rule ip6 ${table} untracked ip6 saddr ${a} udp sport ${range} notrack
add rule ip6 ${table} untracked ip6 saddr ${a} icmpv6 type echo-request icmpv6 id ${range} notrack
add rule ip6 ${table} untracked oifname ${dev} ip6 saddr ${a} tcp sport @forward_tcp notrack
add rule ip6 ${table} untracked oifname ${dev} ip6 saddr ${a} udp sport @forward_udp notrack
`;
}

/** The IPv6 guard of one uplink address and port range; remove() undoes it. */
export class NatGuard6 {
  private constructor(
    readonly table: string,
    /** The uplink interface it guards. */
    readonly uplink: string,
    private readonly lo: number,
    private readonly hi: number,
  ) {}

  /**
   * Removes what dead softnets left (both families, any uplink), reserves [lo, hi] and guards IPv6 address
   * `addr` (four words) on `uplink`. Throws a GuardConflict when a live softnet's IPv6 guard on the same
   * uplink overlaps the range; the caller holds the guard lock.
   */
  static install(uplink: string, addr: ArrayLike<number>, lo: number, hi: number): NatGuard6 {
    const table = claimGuard('softnet6', uplink, lo, hi);
    try {
      nftOrThrow(`add table ip6 ${table}
add set ip6 ${table} forward_tcp { type inet_service; }
add set ip6 ${table} forward_udp { type inet_service; }
add chain ip6 ${table} guard { type filter hook prerouting priority raw; policy accept; }
add chain ip6 ${table} untracked { type filter hook output priority raw; policy accept; }
${rules(table, formatIpv6(addr), `${lo}-${hi}`, JSON.stringify(uplink))}`);
    } catch (e) {
      releaseRange(lo, hi);
      throw e;
    }
    return new NatGuard6(table, uplink, lo, hi);
  }

  /** Guards IPv6 address `addr` (four words) instead of the one before, in one transaction; throws if nft fails. */
  readdress(addr: ArrayLike<number>): void {
    nftOrThrow(`flush chain ip6 ${this.table} guard
flush chain ip6 ${this.table} untracked
${rules(this.table, formatIpv6(addr), `${this.lo}-${this.hi}`, JSON.stringify(this.uplink))}`);
  }

  /** Drops what arrives on the uplink for forwarded ports `ports` of `proto` from now on; throws if nft fails. */
  addForwards(proto: 'tcp' | 'udp', ports: number[]): void {
    if (ports.length > 0)
      nftOrThrow(`add element ip6 ${this.table} forward_${proto} { ${ports.join(', ')} }\n`);
  }

  /** Lets the host's stack have forwarded ports `ports` of `proto` again (ports not in the set are skipped). */
  removeForwards(proto: 'tcp' | 'udp', ports: number[]): void {
    for (const port of ports) {
      try {
        nft(`delete element ip6 ${this.table} forward_${proto} { ${port} }\n`);
      } catch {}
    }
  }

  /** Removes the table and the reservation of the ports no other live guard (the IPv4 one's too) holds. */
  remove(): void {
    this.removeTable();
    releaseRange(this.lo, this.hi);
  }

  /** Removes the table only: a guard of another interface holds the same range reserved. */
  removeTable(): void {
    try {
      nft(`delete table ip6 ${this.table}\n`);
    } catch {}
  }
}
