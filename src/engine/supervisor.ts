/*
 * The per-VM form: one VM's softnet process, as a VM tool starts it (`softnet --vm-fd N ...`).
 *
 * Theory of operation
 * - It opens the VM's port (the inherited fd, a TAP, a TAP it makes in the VM's namespace, or the
 *   connection QEMU makes to its stream socket) and keeps that fd for the VM's whole life.
 * - It hands a copy of the fd to the engine at its control socket. When no engine answers, it takes the
 *   engine lock and runs the engine itself, which then serves the per-VM processes that come after it;
 *   when another process holds the lock (an engine starting up) it tries again shortly.
 * - It lives until its VM goes away (the engine says so, or the VM's namespace is deleted: the lease is
 *   freed) or it is stopped (SIGTERM, SIGINT: the VM is detached and its lease kept until it expires);
 *   then it exits 0, so a VM tool that waits for its child is never left waiting. Running the engine, it
 *   stops it: the other VMs' per-VM processes see their connections close and one of them takes over.
 * - When the engine it handed its VM to goes away (a restart, SIGKILL included, or that engine's own VM
 *   left), it hands the VM again, to another engine or to one it becomes, under the same key: the VM keeps
 *   its address, external MAC and NAT flows. When that engine was a service, it waits for the service to
 *   come back (its supervisor restarts it) for SERVICE_WAIT_MS before it runs an engine itself: the
 *   service's networks, not this command line's, are the ones its VM was given.
 * - A first hand-off that the engine refuses (a flag whose value cannot be used) is a usage error: one
 *   line naming the flag, exit 2, exactly as when this process runs the engine itself. A refusal for
 *   another reason (the engine is out of file descriptors) is one line saying so, and exit 1.
 * - --metrics is served only while this process runs the engine; handed to another engine, it says so.
 */

