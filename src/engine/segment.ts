/*
 * One network at run time: its host link, its lease table and DHCP server, and the VMs attached to it.
 *
 * Theory of operation
 * - The host link and the lease table live as long as the network. Attachments come and go: attaching
 *   restores the address a still-valid lease gives the VM (so a restarted softnet lets a VM keep
 *   talking), or binds its reserved address at once (so a VM configured statically with it works with no
 *   DHCP at all); detaching because the VM went away frees its lease at once.
 * - `byIp` maps each usable leased address to its attachment; assign() is the only place that changes an
 *   attachment's address, so the map and the attachments never disagree, and `addressChanged` tells the
 *   engine (port forwards follow the address). Its keys are `ip | 0`: a signed 32-bit key is a small
 *   integer to V8, where an address above 2^31 would be a boxed number allocated on every lookup.
 * - When a VM gets an address, the host link hears a gratuitous ARP from its external MAC: the host may
 *   still have that address at the MAC of the VM that held it before (for half a minute or so).
 * - Leases expire, and idle NAT mappings end, on a one-second timer, not per packet, and on the
 *   monotonic clock (util/clock.ts), so a step of the wall clock neither ends them all nor keeps them. A VM that goes away
 *   takes its mappings with it. A reserved address held by an attached VM does not expire: a static guest
 *   never renews it.
 * - A bridge network has a LAN (BridgeLan) instead of a host link: its VMs' addresses are the LAN's DHCP
 *   server's, learnt by the snoop into the same lease table (over the whole address space, as the LAN's
 *   addresses are not the network's subnet), so restoring, expiring and freeing work as for softnet's own
 *   leases. softnet's DHCP server never answers there: the bridge path relays instead. A bridged VM that
 *   goes away has its lease released to the LAN's server, as its own client would on shutdown.
 */

import type { NatUplink } from '../nat/uplink.js';
import { native } from '../native.js';
import { Attachment, type AttachmentIdentity, AttType } from '../net/attachment.js';
import { BridgeLan, type LanSide } from '../net/bridge-lan.js';
import type { NetworkConfig } from '../net/network.js';
import { fromLan } from '../pipeline/bridge.js';
import { emitRelease } from '../pipeline/bridge-dhcp.js';
import { fromHost } from '../pipeline/from-host.js';
import { fromVm } from '../pipeline/from-vm.js';
import type { Pipeline, PortOwner } from '../pipeline/pipeline.js';
import { STRIDE } from '../pipeline/pipeline.js';
import type { Segment } from '../pipeline/segment.js';
import type { Port } from '../ports/port.js';
import { DhcpServer, maxDhcpFrameLen } from '../services/dhcp.js';
import { DhcpSnoop } from '../services/dhcp-snoop.js';
import { Dhcpv6Server, duidLl } from '../services/dhcpv6.js';
import { type LanServer, LeaseStore } from '../services/lease-store.js';
import { LeaseTable } from '../services/leases.js';
import {
  ALL_NODES,
  emitRouterAdvert,
  encodeDnssl,
  ROUTER_LIFETIME,
  type RouterInfo,
} from '../services/ndp.js';
import type { PrefixTable } from '../services/prefixes.js';
import { monotonicMs, monotonicSeconds } from '../util/clock.js';
import type { Logger } from '../util/log.js';
import { formatIpv4, formatMac } from '../wire/addr.js';
import { ArpOp, emitArp } from '../wire/arp.js';
import { EtherType, emitEthernet, macKey } from '../wire/ethernet.js';

const BROADCAST = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
const ZERO_MAC = new Uint8Array(6);

/** What a segment tells its owner. */
export interface SegmentEvents {
  /** The host link failed; the network cannot go on. */
  hostLinkFailed(err: string): void;
  /** A VM's port failed or closed: the VM went away. The segment has detached it and freed its lease. */
  vmGone(att: Attachment, err: string): void;
  /** A VM's usable address changed (0: it has none now). */
  addressChanged?(att: Attachment, ip: number): void;
}

/**
 * A network's run-time state; it owns the ports of its own side (the host link, or a bridge's LAN sockets)
 * and decides the frames of every port on it.
 */
