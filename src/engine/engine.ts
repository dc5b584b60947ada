/*
 * The engine: the networks of one host, the VMs attached to them, and the control socket through which
 * per-VM processes hand their VMs over and operators look in.
 *
 * Theory of operation
 * - One process is the engine of one control socket: the one holding the lock beside it. `softnet serve`
 *   is an engine that stays; a per-VM softnet that finds no engine becomes one itself and serves the
 *   per-VM processes that come after it.
 * - Networks open when declared (the service's default network, `network add`, its config file) or when
 *   a VM first asks for one (by --network name, else by host link); a network a VM brought along closes
 *   with its last VM. NAT uplinks are shared by the networks that use the same interface and port range.
 * - A VM attaches with its port's fd (passed over the control socket, or the engine's own VM's), what it
 *   asks (VmSpec) and the network it wants. The engine gives it a key (its lease identity), a name and an
 *   external MAC, kept in the attachment store, and a policy made from its rules. Its port forwards
 *   (--expose) are installed as it attaches and removed as it detaches (forwards.ts); one that cannot be
 *   had refuses the attach.
 * - A VM detaches when its port fails (the VM went away: its lease is freed and its per-VM process told),
 *   when its per-VM process asks (stopped with SIGTERM: the lease stays until it expires), or when that
 *   process's connection drops without asking (the VM tool died: the lease is freed).
 * - stop() closes everything but keeps leases, NAT mappings and attachment records, so a successor engine
 *   (a restarted service, or a per-VM process taking over) lets every VM that comes back resume with the
 *   same key, address, external MAC and flows. A record whose VM is not back within the grace is freed.
 * - Everything runs on the event loop: the addon reports readiness, and a one-second tick ends leases,
 *   idle mappings and records past their grace, and snapshots the mappings.
 */