import { statSync, unlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { VmOptions } from '../cli/args.js';
import type { Channel } from '../control/channel.js';
import { connectEngine } from '../control/client.js';
import { ControlError, EngineGone, type Message } from '../control/protocol.js';
import { takeEngineLock } from '../control/server.js';
import { native, PortMode } from '../native.js';
import type { PortSpec } from '../ports/port.js';
import { acceptStream, listenStream } from '../ports/stream.js';
import { netnsTap, vmTap } from '../ports/tap.js';
import { inheritedFd } from '../ports/vm-fd.js';
import type { LogFields, Logger, LogLevel } from '../util/log.js';
import { controlHandlers, networkInfo, vmInfo } from './control-api.js';
import { Engine, type LiveVm } from './engine.js';
import { flagged, UsageError } from './errors.js';
import { startMetrics } from './metrics.js';

/** How long a per-VM process keeps trying to reach or become an engine before it gives up. */
const HANDOFF_TIMEOUT_MS = 30_000;
/** How long a VM handed to a service waits for it to come back before this process runs an engine itself. */
const SERVICE_WAIT_MS = 60_000;
const RETRY_MS = 100;

/** One VM's per-VM process. */
export class Supervisor {
  private fd = -1;
  private key: string | null = null;
  private channel: Channel | null = null;
  private engine: Engine | null = null;
  private own: LiveVm | null = null;
  private stopping = false;
  /** Whether the engine the VM was last handed to is a service (see SERVICE_WAIT_MS). */
  private toService = false;
  private netnsIno: number | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly opts: VmOptions,
    private readonly log: Logger,
    private readonly exit: (code: number) => void,
  ) {}

  /** Opens the VM's port and gets it served; rejects with UsageError for a flag whose value cannot be used. */
  async start(): Promise<void> {
    const spec = await this.openVm();
    this.fd = spec.fd;
    process.on('SIGINT', () => this.stop());
    process.on('SIGTERM', () => this.stop());
    process.on('SIGUSR1', () => this.logCounters());
    const first = await this.serve();
    this.log.info('started', first);
    if (this.opts.source.kind === 'netns') this.timer = setInterval(() => this.tick(), 1000);
  }

  /** Opens the VM's side; for --vm-socket, waits for QEMU to connect. */
  private async openVm(): Promise<PortSpec> {
    const o = this.opts;
    const src = o.source;
    if (src.kind === 'fd') return flagged('--vm-fd', () => inheritedFd(src.fd));
    if (src.kind === 'tap') return flagged('--vm-tap', () => vmTap(src.name));
    if (src.kind === 'netns') {
      const spec = flagged('--vm-netns', () =>
        netnsTap(src.path, src.ifname, hexMac(o.vm.mac), o.network.mtu),
      );
      this.netnsIno = statSync(src.path).ino;
      return spec;
    }
    const listener = flagged('--vm-socket', () => listenStream(src.path));
    const port = native.portOpen(listener.fd, PortMode.WATCH);
    this.log.info('waiting for the VM', { socket: src.path });
    const conn = await new Promise<PortSpec>((resolve) => {
      native.portWatch(port, () => {
        const c = acceptStream(listener.fd, src.path);
        if (c) resolve(c);
      });
    });
    native.portClose(port);
    try {
      unlinkSync(src.path);
    } catch {}
    return conn;
  }

  /**
   * Gets the VM served: handed to the engine at the control socket, or to an engine this process becomes.
   * Returns what to log as `started`.
   */
  private async serve(): Promise<Record<string, string | number | undefined>> {
    const path = this.opts.controlSocket;
    const start = Date.now();
    const deadline = start + HANDOFF_TIMEOUT_MS + (this.toService ? SERVICE_WAIT_MS : 0);
    for (;;) {
      const ch = connectEngine(path, {
        message: (_c, msg) => this.event(msg),
        closed: () => this.engineGone(),
      });
      if (ch) {
        try {
          const reply = await ch.request('attach', this.request(), this.fd);
          this.channel = ch;
          this.key = String((reply.vm as Message).key);
          this.toService = reply.service === true;
          if (this.opts.metrics !== null)
            this.log.info('metrics not served here', { reason: 'another process runs the engine' });
          return started(reply, String(reply.engine));
        } catch (e) {
          ch.close();
          if (e instanceof ControlError && e.flag !== null) throw new UsageError(e.flag, e.message);
          // Only a connection that broke is worth another try; a refusal says why, in one line.
          if (!(e instanceof EngineGone)) throw e;
        }
      } else if (!this.toService || Date.now() - start > SERVICE_WAIT_MS) {
        const lock = flagged('--control-socket', () => takeEngineLock(path));
        if (lock >= 0) return this.host();
      }
      if (Date.now() > deadline)
        throw new UsageError(
          '--control-socket',
          `no softnet engine answers at ${path}, and none could start`,
        );
      await sleep(RETRY_MS);
    }
  }

  /** What the engine is asked when this VM attaches. */
  private request(): Message {
    const o = this.opts;
    return { network: { ...o.network }, given: o.given, vm: { ...o.vm }, resume: this.key };
  }

  /** Runs the engine in this process (the lock is held) and attaches this VM to it. */
  private async host(): Promise<Record<string, string | number | undefined>> {
    const o = this.opts;
    const held = this.log.held();
    const engine = new Engine(
      {
        stateDir: o.stateDir,
        controlSocket: o.controlSocket,
        controlGid: null,
        service: false,
        graceMs: o.reattachGrace * 1000,
      },
      held.log,
      this.exit,
    );
    this.engine = engine;
    try {
      const live = await engine.attach(
        { network: o.network, given: o.given, vm: o.vm, resume: this.key, pid: process.pid },
        native.dupFd(this.fd),
        {
          channel: null,
          gone: (reason) => this.vmGone(reason),
          event: () => {},
        },
      );
      this.own = live;
      this.key = live.att.key;
      this.toService = false;
      engine.listen(controlHandlers(engine, null));
      if (o.metrics !== null) await startMetrics(engine, o.metrics, held.log);
      if (o.user !== null && o.group !== null) engine.dropTo(o.user, o.group);
      held.release();
      return started({ vm: vmInfo(live), network: networkInfo(live.net) }, 'self');
    } catch (e) {
      engine.shutdown();
      this.engine = null;
      throw e;
    }
  }

  /** An event from the engine: one of this VM's log lines, or the VM went away. */
  private event(msg: Message): void {
    if (msg.event === 'log' && typeof msg.name === 'string' && typeof msg.fields === 'object' && msg.fields) {
      const level = msg.level === 'warn' || msg.level === 'error' ? msg.level : 'info';
      this.log.emit(level as LogLevel, msg.name, msg.fields as LogFields);
    } else if (msg.event === 'detached' && msg.key === this.key) {
      this.channel = null;
      this.vmGone(String(msg.reason));
    }
  }

  /** The engine this VM was handed to went away: hand the VM to the next one. */
  private engineGone(): void {
    if (this.stopping || this.channel === null) return;
    this.channel = null;
    this.log.warn('engine gone, handing the VM over again', {});
    this.serve().then(
      (info) => this.log.info('vm handed over', info),
      (e) => {
        this.log.error('cannot hand the VM over', { error: e instanceof Error ? e.message : String(e) });
        this.finish(1);
      },
    );
  }

  private vmGone(reason: string): void {
    this.log.info('vm gone', { reason });
    this.finish(0);
  }

  /** SIGTERM or SIGINT: detach the VM, keeping its lease, and exit. */
  private stop(): void {
    if (this.stopping) return;
    if (this.engine) {
      this.stopping = true;
      if (this.timer) clearInterval(this.timer);
      this.engine.stop(0, this.own);
      return;
    }
    const ch = this.channel;
    if (ch && this.key) {
      this.stopping = true;
      ch.request('detach', { key: this.key, free: false }).finally(() => this.finish(0));
      setTimeout(() => this.finish(0), 2000).unref();
      return;
    }
    this.finish(0);
  }

  private finish(code: number): void {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    if (this.engine) {
      this.engine.stop(code);
      return;
    }
    this.channel?.close();
    this.exit(code);
  }

  /** Once a second, for a VM in a namespace: one whose namespace was deleted has gone. */
  private tick(): void {
    const src = this.opts.source;
    if (src.kind !== 'netns' || this.netnsIno === null || !namespaceGone(src.path, this.netnsIno)) return;
    this.netnsIno = null;
    if (this.own && this.engine) {
      this.engine.detach(this.own, true, 'namespace-deleted');
      this.vmGone('namespace-deleted');
    } else if (this.channel && this.key) {
      this.stopping = true;
      this.channel
        .request('detach', { key: this.key, free: true })
        .finally(() => this.vmGone('namespace-deleted'));
    }
  }

  private logCounters(): void {
    if (this.engine) {
      this.log.info('counters', { counters: this.engine.counters() });
      return;
    }
    this.channel?.request('counters').then(
      (r) => {
        if (typeof r.counters === 'object' && r.counters !== null)
          this.log.info('counters', { counters: r.counters as LogFields });
      },
      () => {},
    );
  }
}

