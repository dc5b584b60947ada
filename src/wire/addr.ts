// Addresses in configuration and logs: parsing and printing MACs, IPv4 addresses and CIDR prefixes.
// Slow path only; the hot path keeps addresses as numbers.

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
