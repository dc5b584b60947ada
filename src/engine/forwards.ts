/*
 * The port forwards of an engine's VMs through their life: checked and installed when a VM attaches,
 * following its address, removed when it detaches or the engine stops.
 *
 * Theory of operation
 * - A VM's `--expose` list is checked when it attaches, before anything opens: EXT must lie outside its
 *   uplink's NAT range, and no other forward of this engine may hold it (same protocol, and the same
 *   BIND, or either without one). A refusal is a UsageError on --expose naming the port and the VM that
 *   holds it; the VMs already there are not touched. The VM's entry is made at once, before the first
 *   wait, so two VMs attaching together cannot both pass.
 * - Each forward then gets its local proxy (a listener on BIND:EXT, see forward-proxy.ts; opening it is
 *   also the check that no host service holds the port) and, when the world may reach it, its packet path
 *   on the uplink (a static NAT mapping with its guard and filter, see LiveUplink.addForwards). The world
 *   may reach it when the VM is shared on a network with an uplink and BIND is none or the uplink's
 *   address. All or nothing: a failure undoes what was done.
 * - Neither path stores the VM's address; both read it when a packet or a connection comes, so a forward
 *   follows the lease by itself. Address changes are logged here (forward moved, forward idle) and end the
 *   proxy's UDP sessions to the old address.
 * - Removing (the VM detached or went away, the engine stops) closes the proxies, then the packet path.
 *   A VM that comes back, to this engine or a successor, brings its --expose list and gets them again.
 */

import { NatProto } from '../nat/flows.js';
import type { PortForward } from '../nat/forwards.js';
import { type Attachment, AttType } from '../net/attachment.js';
import type { LogFields } from '../util/log.js';
import { formatIpv4, formatIpv6 } from '../wire/addr.js';
import { UsageError } from './errors.js';
import { type ForwardProxy, openForwardProxy } from './forward-proxy.js';
import type { LiveNetwork } from './live-network.js';
import { type Forward, formatForward, parseForward, type VmSpec } from './vm-spec.js';

/** One forward of a VM and what serves it. */
interface Installed {
  fwd: Forward;
  proxy: ForwardProxy | null;
  /** The listener on the host's IPv6 addresses, for a forward without a bind address. */
  proxy6: ForwardProxy | null;
  world: PortForward | null;
}

/** A VM's forwards. */
interface VmForwards {
  att: Attachment;
  net: LiveNetwork;
  list: Installed[];
  /** Whether install() is done: until then the list is still filling. */
  ready: boolean;
  /** The address the forwards lead to, as last logged, and the last one that was not none. */
  ip: number;
  last: number;
}

/** The forwards of every VM of one engine. */
export class EngineForwards {
  private readonly byAtt = new Map<Attachment, VmForwards>();

  /**
   * Installs the forwards `vm` asks for, for `att` just attached to `net`; all or none. Throws UsageError
   * naming --expose when a port cannot be had.
   */
  async install(att: Attachment, net: LiveNetwork, vm: VmSpec): Promise<void> {
    if (vm.expose.length === 0) return;
    const wanted = vm.expose.map(parseForward);
    for (const f of wanted) this.check(f, att, net);
    const entry: VmForwards = { att, net, list: [], ready: false, ip: 0, last: 0 };
    this.byAtt.set(att, entry);
    try {
      for (const fwd of wanted) {
        const one: Installed = { fwd, proxy: null, proxy6: null, world: null };
        entry.list.push(one);
        one.proxy = await this.proxy(fwd, att, formatIpv4(fwd.bind));
        if (fwd.bind === 0) one.proxy6 = await this.proxy6(fwd, att);
      }
      const uplink = net.uplink;
      const world = entry.list.filter((i) => this.reachesWorld(i.fwd, att, net));
      if (uplink && world.length > 0) {
        let added: PortForward[];
        try {
          added = uplink.addForwards(
            att,
            world.map((i) => [natProto(i.fwd), i.fwd.ext, i.fwd.int, i.fwd.bind === 0]),
          );
        } catch (e) {
          throw new UsageError('--expose', (e as Error).message);
        }
        world.forEach((i, n) => {
          i.world = added[n];
        });
      }
    } catch (e) {
      this.undo(entry);
      this.byAtt.delete(att);
      throw e;
    }
    entry.ready = true;
    entry.ip = att.ip;
    entry.last = att.ip;
    for (const i of entry.list) this.logOne('forward installed', entry, i);
  }

  /** The VM's address changed (0: it has none now); its forwards lead to the new one. */
  moved(att: Attachment, ip: number): void {
    const entry = this.byAtt.get(att);
    // A VM being detached loses its address on the way out: `forward removed` says it all.
    if (!entry?.ready || !entry.net.seg.attachments.has(att)) return;
    // From the address before, or the one before a spell without any.
    const from = entry.ip || entry.last;
    entry.ip = ip;
    if (ip !== 0) entry.last = ip;
    for (const i of entry.list) {
      i.proxy?.moved();
      i.proxy6?.moved();
      this.logOne(ip === 0 ? 'forward idle' : 'forward moved', entry, i, { from: addr(from) });
    }
  }