/** What `started` logs, from an attach reply; `engine` says who runs the engine. */
function started(reply: Message, engine: string): Record<string, string | number | undefined> {
  const vm = reply.vm as Record<string, unknown>;
  const net = reply.network as Record<string, unknown>;
  const s = (v: unknown) => (v === null || v === undefined ? undefined : String(v));
  return {
    vm: s(vm.vm),
    key: s(vm.key),
    network: s(net.name),
    host_link: s(net.hostLink),
    gateway: s(net.gateway),
    subnet: s(net.cidr),
    gateway_mac: s(net.gatewayMac),
    lease_time: net.leaseTime === null ? undefined : Number(net.leaseTime),
    type: s(vm.type),
    mac: s(vm.mac),
    external_mac: s(vm.externalMac),
    ip: s(vm.ip),
    uplink: net.uplink ? `${String(net.uplink)} ${String(net.natAddress)}` : undefined,
    nat_ports: s(net.natPorts),
    engine,
  };
}

/** The 6 bytes of a MAC written as text. */
function hexMac(text: string): Uint8Array {
  return Uint8Array.from(text.split(':'), (h) => Number.parseInt(h, 16));
}

/** Whether the namespace file at `path` no longer is the one with inode `ino` (`ip netns del` removes it). */
function namespaceGone(path: string, ino: number): boolean {
  try {
    return statSync(path).ino !== ino;
  } catch {
    return true;
  }
}
