/*
 * Port forwards on one uplink address: static NAT mappings from a host port to a VM's port.
 *
 * Theory of operation
 * - A forward ties (protocol, external port EXT) on the uplink address to (VM, protocol, internal port
 *   INT). A packet from anyone to uplink:EXT goes to the VM at INT with its source kept, so the VM sees its
 *   real client; what the VM sends from INT leaves from uplink:EXT. The VM's address is read when a packet
 *   passes, never stored here, so a forward follows the VM's lease by itself; while the VM has no address
 *   its packets are dropped (the pipeline counts them).
 * - Forwards never expire: the engine adds them when their VM attaches and removes them when it detaches.
 *   EXT lies outside the dynamic NAT range and is unique per protocol on the uplink; INT is unique per
 *   protocol on its VM, so a packet from INT names exactly one forward.
 * - A forward remembers the addresses it talked with (those that sent to it, and those the VM sent to from
 *   INT): the VM may answer them even where its destination rules would block them, so a client on a
 *   private network reaches the VM's service while the VM still cannot start anything with that network.
 *   At most MAX_REMOTES are kept (the oldest is forgotten first), and the idle ones are swept.
 * - Lookups allocate nothing: inbound by (protocol << 16 | EXT) in one Map, outbound by (protocol << 16 |
 *   INT) in the VM's own Map, remotes by address (| 0, a small integer) to the second last heard. Objects
 *   are made only when a forward or a remote is new.
 */

import { type NatOwner, NatProto } from './flows.js';

/** What a VM is to the forward table: a NAT owner with a name (for errors) and its own index. */
export interface ForwardOwner extends NatOwner {
  readonly name: string;
  /** Its forwards by (NatProto << 16 | internal port). */
  readonly forwardIndex: Map<number, PortForward>;
  /** Its forwards on the uplink's IPv6 address, the same way. */
  readonly forward6Index: Map<number, PortForward>;
}

/** Remotes one forward remembers. */
export const MAX_REMOTES = 1024;
/** Forwards one uplink holds: the capture filter has one instruction for each, and at most 4096. */
export const MAX_FORWARDS = 1024;
/** Seconds a remote is remembered after it was last heard, by NatProto (TCP, UDP): the flows' timeouts. */
const REMOTE_IDLE = [7440, 300];

/** One forward. */
export class PortForward {
  /** Addresses (| 0) this forward talked with, to the second each was last heard. */
  readonly remotes = new Map<number, number>();

  constructor(
    /** NatProto.TCP or NatProto.UDP. */
    readonly proto: number,
    readonly owner: ForwardOwner,
    readonly ext: number,
    readonly int: number,
  ) {}

  /** Records that the forward talked with `remote` at `now` (seconds). */
  touch(remote: number, now: number): void {
    const key = remote | 0;
    const last = this.remotes.get(key);
    if (last === now) return;
    if (last === undefined && this.remotes.size >= MAX_REMOTES)
      this.remotes.delete(this.remotes.keys().next().value as number);
    this.remotes.set(key, now);
  }

  /** Whether the forward talked with `remote` lately. */
  knows(remote: number): boolean {
    return this.remotes.has(remote | 0);
  }
}

/** Every forward of one uplink address. */
export class ForwardTable {
  private readonly byExt = new Map<number, PortForward>();

  constructor(
    /** The dynamic NAT range, which no forward may use. */
    readonly lo: number,
    readonly hi: number,
    /** The forwards of the uplink's IPv6 address: the VMs' forward6Index, remotes by remoteKey6. */
    readonly v6 = false,
  ) {}

  private index(owner: ForwardOwner): Map<number, PortForward> {
    return this.v6 ? owner.forward6Index : owner.forwardIndex;
  }

  /** The forward of external port `ext`, if any. */
  inbound(proto: number, ext: number): PortForward | undefined {
    return this.byExt.get((proto << 16) | ext);
  }

  /** The forward of a VM's port `int`, if any. */
  outbound(owner: ForwardOwner, proto: number, int: number): PortForward | undefined {
    return this.index(owner).get((proto << 16) | int);
  }

  /** Why external port `ext` cannot be forwarded (in the NAT range, taken, too many), or null when it can. */
  refusal(proto: number, ext: number): string | null {
    const name = `${ext}/${protoName(proto)}`;
    if (ext >= this.lo && ext <= this.hi)
      return `port ${name} is in the NAT port range ${this.lo}-${this.hi}`;
    const holder = this.inbound(proto, ext);
    if (holder) return `port ${name} is forwarded to VM ${holder.owner.name} already`;
    if (this.byExt.size >= MAX_FORWARDS) return `the uplink has ${MAX_FORWARDS} forwards, the most it takes`;
    return null;
  }

  /** Adds a forward; throws when the external port is refused or the VM's port is forwarded already. */
  add(owner: ForwardOwner, proto: number, ext: number, int: number): PortForward {
    const why = this.refusal(proto, ext);
    if (why !== null) throw new Error(why);
    if (this.outbound(owner, proto, int))
      throw new Error(`port ${int}/${protoName(proto)} of VM ${owner.name} is forwarded already`);
    const f = new PortForward(proto, owner, ext, int);
    this.byExt.set((proto << 16) | ext, f);
    this.index(owner).set((proto << 16) | int, f);
    return f;
  }

  /** Removes a forward. */
  remove(f: PortForward): void {
    if (this.byExt.get((f.proto << 16) | f.ext) !== f) return;
    this.byExt.delete((f.proto << 16) | f.ext);
    this.index(f.owner).delete((f.proto << 16) | f.int);
  }

  /** Forgets remotes idle past their protocol's timeout; run once a second. */
  sweep(now: number): void {
    for (const f of this.byExt.values()) {
      const idle = REMOTE_IDLE[f.proto];
      for (const [remote, last] of f.remotes) if (now - last > idle) f.remotes.delete(remote);
    }
  }

  /** The forwarded external ports of `proto`, ascending: for the capture filter and the guard. */
  ports(proto: number): number[] {
    const out: number[] = [];
    for (const f of this.byExt.values()) if (f.proto === proto) out.push(f.ext);
    return out.sort((a, b) => a - b);
  }

  /** Forwards in the table. */
  get size(): number {
    return this.byExt.size;
  }
}

/** 'tcp' or 'udp', for messages. */
export function protoName(proto: number): string {
  return proto === NatProto.UDP ? 'udp' : 'tcp';
}
