/*
 * The NAPT mapping table.
 *
 * Theory of operation
 * - A mapping ties one internal endpoint (a VM, a protocol, a VM port or ICMP echo id) to one external port
 *   of the reserved range on the uplink address. Mapping is endpoint-independent (RFC 4787 REQ-1, RFC 5382
 *   REQ-1): every destination an endpoint talks to shares its mapping, so a VM uses ports for its sockets,
 *   not for its destinations, and a VM that sends to a million ports from one socket uses one.
 * - Filtering is address-dependent (RFC 4787 REQ-8, the stricter of its two recommendations): a packet
 *   from outside passes only if it comes from an address the mapping has sent to.
 * - Lookups allocate nothing: outbound by (protocol << 16 | port) in the VM's own Map, inbound by external
 *   port in a dense array per protocol. Objects are made only when a flow or a remote is new.
 * - Bounds: a VM holds at most `perVm` mappings per protocol, and the port range bounds them all. A VM at
 *   its share has its new flows dropped and counted; other VMs and existing flows go on.
 * - Timeouts: each mapping keeps when it last carried a packet (the pipeline's clock: whole seconds, set
 *   once a second) and a state; sweep() runs every second and frees idle ones: UDP 300 s (RFC 4787 REQ-5 asks for 120 at
 *   least), ICMP 60 s, TCP 7440 s once established (RFC 5382 REQ-5), 240 s while opening or closing, 10 s
 *   after a RST.
 */

import type { Port } from '../ports/port.js';
import { TcpFlag } from '../wire/tcp.js';
import { PortPool } from './ports.js';

export const NatProto = { TCP: 0, UDP: 1, ICMP: 2 } as const;

/**
 * What a mapping translates: IPv4 to IPv4, IPv6 to IPv6 (its own table, on the uplink's IPv6 address), or
 * a VM's IPv6 to IPv4 (NAT64: in the IPv4 table, sharing its ports and address with NAT44).
 */
export const MappingKind = { NAT44: 0, NAT66: 1, NAT64: 2 } as const;
const PROTO_COUNT = 3;

export const TcpState = { OPENING: 0, ESTABLISHED: 1, CLOSING: 2, RESET: 3 } as const;

/** Idle timeouts in seconds. */
const TIMEOUT = { udp: 300, icmp: 60, tcpEstablished: 7440, tcpTransitory: 240, tcpReset: 10 };
/** Remote addresses a mapping remembers for its filter; the oldest is forgotten beyond this. */
const MAX_REMOTES = 64;

/** What a VM is to the flow table: its address, NIC and port, its own outbound index and counts. */
export interface NatOwner {
  ip: number;
  readonly mac: Uint8Array;
  /** The source MAC of what is sent to the VM: its network's gateway. */
  readonly gatewayMac: Uint8Array;
  readonly port: Port;
  readonly natIndex: Map<number, Mapping>;
  readonly natCount: Int32Array;
  /** The first two words of its IPv6 /64 (0 while it has none), and its NAT66 index and counts. */
  p0: number;
  p1: number;
  readonly nat6Index: Map<number, Mapping>;
  readonly nat6Count: Int32Array;
  /** Its NAT64 mappings (counted with NAT44's: they share the IPv4 table). */
  readonly nat64Index: Map<number, Mapping>;
}

/**
 * The filter key of an IPv6 remote: a 32-bit mix of its words. Two remotes sharing a key would let one
 * through on the other's entry; with a good mix that takes 2^32 tries at random, and the mapping's
 * remotes are few.
 */
export function remoteKey6(w0: number, w1: number, w2: number, w3: number): number {
  let h = Math.imul(w0 ^ 0x3c6ef372, 0x9e3779b1);
  h = Math.imul(h ^ w1 ^ (h >>> 16), 0x85ebca77);
  h = Math.imul(h ^ w2 ^ (h >>> 13), 0xc2b2ae3d);
  h = Math.imul(h ^ w3 ^ (h >>> 16), 0x27d4eb2f);
  return (h ^ (h >>> 15)) | 0;
}

/** One mapping. */
export class Mapping {
  /** Seconds since the epoch. */
  lastSeen: number;
  tcpState: number = TcpState.OPENING;
  /** FIN bits seen: 1 from the VM, 2 from outside. */
  fins = 0;
  readonly remotes = new Set<number>();
  /** NAT66, NAT64: the interface identifier of the VM address the mapping is for (its /64 is the VM's). */
  iid2 = 0;
  iid3 = 0;
  /** NAT66, NAT64: the next mapping of the same VM port from another of the VM's addresses. */
  next: Mapping | null = null;
  /** A MappingKind. */
  kind: number = MappingKind.NAT44;