export class NetworkSegment implements Segment {
  readonly gatewayMacKey: number;
  private readonly byIp = new Map<number, Attachment>();
  readonly leases: LeaseTable;
  readonly dhcp: DhcpServer;
  readonly attachments = new Set<Attachment>();
  readonly lan: BridgeLan | null;
  /** The VMs by the subnet ID of their /64; what router advertisements say; DHCPv6. */
  private readonly byId6 = new Map<number, Attachment>();
  readonly router: RouterInfo | null;
  readonly dhcp6: Dhcpv6Server | null;
  /** When (monotonic ms) every VM is next told its /64 again unasked. */
  private nextAdvert = 0;
  /** Who handles the host link's (or the LAN's) frames: kept to give a remade one the same owner. */
  private readonly hostOwner: PortOwner | null;
  private readonly lanOwner: PortOwner | null;

  /**
   * For a bridge network `lanSide` is its LAN, `hostLink` its sending socket and `gatewayMac` the bridged
   * interface's MAC.
   */
  constructor(
    private readonly p: Pipeline,
    readonly cfg: NetworkConfig,
    /** Replaced when the host link is made again (see replaceHostLink). */
    public hostLink: Port,
    readonly gatewayMac: Uint8Array,
    leaseFile: string | null,
    readonly nat: NatUplink | null,
    private readonly log: Logger,
    private readonly events: SegmentEvents,
    lanSide: LanSide | null = null,
    /** Each VM's /64 out of the network's /48 (cfg.v6); null when the network has no IPv6. */
    private readonly prefixes: PrefixTable | null = null,
  ) {
    this.gatewayMacKey = macKey(gatewayMac, 0);
    const v6 = cfg.v6;
    this.router =
      v6 === null
        ? null
        : {
            gatewayMac,
            mtu: cfg.mtu,
            dns: v6.gateway,
            dnssl: encodeDnssl(cfg.domain, ROUTER_LIFETIME),
            validLifetime: v6.validLifetime,
            preferredLifetime: v6.preferredLifetime,
            pref64: cfg.nat64,
          };
    this.dhcp6 = v6 === null ? null : new Dhcpv6Server({ serverDuid: duidLl(gatewayMac) });
    this.leases = new LeaseTable(
      lanSide ? 1 : cfg.poolStart,
      lanSide ? 0xfffffffe : cfg.poolEnd,
      leaseFile ? new LeaseStore(leaseFile) : null,
      monotonicMs(),
    );
    const assign = (att: Attachment, ip: number) => this.assign(att, ip);
    this.dhcp = new DhcpServer(cfg, this.leases, assign);
    if (maxDhcpFrameLen(this.dhcp) > STRIDE) throw new Error('DHCP options do not fit in one frame');
    if (lanSide) {
      const snoop = new DhcpSnoop(this.leases, assign, (ip) => this.vmAt(ip));
      const lan = new BridgeLan(lanSide, snoop, log, (err) => this.events.hostLinkFailed(err));
      const lanOwner: PortOwner = {
        frame: (_port, off, len) => fromLan(p, this, off, len),
        failed: (port, errno) => lan.failed(port, native.errnoName(errno)),
      };
      p.add(lan.rx, lanOwner);
      p.add(lan.tx, lanOwner);
      this.lan = lan;
      this.hostOwner = null;
      this.lanOwner = lanOwner;
    } else {
      const hostOwner: PortOwner = {
        frame: (_port, off, len, slot) => fromHost(p, this, off, len, slot),
        failed: (_port, errno) => this.events.hostLinkFailed(native.errnoName(errno)),
      };
      p.add(hostLink, hostOwner);
      this.lan = null;
      this.hostOwner = hostOwner;
      this.lanOwner = null;
    }
  }

  /** The ports of the network's own side: the host link, or a bridge's LAN sockets. */
  get sidePorts(): Port[] {
    return this.lan ? [this.lan.rx, this.lan.tx] : [this.hostLink];
  }

  /** The VM that holds leased address `ip`, if any. */
  vmAt(ip: number): Attachment | undefined {
    return this.byIp.get(ip | 0);
  }

  /** The VM holding subnet ID `id` of the network's /48, if any. */
  vmAt6(id: number): Attachment | undefined {
    return this.byId6.get(id);
  }

