/*
 * The IPv6 side of a NAT uplink: NAT66 from the interface's global IPv6 address.
 *
 * Theory of operation
 * - It follows the interface LiveUplink follows (the one named, or the default route's), or, on a host
 *   whose uplink has no IPv4 default route, the IPv6 default route's interface. check() runs whenever
 *   LiveUplink's does and reads the interface afresh: up, carrier, MTU, and the address NAT66 should use
 *   (ports/uplink.ts uplinkIpv6: global scope, not tentative or deprecated, a non-ULA one first).
 * - Without one, NAT66 is held (nat.v6.held): the VMs' IPv6 for the world is dropped as
 *   uplink-ipv6-unavailable, and IPv4 goes on; and the other way round, IPv4 held leaves IPv6 running.
 * - A new address ends every NAT66 mapping and moves the ip6 guard and the capture filter to it. The
 *   capture is a packet socket for IPv6 frames (replies to softnet's ports, ICMPv6 errors, fragments).
 *   Translated packets leave as whole frames through a send packet socket with virtio headers when the
 *   next hop's MAC is known (nat/next-hop6.ts, read again every tick), a VM's 64 KiB TCP aggregate in one
 *   send; else by the raw IPv6 socket, routed and resolved by the host's stack. The capture and the send
 *   socket are open while NAT66 runs, closed while it is held.
 * - Entering and leaving the held state are logged once each.
 * - The mappings are snapshotted as NAT44's are (nat/flow-store.ts), to
 *   STATE_DIR/nat6-<uplink>-<lo>-<hi>.flows.json, for the uplink's IPv6 address of the moment.
 * - Port forwards bound to no address are here too, on the same ports (LiveUplink adds and removes them
 *   with its own), kept in step as NAT44's are: table, guard sets, capture filter.
 * - The guard of an interface NAT66 moved away from stays 30 s, as NAT44's does: its address is still the
 *   host's, and replies to its flows would be answered with RSTs.
 */

import { join } from 'node:path';
import { FlowStore } from '../nat/flow-store.js';
import { FlowTable, NatProto } from '../nat/flows.js';
import { type ForwardOwner, ForwardTable, type PortForward, protoName } from '../nat/forwards.js';
import { FragmentTable } from '../nat/fragments.js';
import { withGuardLock } from '../nat/guard.js';
import { NatGuard6 } from '../nat/guard6.js';
import { NextHop6 } from '../nat/next-hop6.js';
import type { NatUplink6 } from '../nat/uplink.js';
import { native, PortMode } from '../native.js';
import type { Attachment } from '../net/attachment.js';
import { fromUplink6 } from '../pipeline/from-uplink6.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { Port } from '../ports/port.js';
import { captureFilter6, defaultRouteInterface6, uplinkIpv6 } from '../ports/uplink.js';
import { monotonicMs } from '../util/clock.js';
import type { Logger } from '../util/log.js';
import { formatIpv6 } from '../wire/addr.js';
import { closePorts, openPort, openUplinkSockets } from './ports.js';

/** How long the guard of an interface NAT66 moved away from stays (as for NAT44). */
const GUARD_LINGER_MS = 30_000;
/** Seconds between snapshots of the NAT66 mappings while they change (as for NAT44). */
const FLOW_SNAPSHOT_S = 5;

/** NAT66 on one uplink: its address, sockets and guard, following the interface. */
export class Uplink6 {
  readonly nat: NatUplink6;
  /** Why NAT66 is on hold, or null while it runs. */
  heldReason: string | null = 'starting';
  /** The interface NAT66 uses (or last used). */
  ifname: string | null = null;
  private capture: Port | null = null;
  private guard: NatGuard6 | null = null;
  /** The guard of the interface NAT66 moved away from, until lingerUntil (monotonic ms). */
  private lingering: NatGuard6 | null = null;
  private lingerUntil = 0;
  private store: FlowStore | null = null;
  private saved = { changes: 0, at: 0 };

  constructor(
    private readonly p: Pipeline,
    private readonly lo: number,
    private readonly hi: number,
    perVm: number,
    private readonly stateDir: string,
    private readonly log: Logger,
    private readonly watch: (port: Port) => void,
    private readonly failed: () => void,
  ) {
    const raw = openPort({ fd: native.rawSocket6(), mode: PortMode.RAW6, name: 'uplink:raw6' });
    this.nat = {
      flows: new FlowTable(lo, hi, perVm, true),
      forwards: new ForwardTable(lo, hi, true),
      addr: new Int32Array(4),
      mtu: 1500,
      held: true,
      raw,
      tx: null,
      hop: null,
      fragments: new FragmentTable(),
      outFragments: new FragmentTable(),
    };
  }

