/*
 * Where a translated packet goes next on the uplink, so it can leave through a packet socket as a whole
 * Ethernet frame: a 64 KiB TCP aggregate then takes one send, and the device or the kernel cuts it, where
 * the raw IP socket (IPPROTO_RAW) takes only packets within the MTU.
 *
 * Theory of operation
 * - A copy of the host's IPv4 routes (/proc/net/route) and of the uplink's neighbour table (/proc/net/arp),
 *   read again once a second: the host stays in charge of routing and of ARP, softnet only reads them.
 * - For a destination, the longest matching route says the next hop: its gateway, or the destination
 *   itself on a connected subnet. Only a route through the uplink counts; a destination the host routes
 *   elsewhere, or whose next hop has no complete neighbour entry yet, gets no header, and the packet takes
 *   the raw socket, where the host's stack routes it and resolves the neighbour (read back a second later).
 * - Lookups allocate nothing: routes in typed arrays longest prefix first, neighbours in a Map from the
 *   address as a signed 32-bit integer to their row in a MAC table.
 */

import { readFileSync } from 'node:fs';
import { writeMac } from '../wire/ethernet.js';

/** At most this many routes and neighbours are kept; a host with more leaves the rest to the raw socket. */
const MAX_ROUTES = 256;
const MAX_NEIGHBOURS = 4096;
/** /proc/net/arp's flag of a complete entry. */
const ATF_COM = 0x2;

/** A 32-bit value in /proc/net/route's byte order (the host's, little-endian here) to host order. */
function routeWord(hex: string): number {
  const v = Number.parseInt(hex, 16);
  return (((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24)) >>> 0;
}

/** The uplink's next hops. */
export class NextHop {
  private readonly dest = new Int32Array(MAX_ROUTES);
  private readonly mask = new Int32Array(MAX_ROUTES);
  private readonly gateway = new Int32Array(MAX_ROUTES);
  /** Whether route i goes out of the uplink. */
  private readonly ours = new Uint8Array(MAX_ROUTES);
  private routes = 0;
  private readonly macs = new Uint8Array(MAX_NEIGHBOURS * 6);
  private readonly rows = new Map<number, number>();

  constructor(
    readonly ifname: string,
    /** The uplink's MAC: every frame's source. */
    readonly ifMac: Uint8Array,
    private readonly routeFile = '/proc/net/route',
    private readonly arpFile = '/proc/net/arp',
  ) {
    this.refresh();
  }

  /** Reads the routes and the uplink's neighbours again; a file that cannot be read leaves no next hop. */
  refresh(): void {
    this.readRoutes();
    this.readNeighbours();
  }

  private readRoutes(): void {
    let text = '';
    try {
      text = readFileSync(this.routeFile, 'utf8');
    } catch {}
    const found: Array<[number, number, number, boolean, number]> = [];
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // Iface Destination Gateway Flags RefCnt Use Metric Mask ...; flag 0x1 is RTF_UP.
      if (f.length < 8 || (Number.parseInt(f[3], 16) & 1) === 0) continue;
      const mask = routeWord(f[7]);
      found.push([routeWord(f[1]) | 0, mask | 0, routeWord(f[2]) | 0, f[0] === this.ifname, Number(f[6])]);
    }
    // Longest prefix first; among equal prefixes the lowest metric, as the kernel picks.
    found.sort((a, b) => (b[1] >>> 0) - (a[1] >>> 0) || a[4] - b[4]);
    this.routes = Math.min(found.length, MAX_ROUTES);
    for (let i = 0; i < this.routes; i++) {
      const [d, m, g, ours] = found[i];
      this.dest[i] = d;
      this.mask[i] = m;
      this.gateway[i] = g;
      this.ours[i] = ours ? 1 : 0;
    }
  }

  private readNeighbours(): void {
    let text = '';
    try {
      text = readFileSync(this.arpFile, 'utf8');
    } catch {}
    this.rows.clear();
    let n = 0;
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // IP address, HW type, Flags, HW address, Mask, Device
      if (f.length < 6 || f[5] !== this.ifname || (Number.parseInt(f[2], 16) & ATF_COM) === 0) continue;
      const ip = f[0].split('.').map(Number);
      const mac = f[3].split(':').map((h) => Number.parseInt(h, 16));
      if (ip.length !== 4 || mac.length !== 6 || n === MAX_NEIGHBOURS) continue;
      this.macs.set(mac, n * 6);
      this.rows.set((ip[0] << 24) | (ip[1] << 16) | (ip[2] << 8) | ip[3] | 0, n);
      n++;
    }
  }

  /**
   * Writes at u8[off] the Ethernet header for a packet to `dst` (signed 32-bit): its next hop's MAC, the
   * uplink's, IPv4. Returns false, writing nothing, when there is no next hop through the uplink to use.
   */
  writeHeader(u8: Uint8Array, off: number, dst: number): boolean {
    for (let i = 0; i < this.routes; i++) {
      if ((dst & this.mask[i]) !== this.dest[i]) continue;
      if (this.ours[i] === 0) return false;
      const row = this.rows.get(this.gateway[i] === 0 ? dst : this.gateway[i]);
      if (row === undefined) return false;
      writeMac(u8, off, this.macs, row * 6);
      writeMac(u8, off + 6, this.ifMac);
      u8[off + 12] = 0x08;
      u8[off + 13] = 0x00;
      return true;
    }
    return false;
  }
}
