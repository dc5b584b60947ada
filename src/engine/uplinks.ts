/*
 * NAT uplinks of one engine, by interface.
 *
 * Theory of operation
 * - One uplink has one address, one reserved port range, one flow table and one nftables guard, whatever
 *   number of networks NAT through it: every shared network naming the same interface (or none: the
 *   default route's) and port range shares its LiveUplink (a count of users says when it can close). Two
 *   networks asking for different port ranges on one interface are refused, since the host's stack would
 *   see two guards.
 * - The host's interfaces change under the engine. check() runs on every rtnetlink event, when a socket
 *   of the uplink fails, and every few seconds, and reads the uplink afresh: which interface (the one named,
 *   or the default route's, which may move), whether it is up with carrier, its primary IPv4 address and
 *   MTU. An uplink that cannot carry NAT is held (nat.held): the capture and send sockets are closed, the
 *   VMs' packets for the world are dropped under uplink-unavailable, and the mappings and the guard stay,
 *   so flows resume where they were when the same address comes back. A new address ends every mapping
 *   (the world knows none of them under it; their ports go back to the pool), moves the guard and the
 *   capture filter to it, and starts a new snapshot; nothing is ever sent from an address the interface no
 *   longer has, since check() holds or readdresses before any packet of the next batch. Entering and
 *   leaving the held state are logged once each.
 * - Replies captured on the uplink go to the mapping's owner, whatever its network; the owner carries its
 *   gateway MAC, so the capture needs no network of its own.
 * - The mappings are snapshotted to STATE_DIR/nat-<uplink>-<lo>-<hi>.flows.json at stop and every few
 *   seconds while they change, keyed by the VMs' lease identities, and made again when those VMs attach.
 * - Port forwards are added and removed here in three places kept in step: the forward table (what the
 *   pipeline translates), the guard's sets (what the host's stack never sees) and the capture filter (what
 *   the packet socket takes). Adding goes table, guard, filter and removing table, filter, guard, so no
 *   packet for a forward reaches the host's stack while softnet takes it: it would answer with a RST.
 */

import { join } from 'node:path';
import { FlowStore } from '../nat/flow-store.js';
import { FlowTable, NatProto } from '../nat/flows.js';
import { type ForwardOwner, ForwardTable, type PortForward, protoName } from '../nat/forwards.js';
import { FragmentTable } from '../nat/fragments.js';
import { GuardConflict, NatGuard, withGuardLock } from '../nat/guard.js';
import { NextHop } from '../nat/next-hop.js';
import type { NatUplink } from '../nat/uplink.js';
import { type IfState, native, PortMode } from '../native.js';
import type { Attachment } from '../net/attachment.js';
import { portRange } from '../net/network-spec.js';
import { fromUplink } from '../pipeline/from-uplink.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { Port } from '../ports/port.js';
import { captureFilter, defaultRouteInterface } from '../ports/uplink.js';
import { monotonicMs } from '../util/clock.js';
import type { Logger } from '../util/log.js';
import { formatIpv4 } from '../wire/addr.js';
import { UsageError } from './errors.js';
import { closePorts, openPort, openUplinkSockets } from './ports.js';
import { Uplink6 } from './uplink6.js';

/** Seconds between snapshots of the NAT mappings while they change. */
const FLOW_SNAPSHOT_S = 5;
/** How long the guard of an interface NAT moved away from stays: its flows' replies stop by then. */
const GUARD_LINGER_MS = 30_000;

/** Why an uplink cannot carry NAT now; null when it can. */
function holdReason(name: string | null, st: IfState | null): string | null {
  if (name === null) return 'no-default-route';
  if (st === null) return 'interface-gone';
  if (!st.up) return 'interface-down';
  if (!st.running) return 'no-carrier';
  if (st.addr === 0) return 'no-address';
  return null;
}

