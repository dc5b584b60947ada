/*
 * The DHCPv6 server of softnet's gateway (RFC 8415), answering each VM on its own port.
 *
 * Theory of operation
 * - softnet is the only server a VM can hear and every VM owns a whole /64, so there is nothing to lease
 *   and nothing to remember: the address of an IA_NA is a fixed function of the VM's prefix and the IA's
 *   IAID, prefix:0:d6:<IAID high 16 bits>:<IAID low 16 bits> (IA_ADDRESS_WORD2), the same in every Advertise
 *   and Reply, across restarts and hosts. Its interface id is never zero and never looks like SLAAC's
 *   EUI-64 (ff:fe in the middle). Release and Decline are acknowledged and forgotten.
 * - Solicit -> Advertise with Preference 255, so the client requests at once; or Reply when the client
 *   offered Rapid Commit and there is an address to commit. Request, Renew, Rebind -> Reply with the same
 *   address and fresh lifetimes; any other address the client lists gets lifetimes 0, as the server holds
 *   none but the IAID's own (RFC 8415 18.3.4, 18.3.5). Confirm -> Success when every address is in the
 *   VM's /64, else NotOnLink.
 * - IA_TA and IA_PD are answered NoAddrsAvail and NoPrefixAvail: no temporary addresses, no delegation.
 *   A VM without a prefix gets NoAddrsAvail in each IA_NA (and, in an Advertise, at the top level too,
 *   for RFC 3315 clients); Information-Request is answered regardless.
 * - Server identifier rules follow RFC 8415 16: Request, Renew, Release and Decline must name our DUID,
 *   Solicit, Confirm and Rebind must name none, Information-Request may name ours.
 * - Every Advertise and Reply to Solicit, Request, Renew, Rebind and Information-Request carries the
 *   stateless configuration: DNS servers and the search domain.
 * - The parsed message and the writer are reused by every call; the encoded search domain is cached
 *   while consecutive VMs share it.
 */

import { Drop } from '../stats/drops.js';
import {
  DHCP6_HEADER_LEN,
  Dhcp6Message,
  Dhcp6Option,
  Dhcp6Status,
  Dhcp6Type,
  Dhcp6Writer,
  DUID_MAX_LEN,
  DUID_MIN_LEN,
  encodeDomain,
  INFINITY,
  MAX_PREFERENCE,
  parseDhcp6,
} from '../wire/dhcpv6.js';

export { duidLl } from '../wire/dhcpv6.js';

/** The room the caller gives a reply: it fits in an IPv6 minimum-MTU packet with its headers. */
export const MAX_REPLY_LEN = 1200;
/** How long a stateless client keeps its configuration before asking again (RFC 8415 21.23). */
export const INFORMATION_REFRESH_S = 600;
/** Word 2 of every address softnet assigns: interface ids 0:d6:*:* (word 3 is the IAID). */
export const IA_ADDRESS_WORD2 = 0x000000d6;

/** What the server needs to know about one VM. */
export interface Dhcpv6Vm {
  /** The VM's /64 as its first two 32-bit words; 0 and 0 when it has none. */
  prefix0: number;
  prefix1: number;
  /** Recursive DNS servers: four words each, concatenated. */
  dns: ArrayLike<number>;
  /** The search domain, sent in DOMAIN_LIST; null for none. */
  domain: string | null;
  /** Lifetimes of IA_NA addresses, in seconds. */
  validLifetime: number;
  preferredLifetime: number;
}

/** Answers DHCPv6 from VMs with replies written into the arena. */
export class Dhcpv6Server {
  private readonly duid: Uint8Array;
  private readonly m = new Dhcp6Message();
  private readonly w = new Dhcp6Writer();
  private domain: string | null = null;
  private domainWire: Uint8Array | null = null;

  constructor(opts: { serverDuid: Uint8Array }) {
    const len = opts.serverDuid.length;
    if (len < DUID_MIN_LEN || len > DUID_MAX_LEN) throw new RangeError(`DHCPv6 server DUID of ${len} bytes`);
    this.duid = Uint8Array.from(opts.serverDuid);
  }