  /**
   * Attaches a VM's port; its reservation, or a lease it still holds, makes its address usable at once, and
   * it gets its /64 (the one it held before a restart).
   */
  attach(port: Port, id: AttachmentIdentity): Attachment {
    const att = new Attachment(port, id, this.gatewayMac);
    att.nat64 = this.cfg.nat64;
    this.takePrefix(att);
    const now = monotonicMs();
    const mac = formatMac(att.mac);
    // On an IPv6-only network a VM has no IPv4 address at all, reserved or left from before.
    const reserved = this.cfg.ipv6Only ? 0 : this.leases.reservation(mac);
    const lease = this.cfg.ipv6Only ? undefined : this.leases.get(att.key);
    if (reserved !== 0 && this.leases.available(att.key, mac, reserved, now)) {
      this.leases.bind(att.key, mac, reserved, now + this.cfg.leaseTime * 1000);
      this.assign(att, reserved);
    } else if (lease?.state === 'bound' && lease.expires > now) {
      this.assign(att, lease.ip);
    }
    this.attachments.add(att);
    if (this.lan && att.type === AttType.BRIDGE) this.lan.add(att);
    this.p.add(port, {
      frame: (_port, off, len, slot) => fromVm(this.p, this, att, off, len, slot),
      failed: (_port, errno) => this.vmGone(att, native.errnoName(errno)),
    });
    this.advertise(att);
    return att;
  }

  /** Gives a VM its /64: the subnet ID its lease identity holds, or the lowest free one. */
  private takePrefix(att: Attachment): void {
    const v6 = this.cfg.v6;
    if (v6 === null || this.prefixes === null || att.type === AttType.BRIDGE) return;
    const id = this.prefixes.take(att.key);
    if (id === 0) {
      att.log.warn('no IPv6 prefix left for the vm', { vm: att.name });
      return;
    }
    att.p0 = v6.w0;
    att.p1 = v6.w1 | id;
    this.byId6.set(id, att);
  }

  /** Takes a VM's /64 away; `free`: it is gone, and its subnet ID may go to another VM. */
  private dropPrefix(att: Attachment, free: boolean): void {
    if (att.p0 === 0 && att.p1 === 0) return;
    const id = att.p1 & 0xffff;
    if (this.byId6.get(id) === att) this.byId6.delete(id);
    att.p0 = 0;
    att.p1 = 0;
    att.forgetSources6();
    if (free) this.prefixes?.release(att.key);
  }

  /** Tells a VM its /64 and its router, unasked: a router advertisement to all nodes, sent to its MAC alone. */
  private advertise(att: Attachment): void {
    if (this.router === null || (att.p0 === 0 && att.p1 === 0) || att.type === AttType.DISCONNECTED) return;
    const { u8, dv } = this.p;
    const off = this.p.ownFrame();
    const len = emitRouterAdvert(u8, dv, off, this.router, att.mac, ALL_NODES, att.p0, att.p1);
    this.p.sendNow(att.port, len);
  }

  /** Detaches a VM; when `freeLease`, its lease ends now (the VM is gone), else it stays for a restart. */
  detach(att: Attachment, freeLease: boolean): void {
    if (!this.attachments.delete(att)) return;
    if (freeLease) {
      const lease = this.leases.release(att.key);
      if (lease?.state === 'bound') {
        att.log.info('lease released', { ip: formatIpv4(lease.ip), mac: lease.mac, reason: 'vm-gone' });
        if (this.lan !== null && lease.server !== undefined) this.releaseOnLan(att, lease.ip, lease.server);
      }
    }
    this.assign(att, 0);
    this.dropPrefix(att, freeLease);
    this.lan?.remove(att);
    this.nat?.flows.removeOwner(att);
    this.nat?.v6?.flows.removeOwner(att);
    this.nat?.fragments.sweep(monotonicSeconds(), att);
    this.nat?.v6?.fragments.sweep(monotonicSeconds(), att);
    this.nat?.v6?.outFragments.sweep(monotonicSeconds(), att);
    this.p.remove(att.port);
    att.port.close();
  }

  /**
   * Puts a host link made again in place of one that failed or was deleted (the old port is closed), and
   * tells the host where every VM's address is, as when each got it.
   */
  replaceHostLink(port: Port): void {
    if (this.hostOwner === null) throw new Error('a bridge network has no host link');
    this.p.remove(this.hostLink);
    this.hostLink.close();
    this.hostLink = port;
    this.p.add(port, this.hostOwner);
    for (const att of this.attachments) if (att.ip !== 0) this.announce(att);
  }