/** One uplink: its sockets, guard, mappings and snapshot, following the interface's state. */
export class LiveUplink {
  users = 0;
  /** Times the uplink was held (for metrics). */
  outages = 0;
  /** The interface NAT uses now (or last used, or will use); null before there was one. */
  ifname: string | null = null;
  /** Why NAT is on hold, or null while it runs. */
  heldReason: string | null = 'starting';
  private heldSince = Date.now();
  private index = 0;
  private capture: Port | null = null;
  private guard: NatGuard | null = null;
  /** The guard of the interface NAT moved away from, until lingerUntil (monotonic ms). */
  private lingering: NatGuard | null = null;
  private lingerUntil = 0;
  private store: FlowStore | null = null;
  private saved = { changes: 0, at: 0 };
  private readonly lo: number;
  private readonly hi: number;
  /** NAT66 through the same interface. */
  six: Uplink6 | null = null;
  /** Each port forward's twin on the IPv6 address. */
  private readonly twins = new Map<PortForward, PortForward>();

  private constructor(
    private wanted: string | null,
    readonly natPorts: string,
    readonly nat: NatUplink,
    private readonly stateDir: string,
    private readonly p: Pipeline,
    private readonly log: Logger,
    private readonly watch: (port: Port) => void,
    private readonly failed: () => void,
  ) {
    ({ lo: this.lo, hi: this.hi } = portRange('natPorts', natPorts));
  }

  /** The engine's key for an uplink: the interface asked for (or the default route's) and the range. */
  static key(want: string | null, natPorts: string): string {
    return `${want ?? '(default route)'} ${natPorts}`;
  }

  /**
   * Opens the uplink `want` (null: the default route's) with port range `natPorts`, usable at once if the
   * interface is, else held until it is; `watch` starts readiness on a port it opens, `failed` is told
   * when one of them fails. Throws a UsageError naming --nat-ports when another softnet guards the range.
   */
  static open(
    p: Pipeline,
    want: string | null,
    natPorts: string,
    perVm: number | null,
    stateDir: string,
    log: Logger,
    watch: (port: Port) => void,
    failed: () => void,
  ): LiveUplink {
    const { lo, hi } = portRange('natPorts', natPorts);
    const raw = openPort({ fd: native.rawSocket(), mode: PortMode.RAW, name: `${want ?? 'uplink'}:raw` });
    const nat: NatUplink = {
      flows: new FlowTable(lo, hi, perVm ?? Math.max(64, Math.floor((hi - lo + 1) / 4))),
      forwards: new ForwardTable(lo, hi),
      fragments: new FragmentTable(),
      addr: 0,
      mtu: 1500,
      held: true,
      raw,
      tx: null,
      hop: null,
      v6: null,
    };
    const up = new LiveUplink(want, natPorts, nat, stateDir, p, log, watch, failed);
    up.six = new Uplink6(p, lo, hi, nat.flows.perVm, stateDir, log, watch, failed);
    nat.v6 = up.six.nat;
    try {
      up.check(true);
    } catch (e) {
      up.close();
      throw e;
    }
    return up;
  }

  /** The interface asked for; null: the default route's, followed as it moves (see pin()). */
  get want(): string | null {
    return this.wanted;
  }

  /** Stays on interface `name` from now on: a network named the interface this one followed the default route to. */
  pin(name: string): void {
    this.wanted = name;
  }

  /** The ports the uplink has open now, for counters. */
  get ports(): Port[] {
    return [
      this.nat.raw,
      ...(this.capture ? [this.capture] : []),
      ...(this.nat.tx ? [this.nat.tx] : []),
      ...(this.six?.ports ?? []),
    ];
  }

  /**
   * Reads the interface afresh and follows it: holds NAT, resumes it, or moves it to a new interface or
   * address. `first` (at open) lets a guard conflict throw as a usage error; later it holds the uplink.
   */
  check(first = false): void {
    const name = this.wanted ?? defaultRouteInterface();
    this.six?.check(this.wanted, name);
    const st = name === null ? null : native.ifState(name);
    const reason = holdReason(name, st);
    if (reason !== null || st === null || name === null) {
      this.hold(reason ?? 'interface-gone', name);
      return;
    }
    if (st.mtu !== this.nat.mtu && this.nat.addr !== 0 && !this.nat.held)
      this.log.info('uplink mtu changed', { uplink: name, from: this.nat.mtu, to: st.mtu });
    this.nat.mtu = st.mtu;
    const moved = name !== this.ifname || st.index !== this.index;
    const readdressed = st.addr !== this.nat.addr;
    if (!moved && !readdressed && !this.nat.held && this.capture !== null) return;
    try {
      this.activate(name, st, moved, readdressed);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (first && e instanceof GuardConflict) throw new UsageError('--nat-ports', why);
      this.closeSockets();
      this.hold(`open-failed: ${why}`, name);
    }
  }