import { accessSync, chownSync, constants, mkdirSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { Channel } from '../control/channel.js';
import { ControlServer } from '../control/server.js';
import { native, PortMode } from '../native.js';
import { type Attachment, AttType } from '../net/attachment.js';
import { addReservation, FieldError, linkOf, NETWORK_FLAG, type NetworkSpec } from '../net/network-spec.js';
import { Pipeline } from '../pipeline/pipeline.js';
import { DestinationPolicy } from '../policy/destinations.js';
import { buildRules } from '../policy/user-rules.js';
import { PORT_STAT_NAMES, type Port } from '../ports/port.js';
import { dropsByName } from '../stats/drops.js';
import { monotonicMs, monotonicSeconds } from '../util/clock.js';
import type { LogFields, Logger, LogLevel } from '../util/log.js';
import { stateFiles } from '../util/state-files.js';
import { formatIpv4, formatIpv6, formatMac, parseIpv4, parseIpv6, parseMac } from '../wire/addr.js';
import { macKey } from '../wire/ethernet.js';
import { AttachmentStore, type VmRecord } from './attachment-store.js';
import { Captures } from './captures.js';
import { flagged, UsageError } from './errors.js';
import { EngineForwards } from './forwards.js';
import { HostWatch } from './host-watch.js';
import { LiveNetwork } from './live-network.js';
import { openPort } from './ports.js';
import { dropPrivileges, KEPT_NAMES } from './privileges.js';
import { UplinkPool } from './uplink-pool.js';
import type { VmSpec } from './vm-spec.js';

/** How the engine runs. */
export interface EngineOptions {
  stateDir: string;
  controlSocket: string;
  /** The group that may use the control socket; null: root only. */
  controlGid: number | null;
  /** A service stays when its last VM goes; the per-VM form's engine does not. */
  service: boolean;
  /** How long a remembered VM may take to come back to this engine before what it held is freed. */
  graceMs: number;
}

/** A VM's attach request. */
export interface AttachRequest {
  network: NetworkSpec;
  /** The network settings the VM's command line gave, which an existing network must match. */
  given: string[];
  vm: VmSpec;
  /** The key this VM had before the engine it was attached to went away. */
  resume: string | null;
  pid: number;
}

/** Who a VM belongs to: its per-VM process, over its control connection or in this very process. */
export interface VmOwner {
  /** The channel the VM came by; null for the engine's own VM. */
  readonly channel: Channel | null;
  /** The engine detached the VM because it went away. */
  gone(reason: string): void;
  /** One of the VM's own events (lease bound, released), for its per-VM process's log. */
  event(level: LogLevel, event: string, fields: LogFields): void;
}

/** A VM attached to this engine. */
export interface LiveVm {
  readonly att: Attachment;
  readonly net: LiveNetwork;
  readonly vm: VmSpec;
  readonly owner: VmOwner;
  readonly record: VmRecord;
}

/** A remembered VM not (yet) attached again, and when it stops being waited for. */
interface Awaited {
  record: VmRecord;
  deadline: number;
}

/** The engine of one control socket. */
export class Engine {
  readonly p = new Pipeline(native);
  readonly networks = new Map<string, LiveNetwork>();
  /** NAT uplinks by interface and port range. */
  readonly uplinks: UplinkPool;
  readonly vms = new Map<string, LiveVm>();
  readonly captures = new Captures();
  /** When the engine started, in ms since the epoch. */
  readonly started = Date.now();
  private readonly byAtt = new Map<Attachment, LiveVm>();
  private readonly awaited = new Map<string, Awaited>();
  /** Networks being opened for a VM, by `name NAME` or `link HOSTLINK`. */
  private readonly opening = new Map<string, Promise<LiveNetwork>>();
  private readonly forwards = new EngineForwards();
  private readonly store: AttachmentStore;
  private control: ControlServer | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly host: HostWatch;
  private stopping = false;
  private readonly onReady = (id: number, status: number): void => this.ready(id, status);
  private readonly redrain = (port: Port): void => this.drainPort(port);

  constructor(
    readonly opts: EngineOptions,
    readonly log: Logger,
    private readonly exit: (code: number) => void,
  ) {
    native.setArena(this.p.arena);
    stateFiles.useLog(log);
    this.host = new HostWatch(() => this.checkHost(), log);
    this.uplinks = new UplinkPool(
      this.p,
      opts.stateDir,
      log,
      (port) => native.portWatch(port.id, this.onReady),
      this.host.soon,
    );
    flagged('--state-dir', () => mkdirSync(opts.stateDir, { recursive: true, mode: 0o700 }));
    // Leases and records are one engine's: two engines writing one directory would undo each other.
    if (flagged('--state-dir', () => native.lockFile(join(opts.stateDir, 'engine.lock'))) < 0)
      throw new UsageError('--state-dir', `${opts.stateDir} is in use by another softnet engine`);
    this.store = new AttachmentStore(join(opts.stateDir, 'attachments.json'));
    const records = this.store.load();
    const deadline = monotonicMs() + opts.graceMs;
    for (const record of records) this.awaited.set(record.key, { record, deadline });
  }

  /** The control socket, once listening (its refusals, its degraded state). */
  get controlServer(): ControlServer | null {
    return this.control;
  }

  /** Starts serving: the control socket (whose lock the caller holds) and the timer. */
  listen(handlers: ConstructorParameters<typeof ControlServer>[2]): void {
    this.control = flagged(
      '--control-socket',
      () => new ControlServer(this.opts.controlSocket, this.opts.controlGid, handlers, this.log),
    );
    this.timer = setInterval(() => this.tick(), 1000);
    this.host.start();
  }

  /** Drops to `user`/`group` once set-up is done, handing the state directory over first. */
  dropTo(user: string, group: string): void {
    flagged('--user', () =>
      dropPrivileges(user, group, (uid, gid) => chownSync(this.opts.stateDir, uid, gid)),
    );
    this.log.info('privileges dropped', { user, group, capabilities: KEPT_NAMES });
    // Host links made from now on open /dev/net/tun as this user: udev makes it 0666, a bare /dev may not.
    try {
      accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
    } catch {
      this.log.warn('/dev/net/tun is closed to this user: networks opened from now on will fail', { user });
    }
    for (const net of this.networks.values()) flagged('--state-dir', () => net.seg.leases.persist());
    flagged('--state-dir', () => this.saveRecords());
  }

  /** Opens a declared network (one that stays without VMs); throws UsageError naming the flag at fault. */
  async declare(spec: NetworkSpec): Promise<LiveNetwork> {
    const existing = this.networks.get(spec.name);
    if (existing) throw new UsageError('NAME', `network ${spec.name} exists already`);
    return this.open(spec, true);
  }

  /** Closes network `name`; refuses while VMs are attached to it. */
  remove(name: string): void {
    const net = this.networks.get(name);
    if (!net) throw new UsageError('NAME', `no network ${name}`);
    if (net.seg.attachments.size > 0)
      throw new UsageError('NAME', `network ${name} has ${net.seg.attachments.size} VMs attached`);
    this.closeNetwork(net);
  }

  private async open(spec: NetworkSpec, declared: boolean): Promise<LiveNetwork> {
    const link = linkOf(spec);
    for (const n of this.networks.values()) {
      if (n.hostLink === link)
        throw new UsageError(
          spec.type === 'bridge' ? '--bridge-interface' : '--host-link',
          `${link} is network ${n.spec.name}'s`,
        );
    }
    const uplink = spec.type === 'shared' ? this.uplinks.acquire(spec) : null;
    try {
      const net = await LiveNetwork.open(
        this.p,
        spec,
        uplink,
        this.opts.stateDir,
        declared,
        this.log,
        {
          hostLinkFailed: () => this.sideFailed(spec.name),
          vmGone: (att, err) => this.vmGone(att, err),
          addressChanged: (att, ip) => this.addressChanged(att, ip),
        },
        (port) => native.portWatch(port.id, this.onReady),
      );
      this.networks.set(spec.name, net);
      this.rebuildLeases(net);
      this.log.info('network up', {
        network: spec.name,
        type: spec.type,
        host_link: spec.type === 'bridge' ? undefined : spec.hostLink,
        bridge_interface: spec.bridgeInterface ?? undefined,
        gateway: spec.type === 'bridge' ? undefined : formatIpv4(net.seg.cfg.gateway),
        subnet: spec.type === 'bridge' ? undefined : spec.cidr,
        uplink: uplink ? (uplink.ifname ?? 'none') : undefined,
        nat_address: uplink && !uplink.nat.held ? formatIpv4(uplink.nat.addr) : undefined,
      });
      return net;
    } catch (e) {
      if (uplink) this.uplinks.release(uplink, this.stopping);
      throw e;
    }
  }

  /** A VM's address changed: its forwards follow it, and its record keeps it (see rebuildLeases). */
  private addressChanged(att: Attachment, ip: number): void {
    this.forwards.moved(att, ip);
    const live = this.byAtt.get(att);
    if (!live) return;
    const text = ip === 0 ? undefined : formatIpv4(ip);
    if (live.record.ip === text) return;
    live.record.ip = text;
    if (!this.stopping) this.saveRecords();
  }

  /**
   * Binds again, for the VMs expected back on a network that just opened, the addresses their records
   * keep and the lease file does not (it was unreadable and moved aside): no other VM is given such an
   * address meanwhile, and the VM keeps it when it comes back. A VM not back within the grace frees it.
   */
  private rebuildLeases(net: LiveNetwork): void {
    if (net.spec.type === 'bridge') return;
    const leases = net.seg.leases;
    const now = monotonicMs();
    for (const { record } of this.awaited.values()) {
      const ip = record.ip === undefined ? null : parseIpv4(record.ip);
      const mac = parseMac(record.mac);
      if (record.network !== net.spec.name || ip === null || mac === null) continue;
      const held = leases.get(record.key);
      if (held?.state === 'bound' && held.expires > now) continue;
      if (!leases.available(record.key, formatMac(mac), ip, now)) continue;
      leases.bind(record.key, formatMac(mac), ip, now + net.seg.cfg.leaseTime * 1000);
      this.log.warn('lease rebuilt from the attachment record', {
        vm: record.name,
        mac: record.mac,
        ip: record.ip,
        network: net.spec.name,
      });
    }
  }

  /**
   * The host link or a bridge's LAN socket failed: the network's side is looked at again, and opened
   * again when it can be (a host link softnet makes itself; a bridged interface once the host has it back).
   */
  private sideFailed(name: string): void {
    this.networks.get(name)?.sideFailed();
    this.host.soon();
  }

  /** Follows the host's interfaces: every uplink, every host link (see uplinks.ts and live-network.ts). */
  private checkHost(): void {
    if (this.stopping) return;
    this.uplinks.checkAll();
    for (const net of this.networks.values()) net.checkHostLink();
  }

  private closeNetwork(net: LiveNetwork): void {
    net.close();
    this.networks.delete(net.spec.name);
    // Stopping saved the mappings already, before the networks closing took the VMs' mappings away.
    if (net.uplink) this.uplinks.release(net.uplink, this.stopping);
    this.log.info('network down', { network: net.spec.name });
  }

  /**
   * The network a VM asks for: by name when it gave one, else by host link (a bridge network: by the
   * interface it bridges to); opened if need be.
   */
  private async networkFor(req: AttachRequest): Promise<LiveNetwork> {
    const want = req.network;
    const byName = req.given.includes('name');
    let net = byName
      ? this.networks.get(want.name)
      : [...this.networks.values()].find((n) => n.hostLink === linkOf(want));
    if (net === undefined) {
      if (!byName && this.networks.has(want.name)) want.name = linkOf(want);
      // VMs arriving together for a network not open yet wait for the one opening it.
      const key = byName ? `name ${want.name}` : `link ${linkOf(want)}`;
      let opening = this.opening.get(key);
      if (!opening) {
        opening = this.open(want, false).finally(() => this.opening.delete(key));
        this.opening.set(key, opening);
      }
      net = await opening;
    }
    for (const field of req.given) {
      if (field === 'name' || field === 'reservations') continue;
      const have = net.spec[field as keyof NetworkSpec];
      if (JSON.stringify(have) !== JSON.stringify(want[field as keyof NetworkSpec]))
        throw new UsageError(
          NETWORK_FLAG[field as keyof NetworkSpec],
          `network ${net.spec.name} runs with ${JSON.stringify(have)}, not ${JSON.stringify(want[field as keyof NetworkSpec])}`,
        );
    }
    for (const [mac, ip] of Object.entries(want.reservations)) this.reserve(net, mac, ip);
    return net;
  }

  /** Reserves `ip` for `mac` on a running network; throws UsageError('--dhcp-host') when it cannot be. */
  reserve(net: LiveNetwork, mac: string, ip: string): void {
    if (net.spec.type === 'bridge')
      throw new UsageError(
        '--dhcp-host',
        `network ${net.spec.name} is a bridge: its LAN's DHCP server gives the addresses`,
      );
    try {
      addReservation(net.spec, mac, ip);
    } catch (e) {
      if (e instanceof FieldError) throw new UsageError('--dhcp-host', e.message);
      throw e;
    }
    net.seg.leases.reserve(formatMac(parseMac(mac)!), parseIpv4(ip)!);
  }

  /** Attaches a VM whose port is `fd` (the engine owns it from now on); throws UsageError naming the flag at fault. */
  async attach(req: AttachRequest, fd: number, owner: VmOwner): Promise<LiveVm> {
    let portOwned = false;
    let net: LiveNetwork | null = null;
    try {
      const { mode, vnet } = portMode(fd);
      net = await this.networkFor(req);
      // A network a VM brought along closes with its last VM: one that closed while this VM waited is opened again.
      while (this.networks.get(net.spec.name) !== net) net = await this.networkFor(req);
      const vm = req.vm;
      const key = this.keyFor(req);
      const awaited = this.awaited.get(key);
      const name = vm.name ?? awaited?.record.name ?? this.nameFor(key, vm);
      if (vm.name !== null && [...this.vms.values()].some((v) => v.record.name === vm.name))
        throw new UsageError('--vm-name', `a VM named ${vm.name} is attached already`);
      const extMac = this.externalMac(vm, awaited?.record);
      const type = attType(vm, net.spec);
      const policy = this.policyFor(vm, net);
      const log = this.log.with((level, event, fields) => owner.event(level, event, fields));
      const port = openPort({ fd, mode, name: vm.port, vnet });
      portOwned = true;
      const att = net.seg.attach(port, {
        key,
        name,
        mac: parseMac(vm.mac)!,
        extMac: parseMac(extMac)!,
        policy,
        type,
        log,
      });
      if (type === AttType.DISCONNECTED && mode === PortMode.TAP) {
        try {
          native.tapCarrier(fd, false);
        } catch {}
      }
      try {
        await this.forwards.install(att, net, vm);
      } catch (e) {
        // Refused: the VM goes (its lease stays for a retry), the others are not touched.
        net.seg.detach(att, false);
        if (!net.declared && net.seg.attachments.size === 0) this.closeNetwork(net);
        throw e;
      }
      const record: VmRecord = {
        key,
        name,
        network: net.spec.name,
        mac: vm.mac,
        extMac,
        expose: vm.expose,
        pid: req.pid,
        since: new Date().toISOString(),
        ip: att.ip === 0 ? undefined : formatIpv4(att.ip),
      };
      const live: LiveVm = { att, net, vm, owner, record };
      this.awaited.delete(key);
      this.vms.set(key, live);
      this.byAtt.set(att, live);
      this.saveRecords();
      const restored = net.uplink?.restore(att, this.p.clock) ?? 0;
      if (restored > 0) log.info('nat mappings restored', { count: restored, mac: vm.mac });
      native.portWatch(port.id, this.onReady);
      log.info('vm attached', {
        vm: name,
        network: net.spec.name,
        port: vm.port,
        mac: vm.mac,
        external_mac: extMac,
        type: vm.type,
        ipv6_prefix: att.p0 !== 0 || att.p1 !== 0 ? `${formatIpv6([att.p0, att.p1, 0, 0])}/64` : undefined,
        ip: att.ip ? formatIpv4(att.ip) : undefined,
      });
      if (type === AttType.DISCONNECTED)
        log.warn('vm is disconnected: every frame from it is dropped and it is sent nothing', { vm: name });
      return live;
    } catch (e) {
      if (!portOwned) native.closeFd(fd);
      if (net && !net.declared && net.seg.attachments.size === 0 && this.networks.get(net.spec.name) === net)
        this.closeNetwork(net);
      throw e;
    }
  }

  /** The key a VM attaches under: the one it resumes, else its name's or MAC's, numbered when a clone holds it. */
  private keyFor(req: AttachRequest): string {
    if (req.resume !== null && !this.vms.has(req.resume)) return req.resume;
    const base = req.vm.name !== null ? `name:${req.vm.name}` : `vm:${req.vm.mac}`;
    if (!this.vms.has(base)) return base;
    for (let n = 2; ; n++) if (!this.vms.has(`${base}#${n}`)) return `${base}#${n}`;
  }

  /** A name for a VM that gave none: its MAC's digits, numbered like its key for clones. */
  private nameFor(key: string, vm: VmSpec): string {
    const n = /#(\d+)$/.exec(key)?.[1];
    return `vm-${vm.mac.replaceAll(':', '')}${n ? `-${n}` : ''}`;
  }

  /**
   * The external MAC of a VM: the one it pinned, else the one it had before, else a fresh random locally
   * administered one; never one another VM of this engine has, or is still expected back with.
   */
  private externalMac(vm: VmSpec, before: VmRecord | undefined): string {
    const used = new Set<number>();
    for (const v of this.vms.values()) used.add(v.att.extMacKey);
    for (const a of this.awaited.values())
      if (a.record !== before) used.add(macKey(parseMac(a.record.extMac)!, 0));
    for (const n of this.networks.values()) used.add(n.seg.gatewayMacKey);
    const free = (mac: string) => !used.has(macKey(parseMac(mac)!, 0));
    if (vm.externalMac !== null) {
      if (!free(vm.externalMac))
        throw new UsageError('--vm-external-mac', `${vm.externalMac} is another VM's external MAC`);
      return vm.externalMac;
    }
    if (before && free(before.extMac)) return before.extMac;
    for (;;) {
      const mac = new Uint8Array(6);
      crypto.getRandomValues(mac);
      mac[0] = (mac[0] & 0xfc) | 0x02;
      const text = formatMac(mac);
      if (free(text)) return text;
    }
  }

  /**
   * The VM's destination policy: its rules, the gateway, and the host's own addresses blocked. Throws
   * UsageError for @host on a bridge network, which has no gateway.
   */
  private policyFor(vm: VmSpec, net: LiveNetwork): DestinationPolicy {
    if (net.spec.type === 'bridge') {
      const flag = vm.allow.includes('@host') ? '--allow' : vm.block.includes('@host') ? '--block' : null;
      if (flag) throw new UsageError(flag, '@host is the gateway, and a bridge network has none');
    }
    const gateway = net.seg.cfg.gateway;
    const gateway6 = net.seg.cfg.v6?.gateway ?? null;
    const rules = buildRules(vm.allow, vm.block, gateway, gateway6);
    const policy = new DestinationPolicy(rules.v4, gateway, vm.reject, rules.v6);
    if (gateway6 !== null) policy.setGateway6(gateway6);
    for (const list of Object.values(networkInterfaces())) {
      for (const a of list ?? []) {
        if (a.family === 'IPv4') {
          const addr = parseIpv4(a.address);
          if (addr !== null && addr !== gateway) policy.addHostAddress(addr);
          continue;
        }
        const words = parseIpv6(a.address);
        if (words === null || a.scopeid !== 0) continue;
        if (gateway6 === null || !words.every((w, i) => (w | 0) === gateway6[i]))
          policy.addHostAddress6(words);
      }
    }
    return policy;
  }

  /**
   * Detaches a VM its per-VM process let go of: `freeLease` when its tool died; otherwise (stopped) its
   * lease stays until it expires and its NAT mappings are parked for its return.
   */
  detach(live: LiveVm, freeLease: boolean, reason: string): void {
    if (!this.byAtt.has(live.att)) return;
    live.att.log.info('vm detached', { vm: live.att.name, mac: live.vm.mac, reason });
    this.forwards.remove(live.att, reason);
    if (!freeLease) live.net.uplink?.park(live.att);
    live.net.seg.detach(live.att, freeLease);
    this.forget(live);
  }

  /** The segment detached a VM that went away; the engine forgets it and tells its owner. */
  private vmGone(att: Attachment, reason: string): void {
    const live = this.byAtt.get(att);
    if (!live) return;
    this.forwards.remove(att, reason);
    this.forget(live);
    live.owner.gone(reason);
  }

  private forget(live: LiveVm): void {
    this.captures.vmGone(live);
    this.byAtt.delete(live.att);
    this.vms.delete(live.att.key);
    if (!this.stopping) this.saveRecords();
    if (!live.net.declared && live.net.seg.attachments.size === 0 && !this.stopping)
      this.closeNetwork(live.net);
  }

  /**
   * A control connection closed: ends the captures it ran, and detaches every VM that came by it (its
   * per-VM process is gone without a word: the tool died).
   */
  channelClosed(ch: Channel): void {
    this.captures.channelClosed(ch);
    if (this.stopping) return;
    for (const live of [...this.vms.values()]) {
      if (live.owner.channel === ch) this.detach(live, true, 'per-vm-process-gone');
    }
  }

  /** Finds an attached VM by name, key, internal or external MAC, or address. */
  find(ref: string): LiveVm | undefined {
    const ip = parseIpv4(ref);
    const mac = parseMac(ref);
    const key = mac ? macKey(mac, 0) : -1;
    for (const v of this.vms.values()) {
      if (v.record.name === ref || v.att.key === ref) return v;
      if (ip !== null && v.att.ip === ip) return v;
      if (key >= 0 && (v.att.macKey === key || v.att.extMacKey === key)) return v;
    }
    return undefined;
  }

  private records(): VmRecord[] {
    const records: VmRecord[] = [...this.vms.values()].map((v) => v.record);
    for (const a of this.awaited.values()) records.push(a.record);
    return records;
  }

  private saveRecords(): void {
    this.store.save(this.records());
  }

  private tick(): void {
    this.p.clock = monotonicSeconds();
    const now = monotonicMs();
    stateFiles.retry();
    for (const net of this.networks.values()) net.seg.tick(now, this.p.clock);
    for (const up of this.uplinks.values()) up.tick(this.p.clock);
    let changed = false;
    for (const [key, a] of this.awaited) {
      if (a.deadline > now) continue;
      const net = this.networks.get(a.record.network);
      if (!net) continue;
      net.uplink?.forget(key);
      const lease = net.seg.leases.release(key);
      this.log.info('vm not back', { vm: a.record.name, mac: a.record.mac, network: a.record.network });
      if (lease?.state === 'bound')
        this.log.info('lease released', { ip: formatIpv4(lease.ip), mac: lease.mac, reason: 'vm-not-back' });
      this.awaited.delete(key);
      changed = true;
    }
    if (changed) this.saveRecords();
    this.host.tick();
  }

  /** Counters as one object: per port and direction, and drops by reason (only those that happened). */
  counters(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    out.drops = dropsByName(this.p.drops);
    const ports: Port[] = [];
    for (const net of this.networks.values()) {
      ports.push(...net.seg.sidePorts, ...[...net.seg.attachments].map((a) => a.port));
    }
    for (const up of this.uplinks.values()) ports.push(...up.ports);
    for (const port of ports) out[`port:${port.name}`] = portStats(port);
    return out;
  }

  /** Logs the counters (SIGUSR1). */
  logCounters(): void {
    this.log.info('counters', { counters: this.counters() });
  }

  /**
   * Closes everything, keeping leases, mappings and attachment records for a successor, and exits; `leaving`
   * (the engine's own VM, stopped) is detached first and not handed to the successor.
   */
  stop(code: number, leaving: LiveVm | null = null): void {
    if (this.stopping) return;
    this.logCounters();
    if (leaving) this.detach(leaving, false, 'per-vm-process-stopped');
    this.shutdown();
    this.log.info('stopped', { code });
    this.exit(code);
  }

  /** Closes everything, keeping leases, mappings and attachment records for a successor. */
  shutdown(): void {
    if (this.stopping) return;
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    this.host.close();
    const others = [...this.vms.values()].filter((v) => v.owner.channel !== null).length;
    if (others > 0)
      this.log.info('handing over', { vms: others, reason: 'their per-VM processes take over' });
    this.saveRecords();
    this.captures.closeAll('engine-stopped');
    this.control?.close();
    this.forwards.removeAll('engine-stopping');
    for (const up of this.uplinks.values()) up.save(this.p.clock);
    for (const net of [...this.networks.values()]) this.closeNetwork(net);
    stateFiles.flush();
  }

  private ready(id: number, status: number): void {
    const port = this.p.port(id);
    if (!port) return;
    if (status < 0) this.p.fail(port, status);
    else this.drainPort(port);
  }

  private drainPort(port: Port): void {
    if (!port.closed && this.p.drain(port)) setImmediate(this.redrain, port);
  }
}

/** A port's counters by name. */
export function portStats(port: Port): Record<string, number> {
  const s: Record<string, number> = {};
  PORT_STAT_NAMES.forEach((name, i) => {
    s[name] = port.stats[i];
  });
  return s;
}

/**
 * The framing of a VM's fd, told apart with fstat, and whether it has virtio headers; throws UsageError
 * for an fd of another kind.
 */
function portMode(fd: number): { mode: number; vnet: boolean } {
  const kind = flagged('--vm-fd', () => native.fdKind(fd));
  if (kind === 'unix-dgram') return { mode: PortMode.DGRAM, vnet: false };
  if (kind === 'tap' || kind === 'tap-vnet') return { mode: PortMode.TAP, vnet: kind === 'tap-vnet' };
  if (kind === 'unix-stream') return { mode: PortMode.STREAM, vnet: false };
  throw new UsageError('--vm-fd', `fd ${fd} is neither a unix socket nor a TAP device`);
}

/**
 * What a VM may reach on a network: its own type, narrowed by the network's. Throws UsageError when a VM
 * asks for a bridge network by name without asking to be bridged, or the other way round.
 */
function attType(vm: VmSpec, spec: NetworkSpec): number {
  if (vm.type === 'disconnected') return AttType.DISCONNECTED;
  if ((vm.type === 'bridge') !== (spec.type === 'bridge'))
    throw new UsageError('--vm-net-type', `network ${spec.name} is ${spec.type}, not for a ${vm.type} VM`);
  if (spec.type === 'bridge') return AttType.BRIDGE;
  if (vm.type === 'host' || spec.type === 'host') return AttType.HOST;
  return AttType.SHARED;
}