  /**
   * Answers the client message in u8[msg, msg+len) from `vm`, writing the reply (a UDP payload) at u8[out];
   * returns its length, or -Drop.X when there is no reply.
   */
  handle(u8: Uint8Array, msg: number, len: number, vm: Dhcpv6Vm, out: number): number {
    if (len < DHCP6_HEADER_LEN) return -Drop.DHCP6_MALFORMED;
    const type = u8[msg];
    switch (type) {
      case Dhcp6Type.ADVERTISE:
      case Dhcp6Type.REPLY:
      case Dhcp6Type.RECONFIGURE:
      case Dhcp6Type.RELAY_REPL:
        return -Drop.DHCP6_FROM_SERVER;
      case Dhcp6Type.SOLICIT:
      case Dhcp6Type.REQUEST:
      case Dhcp6Type.CONFIRM:
      case Dhcp6Type.RENEW:
      case Dhcp6Type.REBIND:
      case Dhcp6Type.RELEASE:
      case Dhcp6Type.DECLINE:
      case Dhcp6Type.INFORMATION_REQUEST:
        break;
      default:
        return -Drop.DHCP6_UNSUPPORTED;
    }
    const m = this.m;
    const bad = parseDhcp6(u8, msg, len, m);
    if (bad !== Drop.NONE) return -bad;
    const refused = this.refusal(u8, m);
    if (refused !== Drop.NONE) return -refused;
    // RFC 8415 18.3.3: a Confirm without addresses gets no Reply.
    if (type === Dhcp6Type.CONFIRM && m.addrCount === 0) return -Drop.DHCP6_MALFORMED;

    const prefixed = (vm.prefix0 | vm.prefix1) !== 0;
    const commit = type === Dhcp6Type.SOLICIT && m.rapidCommit && prefixed && this.hasIaNa();
    const w = this.w;
    w.begin(
      u8,
      out,
      out + MAX_REPLY_LEN,
      type === Dhcp6Type.SOLICIT && !commit ? Dhcp6Type.ADVERTISE : Dhcp6Type.REPLY,
      m.xid,
    );
    w.bytes(Dhcp6Option.SERVERID, this.duid, 0, this.duid.length);
    if (m.clientId >= 0) w.bytes(Dhcp6Option.CLIENTID, u8, m.clientId, m.clientIdLen);
    switch (type) {
      case Dhcp6Type.SOLICIT:
        if (commit) w.empty(Dhcp6Option.RAPID_COMMIT);
        else w.u8Option(Dhcp6Option.PREFERENCE, MAX_PREFERENCE);
        this.ias(vm, prefixed, false);
        if (!prefixed && this.hasIaNa()) w.status(Dhcp6Status.NO_ADDRS_AVAIL);
        this.stateless(vm);
        break;
      case Dhcp6Type.REQUEST:
      case Dhcp6Type.RENEW:
      case Dhcp6Type.REBIND:
        this.ias(vm, prefixed, true);
        this.stateless(vm);
        break;
      case Dhcp6Type.CONFIRM:
        w.status(prefixed && this.allOnLink(vm) ? Dhcp6Status.SUCCESS : Dhcp6Status.NOT_ON_LINK);
        break;
      case Dhcp6Type.RELEASE:
      case Dhcp6Type.DECLINE:
        w.status(Dhcp6Status.SUCCESS);
        break;
      default:
        this.stateless(vm);
        w.u32Option(Dhcp6Option.INFORMATION_REFRESH_TIME, INFORMATION_REFRESH_S);
    }
    // Only a message crammed with IAs and stale addresses, on a VM with many DNS servers, gets here.
    const n = w.length();
    return n < 0 ? -Drop.DHCP6_MALFORMED : n;
  }