  /** Makes NAT run on interface `name` in state `st`. */
  private activate(name: string, st: IfState, moved: boolean, readdressed: boolean): void {
    const nat = this.nat;
    if (readdressed && nat.addr !== 0) {
      const ended = nat.flows.clear();
      this.log.warn('uplink address changed: its mappings end', {
        uplink: name,
        from: formatIpv4(nat.addr),
        to: formatIpv4(st.addr),
        mappings_ended: ended,
      });
    }
    if (moved && this.ifname !== null && this.ifname !== name)
      this.log.warn('uplink moved', { from: this.ifname, to: name });
    nat.addr = st.addr;
    if (moved || readdressed || this.guard === null) {
      withGuardLock(() => {
        const old = this.guard;
        this.guard = null;
        // The interface left keeps its address: replies to its flows still arrive there for a while, and
        // the host's stack would answer them with RSTs. Its guard stays a little (the range stays reserved
        // by the new one), unless NAT comes back to that very interface, whose table is the same.
        this.dropLingering();
        if (old !== null && old.uplink !== name) {
          this.lingering = old;
          this.lingerUntil = monotonicMs() + GUARD_LINGER_MS;
        } else {
          old?.remove();
        }
        this.guard = NatGuard.install(name, st.addr, this.lo, this.hi);
        for (const proto of [NatProto.TCP, NatProto.UDP])
          this.guard.addForwards(protoName(proto) as 'tcp' | 'udp', nat.forwards.ports(proto));
      });
    }
    if (moved || readdressed || this.store === null) {
      this.store = new FlowStore(
        join(this.stateDir, `nat-${name}-${this.lo}-${this.hi}.flows.json`),
        formatIpv4(st.addr),
      );
      this.saved = { changes: -1, at: 0 };
    }
    if (moved || this.capture === null) this.openSockets(name);
    else this.refilter();
    this.ifname = name;
    this.index = st.index;
    if (nat.held) {
      nat.held = false;
      const was = this.heldReason;
      this.heldReason = null;
      if (was === 'starting') return;
      this.log.info('uplink usable: NAT resumed', {
        uplink: name,
        address: formatIpv4(nat.addr),
        was,
        held_ms: Date.now() - this.heldSince,
      });
    }
  }

  private hold(reason: string, name: string | null): void {
    const wasHeld = this.nat.held;
    this.nat.held = true;
    this.closeSockets();
    if (wasHeld && this.heldReason !== 'starting') {
      this.heldReason = reason;
      return;
    }
    this.heldReason = reason;
    this.heldSince = Date.now();
    this.outages++;
    this.log.warn('uplink unavailable: NAT on hold', {
      uplink: name ?? this.want ?? 'none',
      reason,
      address: this.nat.addr === 0 ? undefined : formatIpv4(this.nat.addr),
    });
  }

  /** Opens the capture and send sockets on `name` for the current address. */
  private openSockets(name: string): void {
    this.closeSockets();
    const nat = this.nat;
    const fwd = nat.forwards;
    const filter = captureFilter(nat.addr, this.lo, this.hi, {
      tcp: fwd.ports(NatProto.TCP),
      udp: fwd.ports(NatProto.UDP),
    });
    const s = openUplinkSockets(
      this.p,
      name,
      4,
      filter,
      (off, len) => fromUplink(this.p, nat, off, len),
      this.watch,
      () => this.failed(),
    );
    this.capture = s.capture;
    nat.tx = s.tx;
    nat.hop = new NextHop(name, s.mac);
  }

  private closeSockets(): void {
    closePorts(this.p, [this.capture, this.nat.tx]);
    this.capture = null;
    this.nat.tx = null;
    this.nat.hop = null;
  }

  /** Makes a VM's saved mappings again as it attaches; returns how many came back. */
  restore(att: Attachment, clock: number): number {
    const six = this.six?.restore(att, clock) ?? 0;
    return six + (this.store?.restore(this.nat.flows, att, att.key, clock) ?? 0);
  }

  /** Parks a detaching VM's mappings for its return (see FlowStore), ending them in the table. */
  park(att: Attachment): void {
    this.six?.park(att);
    if (this.store) this.store.park(this.nat.flows, att, att.key);
    else this.nat.flows.removeOwner(att);
  }