  /** The ports open now, for counters. */
  get ports(): Port[] {
    return [this.nat.raw, ...(this.capture ? [this.capture] : []), ...(this.nat.tx ? [this.nat.tx] : [])];
  }

  /** Follows interface `wanted` (null: the default route's, IPv4's `v4name` first, else IPv6's). */
  check(wanted: string | null, v4name: string | null): void {
    const name = wanted ?? v4name ?? defaultRouteInterface6();
    const st = name === null ? null : native.ifState(name);
    const addr = name === null ? null : uplinkIpv6(name);
    const reason =
      name === null
        ? 'no-default-route'
        : st === null
          ? 'interface-gone'
          : !st.up
            ? 'interface-down'
            : !st.running
              ? 'no-carrier'
              : addr === null
                ? 'no-ipv6-address'
                : null;
    if (reason !== null || name === null || st === null || addr === null) {
      this.hold(reason ?? 'interface-gone', name);
      return;
    }
    const nat = this.nat;
    nat.mtu = st.mtu;
    const same = addr.every((w, i) => (w | 0) === nat.addr[i]);
    const moved = name !== this.ifname;
    if (same && !moved && !nat.held && this.capture !== null) return;
    try {
      this.activate(name, addr, same, moved);
    } catch (e) {
      this.closeSockets();
      this.hold(`open-failed: ${e instanceof Error ? e.message : String(e)}`, name);
    }
  }

  private activate(name: string, addr: Uint32Array, same: boolean, moved: boolean): void {
    const nat = this.nat;
    if (!same && nat.addr.some((w) => w !== 0)) {
      const ended = nat.flows.clear();
      this.log.warn('uplink IPv6 address changed: its mappings end', {
        uplink: name,
        from: formatIpv6(nat.addr),
        to: formatIpv6(addr),
        mappings_ended: ended,
      });
    }
    for (let i = 0; i < 4; i++) nat.addr[i] = addr[i] | 0;
    withGuardLock(() => {
      if (this.guard !== null && (moved || this.guard.uplink !== name)) {
        // As for IPv4: the interface left keeps its address, and replies to its flows still come there
        // for a while; its guard stays a little (the new one keeps the range reserved).
        this.dropLingering();
        this.lingering = this.guard;
        this.lingerUntil = monotonicMs() + GUARD_LINGER_MS;
        this.guard = null;
      }
      if (this.guard === null) {
        if (this.lingering?.uplink === name) {
          this.guard = this.lingering;
          this.lingering = null;
          this.guard.readdress(nat.addr);
        } else {
          this.guard = NatGuard6.install(name, nat.addr, this.lo, this.hi);
          for (const proto of [NatProto.TCP, NatProto.UDP])
            this.guard.addForwards(protoName(proto) as 'tcp' | 'udp', nat.forwards.ports(proto));
        }
      } else if (!same) this.guard.readdress(nat.addr);
    });
    if (!same || moved || this.store === null) {
      this.store = new FlowStore(
        join(this.stateDir, `nat6-${name}-${this.lo}-${this.hi}.flows.json`),
        formatIpv6(nat.addr),
      );
      this.saved = { changes: -1, at: 0 };
    }
    this.openSockets(name);
    this.ifname = name;
    if (nat.held) {
      nat.held = false;
      const was = this.heldReason;
      this.heldReason = null;
      this.log.info('uplink IPv6 usable: NAT66 runs', { uplink: name, address: formatIpv6(nat.addr), was });
    }
  }

  private hold(reason: string, name: string | null): void {
    const wasHeld = this.nat.held;
    this.nat.held = true;
    this.closeSockets();
    const before = this.heldReason;
    this.heldReason = reason;
    if (wasHeld && before === reason) return;
    if (wasHeld && before !== 'starting') return;
    this.log.warn('uplink IPv6 unavailable: NAT66 on hold', { uplink: name ?? 'none', reason });
  }

  /** Opens the capture and send sockets on `name` for the current address. */
  private openSockets(name: string): void {
    this.closeSockets();
    const nat = this.nat;
    const s = openUplinkSockets(
      this.p,
      name,
      6,
      this.filter(),
      (off, len) => fromUplink6(this.p, nat, off, len),
      this.watch,
      () => this.failed(),
    );
    this.capture = s.capture;
    nat.tx = s.tx;
    nat.hop = new NextHop6(name, s.mac);
  }

