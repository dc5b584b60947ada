/*
 * One engine: a network with its host link, the VM ports attached to it, and the process around them
 * (readiness callbacks, the lease timer, signals, counters).
 *
 * Theory of operation
 * - start() does every privileged step (host link, VM port), then drops to --user/--group if asked. A
 *   failure names the flag whose value caused it, so the CLI can print one line and exit 2.
 * - The addon calls back when a port is readable; the engine drains it through the pipeline. A port that
 *   still holds frames after its turn is drained again on the next turn of the event loop.
 * - SIGINT and SIGTERM close every port, which removes the host link and the VM's TAP, and keep the
 *   leases on disk: stopping softnet is not the VM going away. SIGUSR1 logs the counters.
 * - When the per-VM form's VM goes away (its port fails or closes), its lease is freed and softnet exits.
 */

import { chownSync, mkdirSync, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import type { VmOptions } from '../cli/args.js';
import { UsageError } from '../cli/args.js';
import { FlowStore } from '../nat/flow-store.js';
import { FlowTable } from '../nat/flows.js';
import { FragmentTable } from '../nat/fragments.js';
import { NatGuard } from '../nat/guard.js';
import type { NatUplink } from '../nat/uplink.js';
import { native } from '../native.js';
import { epochSeconds, Pipeline, QUEUE_LEN } from '../pipeline/pipeline.js';
import { DestinationPolicy } from '../policy/destinations.js';
import { RuleTable, Verdict } from '../policy/rules.js';
import { openHostLink } from '../ports/host-link.js';
import { PORT_STAT_NAMES, Port, type PortSpec } from '../ports/port.js';
import { acceptStream, listenStream } from '../ports/stream.js';
import { netnsTap, vmTap } from '../ports/tap.js';
import { defaultRouteInterface, openUplink } from '../ports/uplink.js';
import { inheritedFd } from '../ports/vm-fd.js';
import { DnsForwarder, resolversFrom } from '../services/dns.js';
import { DROP_NAMES } from '../stats/drops.js';
import type { LogFields, Logger } from '../util/log.js';
import { formatIpv4, formatMac, parseIpv4 } from '../wire/addr.js';
import type { Attachment } from './attachment.js';
import { makeNetwork } from './network.js';
import { dropPrivileges } from './privileges.js';
import { NetworkSegment } from './segment.js';

/** Seconds between snapshots of the NAT mappings while they change. */
const FLOW_SNAPSHOT_S = 5;

/** Runs the per-VM form: one VM on its own network. */
export class Engine {
  private readonly p = new Pipeline(native);
  private segment: NetworkSegment | null = null;
  private listener: { port: Port; fd: number; path: string } | null = null;
  private hostPort: Port | null = null;
  private raw: Port | null = null;
  private capture: Port | null = null;
  private guard: NatGuard | null = null;
  private dns: DnsForwarder | null = null;
  private uplinkName = '';
  private flowStore: FlowStore | null = null;
  private flowsSaved = { changes: 0, at: 0 };
  /** What set-up has to say, logged once it succeeded: a failed start prints its one error line only. */
  private readonly deferred: Array<['info' | 'warn', string, LogFields]> = [];
  private timer: NodeJS.Timeout | null = null;
  private stopping = false;
  private started = false;
  /** For --vm-netns: the namespace's inode, checked every tick (the TAP's fd keeps the namespace alive). */
  private netnsIno: number | null = null;
  private readonly onReady = (id: number, status: number): void => this.ready(id, status);
  private readonly redrain = (port: Port): void => this.drainPort(port);

  constructor(
    private readonly opts: VmOptions,
    private readonly log: Logger,
    private readonly exit: (code: number) => void = (code) => process.exit(code),
  ) {}

  /** Opens the host link, the uplink and the VM port and starts serving; rejects with UsageError for a bad flag value. */
  async start(): Promise<void> {
    const o = this.opts;
    native.setArena(this.p.arena);
    const cfg = makeNetwork(o.subnet, {
      name: o.hostLink,
      type: o.netType,
      leaseTime: o.leaseTime,
      mtu: o.mtu,
      domain: o.domain,
      routes: o.routes.map((r) => ({ dest: r.addr, prefix: r.prefix, via: 0 })),
    });
    for (const r of cfg.routes) r.via = cfg.gateway;
    const policy = destinationPolicy(o, cfg.gateway);
    const link = flagged('--host-link', () => openHostLink(o.hostLink, cfg.gateway, cfg.prefix, o.mtu));
    this.hostPort = this.open(link.spec);
    const leaseFile = join(o.stateDir, `${o.hostLink}.leases.json`);
    try {
      const nat = cfg.type === 'shared' ? this.openNat() : null;
      flagged('--state-dir', () => mkdirSync(o.stateDir, { recursive: true, mode: 0o700 }));
      const hostPort = this.hostPort;
      this.segment = flagged(
        '--state-dir',
        () =>
          new NetworkSegment(this.p, cfg, hostPort, link.mac, leaseFile, policy, nat, this.log, {
            hostLinkFailed: (err: string) => this.fail(`host link ${o.hostLink} failed: ${err}`),
            vmGone: () => this.stop(0),
          }),
      );
      native.portWatch(hostPort.id, this.onReady);
      if (nat && this.capture) {
        this.segment.attachUplink(this.capture, nat);
        native.portWatch(this.capture.id, this.onReady);
      }
      try {
        this.dns = await DnsForwarder.start(formatIpv4(cfg.gateway), resolversFrom(), this.log);
      } catch (e) {
        this.say('warn', 'dns at the gateway unavailable', {
          error: e instanceof Error ? e.message : String(e),
        });
      }
      this.openVm();
      if (o.user !== null && o.group !== null) {
        const { user, group } = o;
        flagged('--user', () => dropPrivileges(user, group, (uid, gid) => chownSync(o.stateDir, uid, gid)));
      }
      const leases = this.segment.leases;
      flagged('--state-dir', () => leases.persist());
    } catch (e) {
      this.close();
      throw e;
    }
    this.started = true;
    for (const [level, message, fields] of this.deferred) this.log[level](message, fields);
    for (const att of this.segment.attachments) this.logAttached(att);
    this.log.info('started', {
      host_link: link.spec.name,
      gateway: formatIpv4(cfg.gateway),
      subnet: `${formatIpv4(cfg.subnet)}/${cfg.prefix}`,
      gateway_mac: formatMac(link.mac),
      lease_time: cfg.leaseTime,
      type: cfg.type,
      uplink: this.segment.nat ? `${this.uplinkName} ${formatIpv4(this.segment.nat.addr)}` : undefined,
      nat_ports: this.segment.nat ? `${o.natPorts.lo}-${o.natPorts.hi}` : undefined,
    });
    this.timer = setInterval(() => this.tick(), 1000);
    process.on('SIGINT', () => this.stop(0));
    process.on('SIGTERM', () => this.stop(0));
    process.on('SIGUSR1', () => this.logCounters());
  }

  /** Opens the uplink's sockets and guard; null (and a warning) when there is no uplink to use. */
  private openNat(): NatUplink | null {
    const o = this.opts;
    const name = o.uplink ?? defaultRouteInterface();
    if (name === null) {
      this.say('warn', 'no default route and no --uplink: VMs reach the host only', {});
      return null;
    }
    const { lo, hi } = o.natPorts;
    const up = flagged('--uplink', () => openUplink(name, lo, hi));
    this.uplinkName = name;
    this.raw = this.open(up.raw);
    this.capture = this.open(up.capture);
    this.capture.big = true;
    this.guard = flagged('--nat-ports', () => NatGuard.install(name, up.addr, lo, hi));
    const perVm = o.natFlowsPerVm ?? Math.max(64, Math.floor((hi - lo + 1) / 4));
    this.flowStore = new FlowStore(join(o.stateDir, `${o.hostLink}.flows.json`), up.addr);
    return {
      flows: new FlowTable(lo, hi, perVm),
      fragments: new FragmentTable(),
      addr: up.addr,
      mtu: up.mtu,
      raw: this.raw,
    };
  }

  /** Closes everything (leases stay on disk) and exits with `code`. */
  stop(code: number): void {
    if (this.stopping) return;
    this.stopping = true;
    this.logCounters();
    this.saveFlows();
    this.close();
    this.log.info('stopped', { code });
    this.exit(code);
  }

  /** Counters as one object: per port and direction, and drops by reason (only those that happened). */
  counters(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    const drops: Record<string, number> = {};
    this.p.drops.forEach((n, i) => {
      if (n > 0) drops[DROP_NAMES[i]] = n;
    });
    out.drops = drops;
    const seg = this.segment;
    if (seg) {
      const ports = [
        seg.hostLink,
        ...[this.raw, this.capture].filter((x) => x !== null),
        ...[...seg.attachments].map((a) => a.port),
      ];
      for (const port of ports) {
        const s: Record<string, number> = {};
        PORT_STAT_NAMES.forEach((name, i) => {
          s[name] = port.stats[i];
        });
        out[`port:${port.name}`] = s;
      }
    }
    return out;
  }

  private tick(): void {
    const seg = this.segment;
    if (!seg) return;
    this.p.clock = epochSeconds();
    seg.tick(Date.now(), this.p.clock);
    const flows = seg.nat?.flows;
    if (
      flows &&
      flows.changes !== this.flowsSaved.changes &&
      this.p.clock - this.flowsSaved.at >= FLOW_SNAPSHOT_S
    ) {
      this.saveFlows();
    }
    const vm = this.opts.vm;
    if (vm.kind === 'netns' && this.netnsIno !== null && namespaceGone(vm.path, this.netnsIno)) {
      this.netnsIno = null;
      for (const att of seg.attachments) seg.vmGone(att, 'namespace-deleted');
    }
  }

  /** Writes the NAT mappings for the next start; a failure is logged, the mappings go on in memory. */
  private saveFlows(): void {
    const flows = this.segment?.nat?.flows;
    if (!flows || !this.flowStore) return;
    this.flowsSaved = { changes: flows.changes, at: this.p.clock };
    try {
      this.flowStore.save(flows, (owner) => (owner as Attachment).key);
    } catch (e) {
      this.log.error('flow snapshot failed', { error: e instanceof Error ? e.message : String(e) });
    }
  }

  private logCounters(): void {
    this.log.info('counters', { counters: JSON.stringify(this.counters()) });
  }

  private openVm(): void {
    const o = this.opts;
    const vm = o.vm;
    if (vm.kind === 'socket') {
      const spec = flagged('--vm-socket', () => listenStream(vm.path));
      const port = this.open(spec);
      this.listener = { port, fd: spec.fd, path: vm.path };
      native.portWatch(port.id, () => this.accept());
      this.log.info('waiting for the VM', { socket: vm.path });
      return;
    }
    let spec: PortSpec;
    if (vm.kind === 'fd') spec = flagged('--vm-fd', () => inheritedFd(vm.fd));
    else if (vm.kind === 'tap') spec = flagged('--vm-tap', () => vmTap(vm.name));
    else {
      spec = flagged('--vm-netns', () => netnsTap(vm.path, vm.ifname, o.mac, o.mtu));
      this.netnsIno = statSync(vm.path).ino;
    }
    this.attach(spec);
  }

  private accept(): void {
    const l = this.listener;
    if (!l || this.stopping) return;
    const spec = acceptStream(l.fd, l.path);
    if (!spec) return;
    if (this.segment && this.segment.attachments.size > 0) {
      native.closeFd(spec.fd);
      this.log.warn('refused a second connection', { socket: l.path });
      return;
    }
    this.attach(spec);
  }

  private attach(spec: PortSpec): void {
    const seg = this.segment!;
    const port = this.open(spec);
    const att = seg.attach(port, this.opts.mac, `vm:${formatMac(this.opts.mac)}`);
    if (seg.nat && this.flowStore) {
      const n = this.flowStore.restore(seg.nat.flows, att, att.key, this.p.clock);
      if (n > 0) this.say('info', 'nat mappings restored', { count: n, mac: formatMac(att.mac) });
    }
    native.portWatch(port.id, this.onReady);
    // Until start() is through, a failure must be the only line printed; it logs the attachments then.
    if (this.started) this.logAttached(att);
  }

  /** Logs now once started, else after start() succeeded. */
  private say(level: 'info' | 'warn', message: string, fields: LogFields): void {
    if (this.started) this.log[level](message, fields);
    else this.deferred.push([level, message, fields]);
  }

  private logAttached(att: Attachment): void {
    this.log.info('vm attached', {
      port: att.port.name,
      mac: formatMac(att.mac),
      ip: att.ip ? formatIpv4(att.ip) : undefined,
    });
  }

  private open(spec: PortSpec): Port {
    try {
      return new Port(native.portOpen(spec.fd, spec.mode), spec.name, QUEUE_LEN, native.portClose);
    } catch (e) {
      native.closeFd(spec.fd);
      throw e;
    }
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

  private fail(message: string): void {
    this.log.error(message);
    this.stop(1);
  }

  private close(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.segment) this.segment.close();
    else this.hostPort?.close();
    for (const port of [this.raw, this.capture]) {
      if (port) {
        this.p.remove(port);
        port.close();
      }
    }
    this.guard?.remove();
    this.guard = null;
    this.dns?.close();
    this.dns = null;
    if (this.listener) {
      this.listener.port.close();
      this.listener = null;
    }
  }
}

/** The destination policy of the command line: its --allow and --block rules, the host's own addresses. */
function destinationPolicy(o: VmOptions, gateway: number): DestinationPolicy {
  const table = new RuleTable();
  const hostRule = { addr: gateway, prefix: 32, mask: 0xffffffff };
  for (const c of o.allow) table.add(c ?? hostRule, Verdict.ALLOW);
  for (const c of o.block) table.add(c ?? hostRule, Verdict.BLOCK);
  const policy = new DestinationPolicy(table, gateway, o.reject);
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      const addr = a.family === 'IPv4' ? parseIpv4(a.address) : null;
      if (addr !== null && addr !== gateway) policy.addHostAddress(addr);
    }
  }
  return policy;
}

/** Whether the namespace file at `path` no longer is the one with inode `ino` (`ip netns del` removes it). */
function namespaceGone(path: string, ino: number): boolean {
  try {
    return statSync(path).ino !== ino;
  } catch {
    return true;
  }
}

/** Runs a set-up step, turning its failure into a UsageError for `flag`. */
function flagged<T>(flag: string, step: () => T): T {
  try {
    return step();
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(flag, e instanceof Error ? e.message : String(e));
  }
}