  /** Removes a VM's forwards (it detached, or went away). */
  remove(att: Attachment, reason: string): void {
    const entry = this.byAtt.get(att);
    if (!entry) return;
    this.byAtt.delete(att);
    this.undo(entry);
    for (const i of entry.list) this.logOne('forward removed', entry, i, { reason });
  }

  /** Removes every forward (the engine stops). */
  removeAll(reason: string): void {
    for (const att of [...this.byAtt.keys()]) this.remove(att, reason);
  }

  /** Throws UsageError when `f` cannot be had by `att`: in the NAT range, or held by another forward. */
  private check(f: Forward, att: Attachment, net: LiveNetwork): void {
    const text = formatForward(f);
    const nat = net.uplink?.nat;
    if (nat && f.ext >= nat.forwards.lo && f.ext <= nat.forwards.hi)
      throw new UsageError(
        '--expose',
        `${text}: port ${f.ext} is in the NAT port range ${nat.forwards.lo}-${nat.forwards.hi} of ${net.uplink?.ifname ?? 'the uplink'}`,
      );
    for (const other of this.byAtt.values()) {
      for (const o of other.list) {
        const overlap = o.fwd.bind === 0 || f.bind === 0 || o.fwd.bind === f.bind;
        if (o.fwd.proto === f.proto && o.fwd.ext === f.ext && overlap)
          throw new UsageError(
            '--expose',
            `${text}: host port ${f.ext}/${f.proto} is forwarded to VM ${other.att.name} already`,
          );
      }
    }
    // The same port on another uplink address is another forward; this one's uplink must have it free.
    if (nat && this.reachesWorld(f, att, net)) {
      const why = nat.forwards.refusal(natProto(f), f.ext);
      if (why !== null) throw new UsageError('--expose', `${text}: ${why}`);
    }
  }

  private reachesWorld(f: Forward, att: Attachment, net: LiveNetwork): boolean {
    const uplink = net.uplink;
    if (!uplink || att.type !== AttType.SHARED) return false;
    return f.bind === 0 || f.bind === uplink.nat.addr;
  }

  /** Opens the local proxy of `fwd` on `host`; throws UsageError when the host cannot give the port. */
  private async proxy(fwd: Forward, att: Attachment, host: string): Promise<ForwardProxy> {
    try {
      return await openForwardProxy(fwd.proto, host, fwd.ext, {
        address: () => vmAddress(att),
        port: fwd.int,
      });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const where = `${fwd.bind === 0 ? '' : `${formatIpv4(fwd.bind)}:`}${fwd.ext}/${fwd.proto}`;
      const why =
        code === 'EADDRINUSE'
          ? `host port ${where} is in use by another program`
          : code === 'EADDRNOTAVAIL'
            ? `${formatIpv4(fwd.bind)} is not an address of this host`
            : `host port ${where} cannot be had: ${(e as Error).message}`;
      throw new UsageError('--expose', `${formatForward(fwd)}: ${why}`);
    }
  }

  /**
   * Opens the proxy of `fwd` on the host's IPv6 addresses: a port a host service holds there refuses the
   * forward as on IPv4; a host without IPv6 gets none.
   */
  private async proxy6(fwd: Forward, att: Attachment): Promise<ForwardProxy | null> {
    try {
      return await openForwardProxy(fwd.proto, '::', fwd.ext, {
        address: () => vmAddress(att),
        port: fwd.int,
      });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE')
        throw new UsageError(
          '--expose',
          `${formatForward(fwd)}: host port [::]:${fwd.ext}/${fwd.proto} is in use by another program`,
        );
      return null;
    }
  }

  private undo(entry: VmForwards): void {
    for (const i of entry.list) {
      i.proxy?.close();
      i.proxy6?.close();
    }
    const world = entry.list.flatMap((i) => (i.world ? [i.world] : []));
    if (world.length > 0) entry.net.uplink?.removeForwards(world);
  }

  private logOne(event: string, entry: VmForwards, i: Installed, more: LogFields = {}): void {
    entry.att.log.info(event, {
      vm: entry.att.name,
      forward: formatForward(i.fwd),
      ext: i.fwd.ext,
      int: i.fwd.int,
      proto: i.fwd.proto,
      ip: addr(entry.ip),
      world: i.world !== null,
      ...more,
    });
  }
}

/**
 * Where the host's proxies reach a VM: its IPv4 address, or without one (an IPv6-only network) the IPv6
 * address it was last seen sending from; null while it has neither.
 */
function vmAddress(att: Attachment): string | null {
  if (att.ip !== 0) return formatIpv4(att.ip);
  if ((att.p0 === 0 && att.p1 === 0) || (att.last2 === 0 && att.last3 === 0)) return null;
  return formatIpv6([att.p0, att.p1, att.last2, att.last3]);
}

/** An address for the log: 'none' for 0. */
function addr(ip: number): string {
  return ip === 0 ? 'none' : formatIpv4(ip);
}

function natProto(f: Forward): number {
  return f.proto === 'udp' ? NatProto.UDP : NatProto.TCP;
}
