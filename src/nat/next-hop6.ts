/*
 * Where a NAT66 packet goes next on the uplink, so it can leave through a packet socket as a whole
 * Ethernet frame (a 64 KiB TCP aggregate in one send, cut by the device or the kernel) instead of the raw
 * IPv6 socket, which takes only packets within the MTU. The IPv6 twin of next-hop.ts.
 *
 * Theory of operation
 * - A copy of the host's IPv6 routes (/proc/net/ipv6_route) and of the uplink's IPv6 neighbour table (an
 *   rtnetlink dump: IPv6 has no /proc/net/arp), read again once a second: the host stays in charge of
 *   routing and of neighbour discovery, softnet only reads them.
 * - For a destination, the longest matching route (the lowest metric among equals) says the next hop:
 *   its gateway (the default router, usually by its link-local address), or the destination itself on a
 *   connected prefix. Only a route through the uplink counts; a destination the host routes elsewhere,
 *   by a reject route, or whose next hop has no usable neighbour entry gets no header, and the packet
 *   takes the raw socket, where the host's stack routes it and resolves the neighbour (read back a second
 *   later). Source-specific routes are left to the raw socket's routing: they are not read.
 * - Lookups allocate nothing: routes as words and masks in typed arrays, longest prefix first; neighbours
 *   in an open-addressing table of their four address words, hashed as nat/flows.ts remoteKey6 does.
 */

import { readFileSync } from 'node:fs';
import { native } from '../native.js';
import { writeMac } from '../wire/ethernet.js';
import { remoteKey6 } from './flows.js';

/** At most this many routes and neighbours are kept; a host with more leaves the rest to the raw socket. */
const MAX_ROUTES = 256;
const MAX_NEIGHBOURS = 4096;
/** Slots of the neighbour hash table: a power of two, at most half full. */
const SLOTS = MAX_NEIGHBOURS * 2;
/** RTF_* flags (linux/ipv6_route.h, linux/route.h): a route in use; refusing; the host's own address. */
const RTF_UP = 0x0001;
const RTF_REJECT = 0x0200;
const RTF_ANYCAST = 0x00100000;
const RTF_LOCAL = 0x80000000;
/**
 * NUD states (linux/neighbour.h) whose MAC may be used: reachable, stale, delay, probe, noarp, permanent.
 * A stale entry is one the kernel would still send to while it checks it again.
 */
const NUD_USABLE = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/** An entry of an interface's IPv6 neighbour table: its address, MAC, and NUD_* state bits. */
export interface Neighbour6 {
  addr: Uint8Array;
  mac: Uint8Array;
  state: number;
}

/** Reads an interface's IPv6 neighbour table. */
export type NeighbourSource = (ifname: string) => Neighbour6[];

/** The addon's reading of the neighbour table (native/rtnl.c neighbours6). */
const kernelNeighbours: NeighbourSource = (ifname) => native.neighbours6(ifname);

/** A word of 8 hex digits of a /proc/net/ipv6_route field, as a signed 32-bit integer. */
function hexWord(hex: string, i: number): number {
  return Number.parseInt(hex.slice(i * 8, i * 8 + 8), 16) | 0;
}

/** Word `i` of the mask of a /plen prefix. */
function maskWord(plen: number, i: number): number {
  const bits = Math.min(32, Math.max(0, plen - 32 * i));
  return bits === 0 ? 0 : (-1 << (32 - bits)) | 0;
}

/** The uplink's IPv6 next hops. */
export class NextHop6 {
  private readonly dest = new Int32Array(MAX_ROUTES * 4);
  private readonly mask = new Int32Array(MAX_ROUTES * 4);
  private readonly gateway = new Int32Array(MAX_ROUTES * 4);
  /** Whether route i goes out of the uplink (not a reject route, not to the host itself). */
  private readonly ours = new Uint8Array(MAX_ROUTES);
  private routes = 0;
  private readonly addrs = new Int32Array(MAX_NEIGHBOURS * 4);
  private readonly macs = new Uint8Array(MAX_NEIGHBOURS * 6);
  /** Hash slots: 1 + the neighbour's row, 0 when free. */
  private readonly slots = new Int32Array(SLOTS);

  constructor(
    readonly ifname: string,
    /** The uplink's MAC: every frame's source. */
    readonly ifMac: Uint8Array,
    private readonly neighbours: NeighbourSource = kernelNeighbours,
    private readonly routeFile = '/proc/net/ipv6_route',
  ) {
    this.refresh();
  }

  /** Reads the routes and the uplink's neighbours again; what cannot be read leaves no next hop. */
  refresh(): void {
    this.readRoutes();
    this.readNeighbours();
  }

