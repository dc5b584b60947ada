/*
 * NAT uplinks of one engine, by interface.
 *
 * Theory of operation
 * - One uplink interface has one address, one reserved port range, one flow table and one nftables guard,
 *   whatever number of networks NAT through it: every shared network naming the same interface shares its
 *   LiveUplink (a count of users says when it can close). Two networks asking for different port ranges
 *   on one interface are refused, since the host's stack would see two guards.
 * - Replies captured on the uplink go to the mapping's owner, whatever its network; the owner carries its
 *   gateway MAC, so the capture needs no network of its own.
 * - The mappings are snapshotted to STATE_DIR/nat-<uplink>-<lo>-<hi>.flows.json at stop and every few seconds while they
 *   change, keyed by the VMs' lease identities, and made again when those VMs attach.
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
import { NatGuard, withGuardLock } from '../nat/guard.js';
import { NextHop } from '../nat/next-hop.js';
import type { NatUplink } from '../nat/uplink.js';
import { native, PortMode } from '../native.js';
import { fromUplink } from '../pipeline/from-uplink.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { Port } from '../ports/port.js';
import { captureFilter, openUplink } from '../ports/uplink.js';
import type { Logger } from '../util/log.js';
import type { Attachment } from './attachment.js';
import { flagged } from './errors.js';
import { portRange } from './network-spec.js';
import { openPort } from './ports.js';

/** Seconds between snapshots of the NAT mappings while they change. */
const FLOW_SNAPSHOT_S = 5;

/** One open uplink: its sockets, guard, mappings and snapshot. */
export class LiveUplink {
  users = 0;
  private saved = { changes: 0, at: 0 };

  private constructor(
    readonly name: string,
    readonly natPorts: string,
    readonly nat: NatUplink,
    private readonly capture: Port,
    private readonly guard: NatGuard,
    private readonly store: FlowStore,
    private readonly p: Pipeline,
    private readonly log: Logger,
  ) {}

  /**
   * Opens uplink `name` with port range `natPorts`; `failed` is told when its capture fails. Throws a
   * UsageError naming --uplink (no such interface) or --nat-ports (a range another softnet uses).
   */
  static open(
    p: Pipeline,
    name: string,
    natPorts: string,
    perVm: number | null,
    stateDir: string,
    log: Logger,
    failed: (err: string) => void,
  ): LiveUplink {
    const { lo, hi } = portRange('natPorts', natPorts);
    const up = flagged('--uplink', () => openUplink(name, lo, hi));
    const raw = openPort(up.raw);
    let capture: Port | null = null;
    let tx: Port | null = null;
    try {
      const sender = native.packetTxSocket(name);
      tx = openPort({ fd: sender.fd, mode: PortMode.DGRAM, name: `${name}:tx`, vnet: true });
      const hop = new NextHop(name, sender.mac);
      capture = openPort(up.capture);
      capture.big = true;
      const guard = flagged('--nat-ports', () =>
        withGuardLock(() => NatGuard.install(name, up.addr, lo, hi)),
      );
      const nat: NatUplink = {
        flows: new FlowTable(lo, hi, perVm ?? Math.max(64, Math.floor((hi - lo + 1) / 4))),
        forwards: new ForwardTable(lo, hi),
        fragments: new FragmentTable(),
        addr: up.addr,
        mtu: up.mtu,
        raw,
        tx,
        hop,
      };
      const store = new FlowStore(join(stateDir, `nat-${name}-${lo}-${hi}.flows.json`), up.addr);
      const live = new LiveUplink(name, natPorts, nat, capture, guard, store, p, log);
      p.add(capture, {
        frame: (_port, off, len) => fromUplink(p, nat, off, len),
        failed: (_port, errno) => failed(`uplink capture: ${native.errnoName(errno)}`),
      });
      // It never receives; watching it lets the addon send what the socket could not take at once.
      native.portWatch(tx.id, () => {});
      return live;
    } catch (e) {
      raw.close();
      capture?.close();
      tx?.close();
      throw e;
    }
  }

  /** The capture port, for readiness. */
  get capturePort(): Port {
    return this.capture;
  }

  /** Makes a VM's saved mappings again as it attaches; returns how many came back. */
  restore(att: Attachment, clock: number): number {
    return this.store.restore(this.nat.flows, att, att.key, clock);
  }

  /** Parks a detaching VM's mappings for its return (see FlowStore), ending them in the table. */
  park(att: Attachment): void {
    this.store.park(this.nat.flows, att, att.key);
  }

  /** Forgets what is parked for a VM that is not coming back. */
  forget(key: string): void {
    this.store.forget(key);
  }

  /**
   * Adds port forwards of `owner`, each (NatProto, external port, VM port); all or none. Throws an Error
   * saying why one cannot be had (see ForwardTable.refusal) or what nftables said.
   */
  addForwards(owner: ForwardOwner, list: Array<[proto: number, ext: number, int: number]>): PortForward[] {
    const added: PortForward[] = [];
    try {
      for (const [proto, ext, int] of list) added.push(this.nat.forwards.add(owner, proto, ext, int));
      for (const proto of [NatProto.TCP, NatProto.UDP]) {
        const name = protoName(proto) as 'tcp' | 'udp';
        this.guard.addForwards(
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
    for (const f of list) this.nat.forwards.remove(f);
    try {
      this.refilter();
    } catch (e) {
      // The capture goes on taking those ports, and drops them: they have no forward now.
      this.log.error('capture filter not replaced', { error: e instanceof Error ? e.message : String(e) });
    }
    for (const proto of [NatProto.TCP, NatProto.UDP]) {
      const name = protoName(proto) as 'tcp' | 'udp';
      this.guard.removeForwards(
        name,
        list.filter((f) => f.proto === proto).map((f) => f.ext),
      );
    }
  }

  /** Gives the capture socket a filter for the NAT range and the forwarded ports of the moment. */
  private refilter(): void {
    const { lo, hi } = portRange('natPorts', this.natPorts);
    const fwd = this.nat.forwards;
    native.portSetFilter(
      this.capture.id,
      captureFilter(this.nat.addr, lo, hi, { tcp: fwd.ports(NatProto.TCP), udp: fwd.ports(NatProto.UDP) }),
    );
  }

  /** Ends idle mappings, reads the next hops again, and writes a snapshot when mappings changed a while ago; run once a second. */
  tick(clock: number): void {
    this.nat.hop?.refresh();
    this.nat.flows.sweep(clock);
    this.nat.forwards.sweep(clock);
    if (this.nat.flows.changes !== this.saved.changes && clock - this.saved.at >= FLOW_SNAPSHOT_S)
      this.save(clock);
  }

  /** Writes the mappings for the next start; a failure is logged, the mappings go on in memory. */
  save(clock: number): void {
    this.saved = { changes: this.nat.flows.changes, at: clock };
    try {
      this.store.save(this.nat.flows, (owner) => (owner as Attachment).key);
    } catch (e) {
      this.log.error('flow snapshot failed', { error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Closes the sockets and removes the guard; the snapshot stays. */
  close(): void {
    for (const port of [this.nat.raw, this.capture, ...(this.nat.tx ? [this.nat.tx] : [])]) {
      this.p.remove(port);
      port.close();
    }
    withGuardLock(() => this.guard.remove());
  }
}