  constructor(
    readonly proto: number,
    readonly owner: NatOwner,
    readonly vmPort: number,
    readonly extPort: number,
    now: number,
  ) {
    this.lastSeen = now;
  }

  /**
   * Records that the VM sent to `remote` (an address-dependent filter entry). Kept this small so V8 inlines
   * it into the per-packet path: left to baseline code it allocated 16 bytes a call (the replay bench).
   */
  sentTo(remote: number): void {
    if (!this.remotes.has(remote | 0)) this.addRemote(remote | 0);
  }

  /** A remote the mapping had not sent to yet; the oldest is forgotten beyond MAX_REMOTES. */
  private addRemote(key: number): void {
    if (this.remotes.size >= MAX_REMOTES) this.remotes.delete(this.remotes.values().next().value as number);
    this.remotes.add(key);
  }

  /** Follows the TCP flags the VM sends: a fresh SYN starts the mapping over, FIN and RST end it. */
  tcpOut(flags: number): void {
    if (flags & TcpFlag.RST) this.ending(TcpState.RESET);
    else if (flags & TcpFlag.FIN) {
      this.fins |= 1;
      this.ending(TcpState.CLOSING);
    } else if ((flags & (TcpFlag.SYN | TcpFlag.ACK)) === TcpFlag.SYN && this.tcpState !== TcpState.OPENING) {
      this.tcpState = TcpState.OPENING;
      this.fins = 0;
    }
  }

  /** Follows the TCP flags the world sends: an ACK establishes, FIN and RST end. */
  tcpIn(flags: number): void {
    if (flags & TcpFlag.RST) this.ending(TcpState.RESET);
    else if (flags & TcpFlag.FIN) {
      this.fins |= 2;
      this.ending(TcpState.CLOSING);
    } else if (this.tcpState === TcpState.OPENING && flags & TcpFlag.ACK)
      this.tcpState = TcpState.ESTABLISHED;
  }

  /**
   * One connection ending shortens the mapping's life only when it is the mapping's only peer: connections
   * to several peers from one VM port share the mapping (endpoint-independent), and the others go on.
   */
  private ending(state: number): void {
    if (this.remotes.size <= 1) this.tcpState = state;
  }

  /** Whether a packet from `remote` may come in. */
  admits(remote: number): boolean {
    return this.remotes.has(remote | 0);
  }

  /** How long this mapping may stay idle, in seconds. */
  timeout(): number {
    if (this.proto === NatProto.UDP) return TIMEOUT.udp;
    if (this.proto === NatProto.ICMP) return TIMEOUT.icmp;
    if (this.tcpState === TcpState.ESTABLISHED) return TIMEOUT.tcpEstablished;
    if (this.tcpState === TcpState.RESET) return TIMEOUT.tcpReset;
    return TIMEOUT.tcpTransitory;
  }
}

/** Why a new mapping could not be made. */
export const NoMapping = { VM_SHARE_FULL: -1, PORTS_EXHAUSTED: -2 } as const;

/** Every mapping of one uplink address. */
export class FlowTable {
  private readonly pools: PortPool[] = [];
  private readonly byExt: Array<Array<Mapping | undefined>> = [];
  private readonly all = new Set<Mapping>();
  /** Bumped whenever a mapping is made or ends: tells whether a snapshot is out of date. */
  changes = 0;

  constructor(
    readonly lo: number,
    readonly hi: number,
    /** Mappings one VM may hold per protocol. */
    readonly perVm: number,
    /** NAT66: a VM's endpoints are (address, port), and its index and counts are the IPv6 ones. */
    readonly v6 = false,
  ) {
    for (let p = 0; p < PROTO_COUNT; p++) {
      this.pools.push(new PortPool(lo, hi));
      this.byExt.push(new Array<Mapping | undefined>(hi - lo + 1).fill(undefined));
    }
  }

  /** The mapping of a VM endpoint, if any. */
  outbound(owner: NatOwner, proto: number, vmPort: number): Mapping | undefined {
    return owner.natIndex.get((proto << 16) | vmPort);
  }

  /**
   * NAT66 (and NAT64, `kind`): the mapping of the VM endpoint (its address's interface identifier
   * iid2:iid3, port), if any.
   */
  outbound6(
    owner: NatOwner,
    proto: number,
    vmPort: number,
    iid2: number,
    iid3: number,
    kind: number = MappingKind.NAT66,
  ): Mapping | undefined {
    let m = (kind === MappingKind.NAT64 ? owner.nat64Index : owner.nat6Index).get((proto << 16) | vmPort);
    while (m !== undefined && (m.iid2 !== iid2 || m.iid3 !== iid3)) m = m.next ?? undefined;
    return m;
  }

