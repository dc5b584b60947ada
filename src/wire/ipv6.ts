// IPv6 header (RFC 8200): offsets, addresses as four 32-bit words, validation, the extension header walk
// softnet allows, and a header builder.

import { Drop } from '../stats/drops.js';
import { sum } from './checksum.js';

export const IPV6 = { VER_TC_FLOW: 0, PAYLOAD_LEN: 4, NEXT: 6, HOP_LIMIT: 7, SRC: 8, DST: 24 } as const;
export const IPV6_HEADER_LEN = 40;

/** Next-header values softnet looks at. */
export const NextHeader = {
  HOP_BY_HOP: 0,
  TCP: 6,
  UDP: 17,
  ROUTING: 43,
  FRAGMENT: 44,
  ICMPV6: 58,
  NONE: 59,
  DEST_OPTS: 60,
} as const;

/**
 * Extension headers a packet may carry before its upper-layer header. Real traffic carries one or two
 * (hop-by-hop for MLD, a fragment header); a longer chain is an attack on whoever has to walk it.
 */
export const MAX_EXT_HEADERS = 4;

/** The word `i` (0-3) of the address at `field` (IPV6.SRC or IPV6.DST) of the header at `ip`, signed. */
export function word(dv: DataView, ip: number, field: number, i: number): number {
  return dv.getInt32(ip + field + 4 * i);
}

/** Writes the four words of an address at u8[at]. */
export function writeAddr(dv: DataView, at: number, w0: number, w1: number, w2: number, w3: number): void {
  dv.setInt32(at, w0);
  dv.setInt32(at + 4, w1);
  dv.setInt32(at + 8, w2);
  dv.setInt32(at + 12, w3);
}

/** Whether the address at `field` of the header at `ip` is w0..w3. */
export function addrIs(
  dv: DataView,
  ip: number,
  field: number,
  w0: number,
  w1: number,
  w2: number,
  w3: number,
): boolean {
  return (
    dv.getInt32(ip + field) === (w0 | 0) &&
    dv.getInt32(ip + field + 4) === (w1 | 0) &&
    dv.getInt32(ip + field + 8) === (w2 | 0) &&
    dv.getInt32(ip + field + 12) === (w3 | 0)
  );
}

/** Total length of the packet, header included. */
export function totalLen(dv: DataView, ip: number): number {
  return IPV6_HEADER_LEN + dv.getUint16(ip + IPV6.PAYLOAD_LEN);
}

/**
 * Checks the version and the payload length against the `avail` bytes the frame holds (a jumbogram's
 * zero length is refused: softnet's links carry none). After NONE the header and payload are in bounds.
 */
export function validate(dv: DataView, ip: number, avail: number): number {
  if (avail < IPV6_HEADER_LEN) return Drop.IP6_TRUNCATED;
  if (dv.getUint8(ip) >>> 4 !== 6) return Drop.IP6_BAD_VERSION;
  const plen = dv.getUint16(ip + IPV6.PAYLOAD_LEN);
  if (plen === 0 || IPV6_HEADER_LEN + plen > avail) return Drop.IP6_BAD_LENGTH;
  return Drop.NONE;
}

/**
 * What walk() found, kept in one module-level object so that a walk allocates nothing: valid until the
 * next walk.
 */
export const chain = {
  /** The upper-layer protocol (TCP, UDP, ICMPv6, NONE...), or of the fragment's payload. */
  proto: 0,
  /** Offset of the upper-layer header; -1 in a later fragment, which has none. */
  l4: 0,
  /** Offset of the fragment header, -1 when there is none. */
  frag: -1,
  /** Fragment offset in bytes, and whether more fragments follow. */
  fragOffset: 0,
  more: false,
  /** The fragment header's identification. */
  fragId: 0,
  /** Extension headers before the upper layer. */
  count: 0,
};

