// The NAT uplinks of one engine: opened as the first shared network asks for one, shared by every network
// that NATs through the same interface and port range (one guard per interface and range), closed with the
// last of them. Which interface a network gets: the one it names, else the default route's (see uplinks.ts).

import type { NetworkSpec } from '../net/network-spec.js';
import type { Pipeline } from '../pipeline/pipeline.js';
import type { Port } from '../ports/port.js';
import { defaultRouteInterface } from '../ports/uplink.js';
import type { Logger } from '../util/log.js';
import { LiveUplink } from './uplinks.js';

/** The uplinks of one engine, by the interface asked for and the port range. */
export class UplinkPool {
  private readonly byKey = new Map<string, LiveUplink>();

  constructor(
    private readonly p: Pipeline,
    private readonly stateDir: string,
    private readonly log: Logger,
    /** Starts readiness on a port an uplink opens. */
    private readonly watch: (port: Port) => void,
    /** Told when a socket of an uplink fails: the host is to be looked at. */
    private readonly failed: () => void,
  ) {}

  /** Every open uplink. */
  values(): IterableIterator<LiveUplink> {
    return this.byKey.values();
  }

  /**
   * The uplink a shared network NATs through, opened if no network uses it yet; held until the
   * interface can carry NAT. Throws a UsageError naming --nat-ports when another softnet has the range.
   */
  acquire(spec: NetworkSpec): LiveUplink {
    const key = LiveUplink.key(spec.uplink, spec.natPorts);
    let up = this.byKey.get(key) ?? this.sameInterface(spec);
    if (!up) {
      up = LiveUplink.open(
        this.p,
        spec.uplink,
        spec.natPorts,
        spec.natFlowsPerVm,
        this.stateDir,
        this.log,
        this.watch,
        this.failed,
      );
      this.byKey.set(key, up);
    }
    up.users++;
    return up;
  }

  /** A network is done with `up`; the last one closes it, saving its mappings first unless `saved`. */
  release(up: LiveUplink, saved: boolean): void {
    if (--up.users > 0) return;
    if (!saved) up.save(this.p.clock);
    up.close();
    this.byKey.delete(LiveUplink.key(up.want, up.natPorts));
  }

  /** Reads every uplink's interface again (see LiveUplink.check); a failure is logged, never thrown. */
  checkAll(): void {
    for (const up of this.byKey.values()) {
      try {
        up.check();
      } catch (e) {
        this.log.error('uplink check failed', { error: e instanceof Error ? e.message : String(e) });
      }
    }
  }

  /**
   * An open uplink of `spec`'s port range on the interface it would use (the one named, the default
   * route's when it names none): they share it. A network naming the interface pins one that followed
   * the default route there: what an operator named stays in use.
   */
  private sameInterface(spec: NetworkSpec): LiveUplink | undefined {
    const iface = spec.uplink ?? defaultRouteInterface();
    if (iface === null) return undefined;
    for (const up of this.byKey.values()) {
      if (up.natPorts !== spec.natPorts || up.ifname !== iface) continue;
      if (spec.uplink !== null && up.want === null) {
        this.byKey.delete(LiveUplink.key(up.want, up.natPorts));
        up.pin(spec.uplink);
        this.byKey.set(LiveUplink.key(up.want, up.natPorts), up);
      }
      return up;
    }
    return undefined;
  }
}
