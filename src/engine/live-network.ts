// A network the engine runs: its host link TAP carrying the gateway address, DNS at the gateway, and the
// segment that decides its frames; a bridge network has the LAN of an interface instead of the first two.
// Opened when it is declared (the service) or first asked for (a VM).
//
// The host link is softnet's, but the host's administrator (or a network manager) may delete it, set it
// down or take its address away. checkHostLink() runs on every rtnetlink event and every few seconds and
// puts back what is missing: the same TAP (name, MAC, address, hence the subnet's route) made again, or
// the link brought up and given its address again. The VMs keep their addresses and ports meanwhile, and
// the host hears of each VM's address again once the link is back.

import { join } from 'node:path';
import { native } from '../native.js';
import type { LanSide } from '../net/bridge-lan.js';
import { networkConfig } from '../net/network.js';
import { linkOf, type NetworkSpec } from '../net/network-spec.js';
import { configureIpv6, gatewayMacFor, HostLinkBusy, hasAddress6, openHostLink } from '../ports/host-link.js';
import { openLan } from '../ports/lan.js';
import type { Port } from '../ports/port.js';
import { DnsForwarder, resolversFrom } from '../services/dns.js';
import { prefixFromWords } from '../services/dns64.js';
import { PrefixTable } from '../services/prefixes.js';
import type { LogFields, Logger } from '../util/log.js';
import { formatIpv4, formatIpv6, parseCidr6, parseIpv4 } from '../wire/addr.js';
import { flagged, UsageError } from './errors.js';
import { openPort } from './ports.js';
import { NetworkSegment, type SegmentEvents } from './segment.js';
import type { LiveUplink } from './uplinks.js';

/** Opens the LAN sockets of bridged interface `iface` as ports (openPort closes an fd it cannot take). */
function openLanSide(iface: string): LanSide {
  const lan = openLan(iface);
  let rx: Port;
  try {
    rx = openPort(lan.rx);
  } catch (e) {
    native.closeFd(lan.tx.fd);
    throw e;
  }
  let tx: Port;
  try {
    tx = openPort(lan.tx);
  } catch (e) {
    rx.close();
    throw e;
  }
  return {
    rx,
    tx,
    mac: lan.mac,
    mtu: lan.mtu,
    membership: (mac: Uint8Array, on: boolean) => native.packetMembership(lan.rx.fd, mac, on),
  };
}

/** One running network. */
export class LiveNetwork {
  /** What is wrong with the host link that softnet could not repair yet; null when nothing is. */
  hostLinkProblem: string | null = null;
  /** Times the host link was found deleted, down or without its address, and put back. */
  hostLinkRepairs = 0;
  /** The host link's (or bridged interface's) index: another one means it was deleted and made again. */
  private linkIndex: number;
  /** A socket of the network's own side failed since the last look. */
  private failed = false;

  private constructor(
    readonly spec: NetworkSpec,
    readonly seg: NetworkSegment,
    readonly uplink: LiveUplink | null,
    private dns: DnsForwarder | null,
    /** Declared networks stay without VMs; one a VM brought along closes with its last VM. */
    readonly declared: boolean,
    private readonly log: Logger,
    private readonly watch: (port: Port) => void,
  ) {
    this.linkIndex = native.ifState(linkOf(spec))?.index ?? 0;
  }

  /**
   * Opens `spec`'s host link and segment; `watch` starts readiness callbacks on a port. Throws UsageError
   * naming the flag when the host link cannot be had.
   */
  static async open(
    p: ConstructorParameters<typeof NetworkSegment>[0],
    spec: NetworkSpec,
    uplink: LiveUplink | null,
    stateDir: string,
    declared: boolean,
    log: Logger,
    events: SegmentEvents,
    watch: (port: Port) => void,
  ): Promise<LiveNetwork> {
    if (spec.type === 'bridge')
      return LiveNetwork.openBridge(p, spec, stateDir, declared, log, events, watch);
    let prefixes: PrefixTable | null = null;
    if (spec.ipv6) {
      const given = spec.ipv6Prefix === null ? null : parseCidr6(spec.ipv6Prefix)!.addr;
      try {
        prefixes = new PrefixTable(
          join(stateDir, `${spec.hostLink}.ipv6.json`),
          given === null ? null : Int32Array.of(given[0] | 0, given[1] | 0),
          spec.leaseTime * 1000,
        );
      } catch (e) {
        throw new UsageError('--state-dir', (e as Error).message);
      }
    }
    const cfg = networkConfig(spec, prefixes?.network ?? null);
    let link: ReturnType<typeof openHostLink>;
    try {
      link = openHostLink(
        spec.hostLink,
        gatewayMacFor(spec.hostLink, spec.cidr),
        cfg.gateway,
        cfg.prefix,
        spec.mtu,
        cfg.v6?.gateway ?? null,
      );
    } catch (e) {
      const why =
        e instanceof HostLinkBusy ? e.message : `host link ${spec.hostLink}: ${(e as Error).message}`;
      throw new UsageError('--host-link', why);
    }
    const hostPort = openPort(link.spec);
    let seg: NetworkSegment;
    try {
      seg = new NetworkSegment(
        p,
        cfg,
        hostPort,
        link.mac,
        join(stateDir, `${spec.hostLink}.leases.json`),
        uplink?.nat ?? null,
        log,
        events,
        null,
        prefixes,
      );
    } catch (e) {
      hostPort.close();
      throw new UsageError('--state-dir', (e as Error).message);
    }
    for (const [mac, ip] of Object.entries(spec.reservations)) seg.leases.reserve(mac, parseIpv4(ip)!);
    let dns: DnsForwarder | null = null;
    try {
      dns = await DnsForwarder.start(formatIpv4(cfg.gateway), resolversFrom(), log);
      if (cfg.v6 !== null)
        await dns.listenAlso(formatIpv6(cfg.v6.gateway), {
          dns64: cfg.nat64 && prefixFromWords(cfg.nat64),
        });
    } catch (e) {
      log.warn('dns at the gateway unavailable', {
        network: spec.name,
        error: e instanceof Error ? e.message : String(e),
      });
    }
    watch(hostPort);
    return new LiveNetwork(spec, seg, uplink, dns, declared, log, watch);
  }