  /** Forgets what is parked for a VM that is not coming back. */
  forget(key: string): void {
    this.store?.forget(key);
    this.six?.forget(key);
  }

  /**
   * Adds port forwards of `owner`, each (NatProto, external port, VM port, whether the uplink's IPv6 address
   * takes it too); all or none. Throws an Error saying why one cannot be had (see ForwardTable.refusal) or
   * what nftables said.
   */
  addForwards(
    owner: ForwardOwner,
    list: Array<[proto: number, ext: number, int: number, ipv6?: boolean]>,
  ): PortForward[] {
    const added: PortForward[] = [];
    try {
      for (const [proto, ext, int] of list) added.push(this.nat.forwards.add(owner, proto, ext, int));
      // The same ports on the IPv6 address for a forward bound to no address: one forward, both families.
      const both = list.filter((e) => e[3] === true);
      const six =
        this.six?.addForwards(
          owner,
          both.map(([proto, ext, int]) => [proto, ext, int]),
        ) ?? [];
      for (const [i, twin] of six.entries()) this.twins.set(added[list.indexOf(both[i])], twin);
      for (const proto of [NatProto.TCP, NatProto.UDP]) {
        const name = protoName(proto) as 'tcp' | 'udp';
        this.guard?.addForwards(
          name,
          added.filter((f) => f.proto === proto).map((f) => f.ext),
        );
      }
      this.refilter();
      return added;
    } catch (e) {
      this.removeForwards(added);
      throw e;
    }
  }

  /** Removes port forwards: translation first, then the filter, then the guard's elements. Never throws. */
  removeForwards(list: PortForward[]): void {
    if (list.length === 0) return;
    const six = list.flatMap((f) => {
      const twin = this.twins.get(f);
      this.twins.delete(f);
      return twin ? [twin] : [];
    });
    this.six?.removeForwards(six);
    for (const f of list) this.nat.forwards.remove(f);
    try {
      this.refilter();
    } catch (e) {
      // The capture goes on taking those ports, and drops them: they have no forward now.
      this.log.error('capture filter not replaced', { error: e instanceof Error ? e.message : String(e) });
    }
    for (const proto of [NatProto.TCP, NatProto.UDP]) {
      const name = protoName(proto) as 'tcp' | 'udp';
      this.guard?.removeForwards(
        name,
        list.filter((f) => f.proto === proto).map((f) => f.ext),
      );
    }
  }

  /** Gives the capture socket a filter for the address, NAT range and forwarded ports of the moment. */
  private refilter(): void {
    if (this.capture === null) return;
    const fwd = this.nat.forwards;
    native.portSetFilter(
      this.capture.id,
      captureFilter(this.nat.addr, this.lo, this.hi, {
        tcp: fwd.ports(NatProto.TCP),
        udp: fwd.ports(NatProto.UDP),
      }),
    );
  }

  /** Ends idle mappings, reads the next hops again, and writes a snapshot when mappings changed a while ago; run once a second. */
  tick(clock: number): void {
    if (this.lingering !== null && monotonicMs() >= this.lingerUntil)
      withGuardLock(() => this.dropLingering());
    this.nat.hop?.refresh();
    this.nat.flows.sweep(clock);
    this.six?.tick(clock);
    this.six?.saveIfChanged(clock);
    this.nat.forwards.sweep(clock);
    if (this.nat.flows.changes !== this.saved.changes && clock - this.saved.at >= FLOW_SNAPSHOT_S)
      this.save(clock);
  }

  /** Writes the mappings for the next start; a failure is logged, the mappings go on in memory. */
  save(clock: number): void {
    this.six?.save(clock);
    if (this.store === null) return;
    this.saved = { changes: this.nat.flows.changes, at: clock };
    try {
      this.store.save(this.nat.flows, (owner) => (owner as Attachment).key);
    } catch (e) {
      this.log.error('flow snapshot failed', { error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Closes the sockets and removes the guard; the snapshot stays. */
  close(): void {
    this.six?.close();
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

  /** Removes the guard left on the interface NAT moved away from (its range stays reserved by the other). */
  private dropLingering(): void {
    this.lingering?.removeTable();
    this.lingering = null;
  }
}