  /** The mapping of an external port, if any. */
  inbound(proto: number, extPort: number): Mapping | undefined {
    if (extPort < this.lo || extPort > this.hi) return undefined;
    return this.byExt[proto][extPort - this.lo];
  }

  /** Makes a mapping for a VM endpoint; returns it, or a NoMapping reason. */
  create(
    owner: NatOwner,
    proto: number,
    vmPort: number,
    now: number,
    extPort = 0,
    iid2 = 0,
    iid3 = 0,
    kind: number = this.v6 ? MappingKind.NAT66 : MappingKind.NAT44,
  ): Mapping | number {
    const counts = kind === MappingKind.NAT66 ? owner.nat6Count : owner.natCount;
    if (counts[proto] >= this.perVm) return NoMapping.VM_SHARE_FULL;
    const pool = this.pools[proto];
    let port = extPort;
    if (port === 0) port = pool.take();
    else if (!pool.takeExact(port)) port = 0;
    if (port === 0) return NoMapping.PORTS_EXHAUSTED;
    const m = new Mapping(proto, owner, vmPort, port, now);
    const key = (proto << 16) | vmPort;
    m.kind = kind;
    if (kind !== MappingKind.NAT44) {
      const index = kind === MappingKind.NAT64 ? owner.nat64Index : owner.nat6Index;
      m.iid2 = iid2 | 0;
      m.iid3 = iid3 | 0;
      m.next = index.get(key) ?? null;
      index.set(key, m);
    } else {
      owner.natIndex.set(key, m);
    }
    counts[proto]++;
    this.byExt[proto][port - this.lo] = m;
    this.all.add(m);
    this.changes++;
    return m;
  }

  /** Ends a mapping and frees its port. */
  remove(m: Mapping): void {
    if (!this.all.delete(m)) return;
    this.changes++;
    const key = (m.proto << 16) | m.vmPort;
    if (m.kind !== MappingKind.NAT44) {
      this.unlink6(m, key);
      (m.kind === MappingKind.NAT66 ? m.owner.nat6Count : m.owner.natCount)[m.proto]--;
    } else {
      m.owner.natIndex.delete(key);
      m.owner.natCount[m.proto]--;
    }
    this.byExt[m.proto][m.extPort - this.lo] = undefined;
    this.pools[m.proto].give(m.extPort);
  }

  /** Takes a NAT66 or NAT64 mapping out of its VM port's chain. */
  private unlink6(m: Mapping, key: number): void {
    const index = m.kind === MappingKind.NAT64 ? m.owner.nat64Index : m.owner.nat6Index;
    const head = index.get(key);
    if (head === m) {
      if (m.next === null) index.delete(key);
      else index.set(key, m.next);
    } else {
      let at = head;
      while (at !== undefined && at.next !== m) at = at.next ?? undefined;
      if (at !== undefined) at.next = m.next;
    }
    m.next = null;
  }

  /** Ends every mapping of a VM (it went away, or lost its address). */
  removeOwner(owner: NatOwner): void {
    const mine = this.v6
      ? chained(owner.nat6Index)
      : [...owner.natIndex.values(), ...chained(owner.nat64Index)];
    for (const m of mine) this.remove(m);
  }

  /** Ends every mapping (the uplink's address changed: the world knows none of them any more); returns how many. */
  clear(): number {
    const n = this.all.size;
    for (const m of [...this.all]) this.remove(m);
    return n;
  }

  /** Ends the mappings idle past their timeout; returns how many ended. */
  sweep(now: number): number {
    let n = 0;
    for (const m of this.all) {
      if (now - m.lastSeen > m.timeout()) {
        this.remove(m);
        n++;
      }
    }
    return n;
  }

  /** Every mapping, for snapshots and listings. */
  mappings(): IterableIterator<Mapping> {
    return this.all.values();
  }

  /** Mappings of protocol `proto` in use: the ports its pool has handed out. */
  inUse(proto: number): number {
    return this.hi - this.lo + 1 - this.pools[proto].available;
  }

  /** Mappings in use. */
  get size(): number {
    return this.all.size;
  }
}

/** Every mapping of a NAT66 or NAT64 index, the chains of each VM port included. */
export function chained(index: Map<number, Mapping>): Mapping[] {
  const out: Mapping[] = [];
  for (const head of index.values()) for (let m: Mapping | null = head; m !== null; m = m.next) out.push(m);
  return out;
}