/** Bytes of the upper-layer header a first fragment must hold (RFC 7112): enough to see its ports or type. */
function minUpper(proto: number): number {
  if (proto === NextHeader.TCP) return 20;
  if (proto === NextHeader.UDP) return 8;
  if (proto === NextHeader.ICMPV6) return 4;
  return 0;
}

/**
 * Walks the extension headers of the packet at `ip` (`total` bytes, validated) into `chain`. Refuses a
 * chain longer than MAX_EXT_HEADERS, a hop-by-hop header anywhere but first, a type 0 routing header
 * (RFC 5095), and a first fragment that does not hold the whole chain with its upper-layer header
 * (RFC 7112). Returns Drop.NONE or the reason.
 */
export function walk(dv: DataView, ip: number, total: number): number {
  const end = ip + total;
  let next = dv.getUint8(ip + IPV6.NEXT);
  let at = ip + IPV6_HEADER_LEN;
  chain.frag = -1;
  chain.fragOffset = 0;
  chain.more = false;
  chain.fragId = 0;
  let count = 0;
  for (;;) {
    if (
      next !== NextHeader.HOP_BY_HOP &&
      next !== NextHeader.ROUTING &&
      next !== NextHeader.FRAGMENT &&
      next !== NextHeader.DEST_OPTS
    )
      break;
    if (count === MAX_EXT_HEADERS) return Drop.IP6_EXT_LIMIT;
    if (next === NextHeader.HOP_BY_HOP && count !== 0) return Drop.IP6_EXT_MALFORMED;
    if (at + 8 > end) return Drop.IP6_EXT_MALFORMED;
    count++;
    const following = dv.getUint8(at);
    if (next === NextHeader.FRAGMENT) {
      if (chain.frag >= 0) return Drop.IP6_EXT_MALFORMED;
      const word16 = dv.getUint16(at + 2);
      chain.frag = at;
      chain.fragOffset = word16 & 0xfff8;
      chain.more = (word16 & 1) !== 0;
      chain.fragId = dv.getInt32(at + 4);
      next = following;
      at += 8;
      // A later fragment's payload is the middle of something: there is nothing more to walk.
      if (chain.fragOffset !== 0) {
        chain.proto = next;
        chain.l4 = -1;
        chain.count = count;
        return Drop.NONE;
      }
      continue;
    }
    const len = (dv.getUint8(at + 1) + 1) << 3;
    if (at + len > end) return Drop.IP6_EXT_MALFORMED;
    if (next === NextHeader.ROUTING && dv.getUint8(at + 2) === 0) return Drop.IP6_RH0;
    next = following;
    at += len;
  }
  if (at + minUpper(next) > end) return chain.frag >= 0 ? Drop.IP6_CHAIN_FRAGMENTED : Drop.IP6_EXT_MALFORMED;
  chain.proto = next;
  chain.l4 = at;
  chain.count = count;
  return Drop.NONE;
}

/**
 * The partial sum of the IPv6 pseudo-header (RFC 8200 8.1) of the packet at `ip`, for an upper-layer
 * length `len` and protocol `proto`: its two addresses as they are in the arena.
 */
export function pseudoSum(u8: Uint8Array, ip: number, proto: number, len: number): number {
  return sum(u8, ip + IPV6.SRC, 32, (len >>> 16) + (len & 0xffff) + proto);
}

/** Writes a header without extensions at `ip` (addresses are the caller's); returns the payload offset. */
export function emitIpv6(
  dv: DataView,
  ip: number,
  next: number,
  payloadLen: number,
  hopLimit: number,
): number {
  dv.setUint32(ip + IPV6.VER_TC_FLOW, 0x60000000);
  dv.setUint16(ip + IPV6.PAYLOAD_LEN, payloadLen);
  dv.setUint8(ip + IPV6.NEXT, next);
  dv.setUint8(ip + IPV6.HOP_LIMIT, hopLimit);
  return ip + IPV6_HEADER_LEN;
}