  /**
   * Opens a bridge network: the LAN sockets on its interface and a segment over them; no host link, DNS or
   * NAT. Throws UsageError('--bridge-interface') when the interface cannot be bridged.
   */
  private static openBridge(
    p: ConstructorParameters<typeof NetworkSegment>[0],
    spec: NetworkSpec,
    stateDir: string,
    declared: boolean,
    log: Logger,
    events: SegmentEvents,
    watch: (port: Port) => void,
  ): LiveNetwork {
    const iface = linkOf(spec);
    const side = flagged('--bridge-interface', () => openLanSide(iface));
    let seg: NetworkSegment;
    try {
      seg = flagged(
        '--state-dir',
        () =>
          new NetworkSegment(
            p,
            networkConfig(spec),
            side.tx,
            side.mac,
            join(stateDir, `${iface}.bridge-leases.json`),
            null,
            log,
            events,
            side,
          ),
      );
    } catch (e) {
      side.rx.close();
      side.tx.close();
      throw e;
    }
    const { rx, tx } = side;
    watch(rx);
    watch(tx);
    return new LiveNetwork(spec, seg, null, null, declared, log, watch);
  }

  /** The interface the network holds: its host link's TAP, or the interface a bridge network bridges to. */
  get hostLink(): string {
    return linkOf(this.spec);
  }

  /** A socket of the network's own side failed: the next look at it opens it again. */
  sideFailed(): void {
    this.failed = true;
  }

  /** Reads the host link afresh and puts back what someone else undid (see the top of this file). */
  checkHostLink(): void {
    if (this.spec.type === 'bridge')
      this.repair(
        () => this.reopenBridge(),
        'bridge interface unusable: its VMs are cut off from the LAN',
        'bridge interface back: its VMs are on the LAN again',
        { bridge_interface: this.hostLink },
      );
    else
      this.repair(
        () => this.fixHostLink(),
        'host link cannot be repaired: the host does not reach the VMs',
        'host link repaired',
        { host_link: this.hostLink },
      );
  }

  /**
   * Runs `fix`, which returns what it found wrong and put right (null: nothing was), or throws what keeps
   * it from doing so; says each once: the first failure, and the repair.
   */
  private repair(fix: () => string | null, unusable: string, repaired: string, fields: LogFields): void {
    let found: string | null;
    try {
      found = fix();
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (this.hostLinkProblem === null)
        this.log.error(unusable, { network: this.spec.name, ...fields, error: why });
      this.hostLinkProblem = why;
      return;
    }
    if (found === null) return;
    this.hostLinkProblem = null;
    this.hostLinkRepairs++;
    this.log.warn(repaired, { network: this.spec.name, ...fields, found });
  }

  /** Puts the host link back as softnet made it; returns what was wrong with it, or null. */
  private fixHostLink(): string | null {
    const name = this.spec.hostLink;
    const { gateway, prefix } = this.seg.cfg;
    const st = native.ifState(name);
    if (st === null || st.index !== this.linkIndex) {
      this.remakeHostLink();
      return st === null ? 'deleted' : 'replaced';
    }
    const found: string[] = [];
    if (!st.up) found.push('down');
    if (st.addr !== gateway) found.push(st.addr === 0 ? 'address-missing' : 'address-changed');
    const v6 = this.seg.cfg.v6;
    if (v6 !== null && !hasAddress6(name, v6.gateway)) found.push('ipv6-address-missing');
    if (found.length === 0) return null;
    native.ifConfigure(name, gateway, prefix, true);
    if (v6 !== null) configureIpv6(name, v6.gateway);
    return found.join(',');
  }

  /**
   * A bridged interface is the host's: softnet cannot make it, only wait for it. Gone, the VMs are cut off
   * from the LAN; back (a new interface of that name, or the old one after its sockets failed), the LAN's
   * sockets are opened on it again. Returns what was found, or null when all was well.
   */
  private reopenBridge(): string | null {
    const iface = this.hostLink;
    const st = native.ifState(iface);
    if (st === null) throw new Error(`${iface} is gone`);
    if (st.index === this.linkIndex && !this.failed) return null;
    const side = openLanSide(iface);
    this.seg.replaceLan(side);
    this.watch(side.rx);
    this.watch(side.tx);
    const found = st.index === this.linkIndex ? 'sockets-failed' : 'made-again';
    this.linkIndex = st.index;
    this.failed = false;
    return found;
  }

  /** Makes the host link's TAP again, as it was opened, in place of the one that went away. */
  private remakeHostLink(): void {
    const spec = this.spec;
    const cfg = this.seg.cfg;
    const link = openHostLink(
      spec.hostLink,
      gatewayMacFor(spec.hostLink, spec.cidr),
      cfg.gateway,
      cfg.prefix,
      spec.mtu,
      cfg.v6?.gateway ?? null,
    );
    let port: Port;
    try {
      port = openPort(link.spec);
    } catch (e) {
      native.closeFd(link.spec.fd);
      throw e;
    }
    this.seg.replaceHostLink(port);
    this.watch(port);
    this.linkIndex = native.ifState(spec.hostLink)?.index ?? 0;
  }

  /** Closes the host link and every attachment (leases stay on disk) and stops DNS. */
  close(): void {
    this.seg.close();
    this.dns?.close();
    this.dns = null;
  }
}