  /** Puts the sockets of a bridged interface made again in place of the old ones, which are closed. */
  replaceLan(side: LanSide): void {
    const lan = this.lan;
    if (lan === null || this.lanOwner === null) throw new Error('not a bridge network');
    for (const port of [lan.rx, lan.tx]) {
      this.p.remove(port);
      port.close();
    }
    lan.replace(side);
    this.hostLink = side.tx;
    this.p.add(side.rx, this.lanOwner);
    this.p.add(side.tx, this.lanOwner);
  }

  /** Ends leases (`now`: monotonic ms) and idle flows (`clock`: monotonic s) whose time is up; run once a second. */
  tick(now: number, clock: number): void {
    this.nat?.fragments.sweep(clock);
    this.nat?.v6?.fragments.sweep(clock);
    this.nat?.v6?.outFragments.sweep(clock);
    if (this.prefixes !== null) {
      const keys: string[] = [];
      for (const att of this.attachments) if (att.p0 !== 0 || att.p1 !== 0) keys.push(att.key);
      this.prefixes.tick(keys, now);
    }
    // RFC 4861 6.2.1: unsolicited advertisements at most every 1800 s; here a third of the prefix's
    // preferred lifetime, so a VM hears of it twice more before it would deprecate its address.
    if (this.cfg.v6 !== null && now >= this.nextAdvert) {
      if (this.nextAdvert !== 0) for (const att of this.attachments) this.advertise(att);
      this.nextAdvert = now + Math.min(this.cfg.v6.preferredLifetime / 3, 1800) * 1000;
    }
    const half = (this.cfg.leaseTime * 1000) / 2;
    for (const att of this.attachments) {
      const mac = formatMac(att.mac);
      const lease = att.ip === 0 ? undefined : this.leases.get(att.key);
      if (lease && att.ip === this.leases.reservation(mac) && lease.expires - now < half)
        this.leases.bind(att.key, mac, att.ip, now + this.cfg.leaseTime * 1000);
    }
    for (const l of this.leases.expire(now)) {
      const att = this.vmAt(l.ip);
      (att?.log ?? this.log).info('lease expired', { ip: formatIpv4(l.ip), mac: l.mac });
      if (att) this.assign(att, 0);
    }
  }

  /** Closes the host link (or LAN) and every attachment, keeping leases for the next start. */
  close(): void {
    for (const att of [...this.attachments]) this.detach(att, false);
    for (const port of this.sidePorts) {
      this.p.remove(port);
      port.close();
    }
  }

  /** Detaches a VM that went away (its port failed, or its namespace was deleted) and frees its lease. */
  vmGone(att: Attachment, err: string): void {
    if (!this.attachments.has(att)) return;
    att.log.info('vm detached', { vm: att.name, port: att.port.name, mac: formatMac(att.mac), reason: err });
    this.detach(att, true);
    this.events.vmGone(att, err);
  }

  private assign(att: Attachment, ip: number): void {
    if (att.ip === ip) return;
    if (att.ip !== 0 && this.vmAt(att.ip) === att) this.byIp.delete(att.ip | 0);
    att.ip = ip;
    if (ip !== 0) {
      this.byIp.set(ip | 0, att);
      // A bridged VM speaks for itself on its LAN; the host link only knows what softnet tells it.
      if (this.lan === null) this.announce(att);
    }
    this.events.addressChanged?.(att, ip);
  }

  /** Gives a bridged VM's address back to the LAN's server that leased it, as its client would have. */
  private releaseOnLan(att: Attachment, ip: number, server: LanServer): void {
    const off = this.p.ownFrame();
    const len = emitRelease(this.p.u8, this.p.dv, off, att.extMac, ip, server);
    this.p.sendNow(this.lan!.tx, len);
    att.log.info('lease released on the LAN', { ip: formatIpv4(ip), server: formatIpv4(server.ip) });
  }

  /** Tells the host link that the VM's address is at its external MAC (a gratuitous ARP request). */
  private announce(att: Attachment): void {
    const { u8, dv } = this.p;
    const off = this.p.ownFrame();
    const arp = emitEthernet(u8, off, BROADCAST, 0, att.extMac, EtherType.ARP);
    const end = emitArp(dv, u8, arp, ArpOp.REQUEST, att.extMac, att.ip, ZERO_MAC, 0, att.ip);
    this.p.sendNow(this.hostLink, end - off);
  }
}