  /** Why the parsed message must not be answered (RFC 8415 16), or Drop.NONE. */
  private refusal(u8: Uint8Array, m: Dhcp6Message): number {
    if (m.type === Dhcp6Type.INFORMATION_REQUEST) {
      if (m.iaCount > 0) return Drop.DHCP6_MALFORMED;
      return m.serverId >= 0 && !this.ours(u8, m) ? Drop.DHCP6_NOT_FOR_US : Drop.NONE;
    }
    if (m.clientId < 0) return Drop.DHCP6_MALFORMED;
    switch (m.type) {
      case Dhcp6Type.REQUEST:
      case Dhcp6Type.RENEW:
      case Dhcp6Type.RELEASE:
      case Dhcp6Type.DECLINE:
        if (m.serverId < 0) return Drop.DHCP6_MALFORMED;
        return this.ours(u8, m) ? Drop.NONE : Drop.DHCP6_NOT_FOR_US;
      default:
        return m.serverId >= 0 ? Drop.DHCP6_MALFORMED : Drop.NONE;
    }
  }

  /** Whether the server id the message names is our DUID. */
  private ours(u8: Uint8Array, m: Dhcp6Message): boolean {
    if (m.serverIdLen !== this.duid.length) return false;
    for (let i = 0; i < m.serverIdLen; i++) if (u8[m.serverId + i] !== this.duid[i]) return false;
    return true;
  }

  private hasIaNa(): boolean {
    for (let i = 0; i < this.m.iaCount; i++) if (this.m.iaKind[i] === Dhcp6Option.IA_NA) return true;
    return false;
  }

  private allOnLink(vm: Dhcpv6Vm): boolean {
    const a = this.m.addrs;
    for (let i = 0; i < this.m.addrCount; i++) {
      if (a[4 * i] !== (vm.prefix0 | 0) || a[4 * i + 1] !== (vm.prefix1 | 0)) return false;
    }
    return true;
  }

  /** Answers every IA of the message; `stale` also returns the other addresses it lists, lifetimes 0. */
  private ias(vm: Dhcpv6Vm, prefixed: boolean, stale: boolean): void {
    const m = this.m;
    const w = this.w;
    const valid = vm.validLifetime >>> 0;
    // A client discards an address whose preferred lifetime exceeds its valid one (RFC 8415 18.2.10.1).
    const preferred = Math.min(vm.preferredLifetime >>> 0, valid);
    const t1 = preferred === INFINITY ? INFINITY : Math.floor(preferred / 2);
    const t2 = preferred === INFINITY ? INFINITY : Math.floor((preferred * 4) / 5);
    for (let i = 0; i < m.iaCount; i++) {
      const kind = m.iaKind[i];
      const iaid = m.iaId[i];
      const assign = kind === Dhcp6Option.IA_NA && prefixed;
      const hdr = assign ? w.ia(kind, iaid, t1, t2) : w.ia(kind, iaid, 0, 0);
      if (assign) w.iaAddr(vm.prefix0, vm.prefix1, IA_ADDRESS_WORD2, iaid, preferred, valid);
      if (stale) {
        for (let j = m.iaFirstAddr[i], end = j + m.iaAddrCount[i]; j < end; j++) {
          const a = m.addrs;
          const mine =
            assign &&
            a[4 * j] === (vm.prefix0 | 0) &&
            a[4 * j + 1] === (vm.prefix1 | 0) &&
            a[4 * j + 2] === IA_ADDRESS_WORD2 &&
            a[4 * j + 3] === (iaid | 0);
          if (!mine) w.iaAddr(a[4 * j], a[4 * j + 1], a[4 * j + 2], a[4 * j + 3], 0, 0);
        }
      }
      if (!assign) {
        w.status(kind === Dhcp6Option.IA_PD ? Dhcp6Status.NO_PREFIX_AVAIL : Dhcp6Status.NO_ADDRS_AVAIL);
      }
      w.close(hdr);
    }
  }

  /** DNS servers and the search domain. */
  private stateless(vm: Dhcpv6Vm): void {
    const servers = vm.dns.length >>> 2;
    if (servers > 0) this.w.addresses(Dhcp6Option.DNS_SERVERS, vm.dns, servers);
    if (vm.domain !== this.domain) {
      this.domain = vm.domain;
      this.domainWire = vm.domain === null ? null : encodeDomain(vm.domain);
    }
    const d = this.domainWire;
    if (d) this.w.bytes(Dhcp6Option.DOMAIN_LIST, d, 0, d.length);
  }
}