  private closeSockets(): void {
    closePorts(this.p, [this.capture, this.nat.tx]);
    this.capture = null;
    this.nat.tx = null;
    this.nat.hop = null;
  }

  /** The capture filter for the address, NAT range and forwarded ports of the moment. */
  private filter(): Uint8Array {
    const fwd = this.nat.forwards;
    return captureFilter6(this.nat.addr, this.lo, this.hi, {
      tcp: fwd.ports(NatProto.TCP),
      udp: fwd.ports(NatProto.UDP),
    });
  }

  /**
   * Adds port forwards of `owner` on the IPv6 address, each (NatProto, external port, VM port); all or
   * none: table, guard, filter, as for IPv4. Throws an Error saying why one cannot be had.
   */
  addForwards(owner: ForwardOwner, list: Array<[proto: number, ext: number, int: number]>): PortForward[] {
    const added: PortForward[] = [];
    try {
      for (const [proto, ext, int] of list) added.push(this.nat.forwards.add(owner, proto, ext, int));
      for (const proto of [NatProto.TCP, NatProto.UDP])
        this.guard?.addForwards(
          protoName(proto) as 'tcp' | 'udp',
          added.filter((f) => f.proto === proto).map((f) => f.ext),
        );
      if (this.capture !== null) native.portSetFilter(this.capture.id, this.filter());
      return added;
    } catch (e) {
      this.removeForwards(added);
      throw e;
    }
  }

  /** Removes port forwards from the IPv6 address: translation, filter, guard. Never throws. */
  removeForwards(list: PortForward[]): void {
    if (list.length === 0) return;
    for (const f of list) this.nat.forwards.remove(f);
    try {
      if (this.capture !== null) native.portSetFilter(this.capture.id, this.filter());
    } catch (e) {
      this.log.error('IPv6 capture filter not replaced', {
        error: e instanceof Error ? e.message : String(e),
      });
    }
    for (const proto of [NatProto.TCP, NatProto.UDP])
      this.guard?.removeForwards(
        protoName(proto) as 'tcp' | 'udp',
        list.filter((f) => f.proto === proto).map((f) => f.ext),
      );
  }

  /** Ends idle NAT66 mappings, reads the next hops again, and drops a guard lingering past its time; run once a second. */
  tick(clock: number): void {
    if (this.lingering !== null && monotonicMs() >= this.lingerUntil)
      withGuardLock(() => this.dropLingering());
    this.nat.hop?.refresh();
    this.nat.flows.sweep(clock);
    this.nat.forwards.sweep(clock);
  }

  /** Removes the guard left on the interface NAT66 moved away from (its range stays reserved by the other). */
  private dropLingering(): void {
    this.lingering?.removeTable();
    this.lingering = null;
  }

  /** Makes a VM's saved NAT66 mappings again as it attaches; returns how many came back. */
  restore(att: Attachment, clock: number): number {
    return this.store?.restore(this.nat.flows, att, att.key, clock) ?? 0;
  }

  /** Parks a detaching VM's NAT66 mappings for its return, ending them in the table. */
  park(att: Attachment): void {
    if (this.store) this.store.park(this.nat.flows, att, att.key);
    else this.nat.flows.removeOwner(att);
  }

  /** Forgets what is parked for a VM that is not coming back. */
  forget(key: string): void {
    this.store?.forget(key);
  }

  /** Writes a snapshot when the mappings changed and the last one is a few seconds old. */
  saveIfChanged(clock: number): void {
    if (this.nat.flows.changes !== this.saved.changes && clock - this.saved.at >= FLOW_SNAPSHOT_S)
      this.save(clock);
  }

  /** Writes the mappings for the next start; a failure is logged, the mappings go on in memory. */
  save(clock: number): void {
    if (this.store === null) return;
    this.saved = { changes: this.nat.flows.changes, at: clock };
    try {
      this.store.save(this.nat.flows, (owner) => (owner as Attachment).key);
    } catch (e) {
      this.log.error('NAT66 flow snapshot failed', { error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Closes the sockets and removes the guard. */
  close(): void {
    this.closeSockets();
    this.p.remove(this.nat.raw);
    this.nat.raw.close();
    const guard = this.guard;
    this.guard = null;
    withGuardLock(() => {
      this.dropLingering();
      guard?.remove();
    });
  }
}