  private readRoutes(): void {
    let text = '';
    try {
      text = readFileSync(this.routeFile, 'utf8');
    } catch {}
    const found: Array<{ dest: string; plen: number; gateway: string; ours: boolean; metric: number }> = [];
    for (const line of text.split('\n')) {
      // dest, dest prefix, source, source prefix, next hop, metric, refcount, use, flags, device
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '00' || !/^[0-9a-f]{32}$/.test(f[0]) || !/^[0-9a-f]{32}$/.test(f[4]))
        continue;
      const flags = Number.parseInt(f[8], 16);
      if ((flags & RTF_UP) === 0) continue;
      // The host's own addresses are listed on the uplink too (the local table): nothing to send to.
      const ours = f[9] === this.ifname && (flags & (RTF_REJECT | RTF_ANYCAST | RTF_LOCAL)) === 0;
      found.push({
        dest: f[0],
        plen: Number.parseInt(f[1], 16),
        gateway: f[4],
        ours,
        metric: Number.parseInt(f[5], 16),
      });
    }
    found.sort((a, b) => b.plen - a.plen || a.metric - b.metric);
    this.routes = Math.min(found.length, MAX_ROUTES);
    for (let r = 0; r < this.routes; r++) {
      const { dest, plen, gateway, ours } = found[r];
      for (let i = 0; i < 4; i++) {
        this.mask[r * 4 + i] = maskWord(plen, i);
        this.dest[r * 4 + i] = hexWord(dest, i) & this.mask[r * 4 + i];
        this.gateway[r * 4 + i] = hexWord(gateway, i);
      }
      this.ours[r] = ours ? 1 : 0;
    }
  }

  private readNeighbours(): void {
    let list: Neighbour6[] = [];
    try {
      list = this.neighbours(this.ifname);
    } catch {}
    this.slots.fill(0);
    let n = 0;
    for (const e of list) {
      if ((e.state & NUD_USABLE) === 0 || e.addr.length !== 16 || e.mac.length !== 6) continue;
      if (n === MAX_NEIGHBOURS) break;
      const dv = new DataView(e.addr.buffer, e.addr.byteOffset, 16);
      for (let i = 0; i < 4; i++) this.addrs[n * 4 + i] = dv.getInt32(i * 4);
      if (
        this.find(this.addrs[n * 4], this.addrs[n * 4 + 1], this.addrs[n * 4 + 2], this.addrs[n * 4 + 3]) >= 0
      )
        continue;
      this.macs.set(e.mac, n * 6);
      let s = this.slotOf(
        this.addrs[n * 4],
        this.addrs[n * 4 + 1],
        this.addrs[n * 4 + 2],
        this.addrs[n * 4 + 3],
      );
      while (this.slots[s] !== 0) s = (s + 1) & (SLOTS - 1);
      this.slots[s] = n + 1;
      n++;
    }
  }

  private slotOf(w0: number, w1: number, w2: number, w3: number): number {
    return remoteKey6(w0, w1, w2, w3) & (SLOTS - 1);
  }

  /** The row of neighbour w0..w3, or -1. */
  private find(w0: number, w1: number, w2: number, w3: number): number {
    const a = this.addrs;
    for (let s = this.slotOf(w0, w1, w2, w3); this.slots[s] !== 0; s = (s + 1) & (SLOTS - 1)) {
      const row = this.slots[s] - 1;
      const at = row * 4;
      if (a[at] === w0 && a[at + 1] === w1 && a[at + 2] === w2 && a[at + 3] === w3) return row;
    }
    return -1;
  }

  /**
   * Writes at u8[off] the Ethernet header for a packet to d0..d3 (signed words): its next hop's MAC, the
   * uplink's, IPv6. Returns false, writing nothing, when there is no next hop through the uplink to use.
   */
  writeHeader(u8: Uint8Array, off: number, d0: number, d1: number, d2: number, d3: number): boolean {
    const m = this.mask;
    const d = this.dest;
    for (let r = 0; r < this.routes; r++) {
      const at = r * 4;
      if (
        (d0 & m[at]) !== d[at] ||
        (d1 & m[at + 1]) !== d[at + 1] ||
        (d2 & m[at + 2]) !== d[at + 2] ||
        (d3 & m[at + 3]) !== d[at + 3]
      )
        continue;
      if (this.ours[r] === 0) return false;
      const g = this.gateway;
      const direct = g[at] === 0 && g[at + 1] === 0 && g[at + 2] === 0 && g[at + 3] === 0;
      const row = direct ? this.find(d0, d1, d2, d3) : this.find(g[at], g[at + 1], g[at + 2], g[at + 3]);
      if (row < 0) return false;
      writeMac(u8, off, this.macs, row * 6);
      writeMac(u8, off + 6, this.ifMac);
      u8[off + 12] = 0x86;
      u8[off + 13] = 0xdd;
      return true;
    }
    return false;
  }
}
