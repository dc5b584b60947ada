/*
 * The LAN side of a bridge network: the packet sockets on the bridged interface and the VMs that are on
 * its LAN, each under its external MAC.
 *
 * Theory of operation
 * - `rx` captures what arrives on the interface for anyone but the host (a kernel filter drops frames for
 *   the interface's own MAC, and outgoing ones); `tx` sends the VMs' frames out as they are.
 * - A VM of the network is on the LAN from attach to detach: it is in `vms` (every broadcast and multicast
 *   frame goes to each) and findable by its external MAC. The kernel is told that MAC
 *   (PACKET_MR_UNICAST), so a NIC that filters unicast frames accepts those for the VM without being made
 *   promiscuous; the membership goes with the VM, or with the socket.
 * - Finding a VM by MAC on the hot path allocates nothing: `byMac` is keyed by the MAC's last four bytes
 *   as a signed 32-bit integer (a small integer to V8; the whole 48-bit MAC as a Map key would be a heap
 *   number made on every lookup), and the whole MAC is compared after. The engine keeps external MACs
 *   unique, not their last four bytes: a VM whose key another holds waits in `overflow`, scanned only
 *   when it is not empty, and takes the key when that VM leaves.
 * - The interface going down (ENETDOWN) or a frame too big for it (EMSGSIZE) is logged, at most every
 *   10 s, and the network goes on; any other failure of the sockets is told to the engine, which opens
 *   them again once the interface is there (replace()): deleted and made again, it gets new sockets, and
 *   the VMs stay on the LAN under their external MACs.
 */

import type { Port } from '../ports/port.js';
import type { DhcpSnoop } from '../services/dhcp-snoop.js';
import type { Logger } from '../util/log.js';
import { formatMac } from '../wire/addr.js';
import { ETH_HEADER_LEN, sameMac } from '../wire/ethernet.js';
import type { Attachment } from './attachment.js';

/** What the segment of a bridge network is given: the LAN's sockets as ports, and the interface. */
export interface LanSide {
  rx: Port;
  tx: Port;
  /** The interface's own MAC (the host's): never a VM's. */
  mac: Uint8Array;
  mtu: number;
  /** Adds or drops a unicast MAC on the interface (native.packetMembership; a no-op in tests). */
  membership(mac: Uint8Array, on: boolean): void;
}

const WARN_EVERY_MS = 10_000;

/** The VMs' last four MAC bytes as a signed 32-bit key. */
function lowKey(u8: Uint8Array, at: number): number {
  return (u8[at + 2] << 24) | (u8[at + 3] << 16) | (u8[at + 4] << 8) | u8[at + 5];
}

/** One bridge network's LAN. */
export class BridgeLan {
  /** The LAN's sockets: replaced when the interface is made again (see replace()). */
  rx: Port;
  tx: Port;
  /** The longest frame the interface sends. */
  maxFrame: number;
  /** The VMs on the LAN, for broadcast. */
  readonly vms: Attachment[] = [];
  private readonly byMac = new Map<number, Attachment>();
  private readonly overflow: Attachment[] = [];
  private warned = 0;

  constructor(
    private side: LanSide,
    readonly snoop: DhcpSnoop,
    private readonly log: Logger,
    /** Told when the LAN cannot go on. */
    private readonly fatal: (err: string) => void,
  ) {
    this.rx = side.rx;
    this.tx = side.tx;
    this.maxFrame = ETH_HEADER_LEN + side.mtu;
  }

  /** Puts a VM on the LAN under its external MAC. */
  add(att: Attachment): void {
    this.vms.push(att);
    const key = lowKey(att.extMac, 0);
    if (this.byMac.has(key)) this.overflow.push(att);
    else this.byMac.set(key, att);
    this.join(att);
  }

  /**
   * Takes the sockets of an interface made again (the old ones are the caller's to close); the VMs stay
   * on the LAN, their external MACs told to the new interface.
   */
  replace(side: LanSide): void {
    this.side = side;
    this.rx = side.rx;
    this.tx = side.tx;
    this.maxFrame = ETH_HEADER_LEN + side.mtu;
    for (const att of this.vms) this.join(att);
  }

  /** Tells the interface a VM's external MAC, so a NIC filtering unicast frames takes the VM's. */
  private join(att: Attachment): void {
    try {
      this.side.membership(att.extMac, true);
    } catch (e) {
      this.log.warn('external MAC not added to the interface', {
        mac: formatMac(att.extMac),
        error: e instanceof Error ? e.message : String(e),
      });
    }
  }

  /** Takes a VM off the LAN. */
  remove(att: Attachment): void {
    const i = this.vms.indexOf(att);
    if (i < 0) return;
    this.vms.splice(i, 1);
    const key = lowKey(att.extMac, 0);
    const o = this.overflow.indexOf(att);
    if (o >= 0) this.overflow.splice(o, 1);
    else if (this.byMac.get(key) === att) {
      this.byMac.delete(key);
      const next = this.overflow.findIndex((v) => lowKey(v.extMac, 0) === key);
      if (next >= 0) this.byMac.set(key, this.overflow.splice(next, 1)[0]);
    }
    try {
      this.side.membership(att.extMac, false);
    } catch {
      // The socket may be closing with the network; its memberships go with it.
    }
  }

  /** The VM whose external MAC is at u8[at], if any. */
  vmWithMac(u8: Uint8Array, at: number): Attachment | undefined {
    const att = this.byMac.get(lowKey(u8, at));
    if (att !== undefined && sameMac(u8, at, att.extMac)) return att;
    const overflow = this.overflow;
    for (let i = 0; i < overflow.length; i++) if (sameMac(u8, at, overflow[i].extMac)) return overflow[i];
    return undefined;
  }

  /** A socket of the LAN failed with `errno` (its name). */
  failed(port: Port, errno: string): void {
    if (errno !== 'ENETDOWN' && errno !== 'EMSGSIZE') {
      this.fatal(`${port.name}: ${errno}`);
      return;
    }
    const now = Date.now();
    if (now - this.warned < WARN_EVERY_MS) return;
    this.warned = now;
    this.log.warn(errno === 'ENETDOWN' ? 'bridge interface down' : 'frame too big for the bridge interface', {
      port: port.name,
    });
  }
}
