// Addresses in configuration and logs: parsing and printing MACs, IPv4 and IPv6 addresses and CIDR
// prefixes. Slow path only; the hot path keeps addresses as numbers (an IPv6 address as four 32-bit words).

import { Address4 } from 'ip-address';

/** An IPv4 prefix as numbers: `addr` is the network address, `mask` the netmask. */
export interface Cidr {
  addr: number;
  prefix: number;
  mask: number;
}

/** The netmask of a prefix length. */
export function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** Parses a dotted-quad IPv4 address; null when it is not one. */
export function parseIpv4(s: string): number | null {
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(s) || !Address4.isValid(s)) return null;
  return Number(new Address4(s).bigInt());
}

/** Parses `a.b.c.d/n` (a bare address means /32); null when malformed. The host bits are kept in `addr`. */
export function parseCidr(s: string): Cidr | null {
  const [ip, len, extra] = s.split('/');
  if (extra !== undefined) return null;
  const addr = parseIpv4(ip);
  if (addr === null) return null;
  if (len !== undefined && !/^\d{1,2}$/.test(len)) return null;
  const prefix = len === undefined ? 32 : Number(len);
  if (prefix > 32) return null;
  return { addr, prefix, mask: maskOf(prefix) };
}

/** Dotted-quad text of a 32-bit address. */
export function formatIpv4(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/** An IPv6 prefix: `addr` is four big-endian 32-bit words (addr[0] = the first 4 bytes), host bits kept. */
export interface Cidr6 {
  addr: Uint32Array;
  prefix: number;
}

/** The mask of word `i` (0..3) of an IPv6 prefix of length `prefix`, unsigned like maskOf(). */
export function maskWord6(prefix: number, i: number): number {
  const bits = prefix - 32 * i;
  return bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
}

/** Parses the 16-bit groups of one side of `::`, a dotted quad allowed last when `v4Last`; null when malformed. */
function groups6(s: string, v4Last: boolean): number[] | null {
  if (s === '') return [];
  const parts = s.split(':');
  const out: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    if (/^[0-9a-f]{1,4}$/i.test(p)) out.push(Number.parseInt(p, 16));
    else if (v4Last && i === parts.length - 1 && p.includes('.')) {
      const v4 = parseIpv4(p);
      if (v4 === null) return null;
      out.push(v4 >>> 16, v4 & 0xffff);
    } else return null;
  }
  return out;
}

/**
 * Parses an IPv6 address in any RFC 4291 text form (full, `::`-compressed, a dotted quad in the last 32
 * bits); null for anything else, zone ids (`%eth0`) and prefixes included.
 */
export function parseIpv6(s: string): Uint32Array | null {
  if (s.length > 45 || !/^[0-9a-f:.]+$/i.test(s)) return null;
  const halves = s.split('::');
  if (halves.length > 2) return null;
  let g: number[];
  if (halves.length === 1) {
    const all = groups6(s, true);
    if (all === null || all.length !== 8) return null;
    g = all;
  } else {
    const head = groups6(halves[0], false);
    const tail = groups6(halves[1], true);
    // `::` stands for at least one zero group.
    if (head === null || tail === null || head.length + tail.length > 7) return null;
    g = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  const w = new Uint32Array(4);
  for (let i = 0; i < 4; i++) w[i] = (g[2 * i] << 16) | g[2 * i + 1];
  return w;
}

/**
 * RFC 5952 text of the IPv6 address in words w[at..at+3]: lower case, no leading zeros, the longest run of
 * two or more zero groups as `::` (the leftmost on a tie), and an IPv4-mapped address (::ffff:0:0/96) with
 * its IPv4 address dotted, as RFC 5952 section 5 recommends.
 */
export function formatIpv6(w: ArrayLike<number>, at = 0): string {
  const w0 = w[at] >>> 0;
  const w1 = w[at + 1] >>> 0;
  const w2 = w[at + 2] >>> 0;
  const w3 = w[at + 3] >>> 0;
  if (w0 === 0 && w1 === 0 && w2 === 0xffff) return `::ffff:${formatIpv4(w3)}`;
  const g = [w0 >>> 16, w0 & 0xffff, w1 >>> 16, w1 & 0xffff, w2 >>> 16, w2 & 0xffff, w3 >>> 16, w3 & 0xffff];
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** Parses `addr/n` for IPv6 (a bare address means /128); null when malformed. The host bits are kept. */
export function parseCidr6(s: string): Cidr6 | null {
  const [ip, len, extra] = s.split('/');
  if (extra !== undefined) return null;
  const addr = parseIpv6(ip);
  if (addr === null) return null;
  if (len !== undefined && !/^\d{1,3}$/.test(len)) return null;
  const prefix = len === undefined ? 128 : Number(len);
  if (prefix > 128) return null;
  return { addr, prefix };
}

/** Parses a MAC written as six hex pairs separated by ':' or '-'; null when malformed. */
export function parseMac(s: string): Uint8Array | null {
  const m =
    /^([0-9a-f]{1,2})[:-]([0-9a-f]{1,2})[:-]([0-9a-f]{1,2})[:-]([0-9a-f]{1,2})[:-]([0-9a-f]{1,2})[:-]([0-9a-f]{1,2})$/i.exec(
      s,
    );
  return m ? Uint8Array.from(m.slice(1), (h) => Number.parseInt(h, 16)) : null;
}

/** Lower-case colon-separated text of the MAC at mac[at]. */
export function formatMac(mac: Uint8Array, at = 0): string {
  const parts: string[] = [];
  for (let i = 0; i < 6; i++) parts.push(mac[at + i].toString(16).padStart(2, '0'));
  return parts.join(':');
}

/** Whether a MAC can be a NIC's own: not a group (multicast/broadcast) address, not all zeros. */
export function isUnicastMac(mac: Uint8Array): boolean {
  return (mac[0] & 1) === 0 && mac.some((b) => b !== 0);
}
