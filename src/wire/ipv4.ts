// IPv4 header (RFC 791): offsets, accessors over the arena, validation and a header builder.

import { Drop } from '../stats/drops.js';
import { checksum } from './checksum.js';

export const IPV4 = {
  VER_IHL: 0,
  TOS: 1,
  LEN: 2,
  ID: 4,
  FRAG: 6,
  TTL: 8,
  PROTO: 9,
  CHECKSUM: 10,
  SRC: 12,
  DST: 16,
} as const;
export const IPV4_HEADER_LEN = IPV4.DST + 4;

export const IpProto = { ICMP: 1, TCP: 6, UDP: 17 } as const;

const MF = 0x2000;
const OFFSET_MASK = 0x1fff;

/** Header length in bytes, from IHL. */
export function headerLen(dv: DataView, off: number): number {
  return (dv.getUint8(off + IPV4.VER_IHL) & 0x0f) << 2;
}

/** Total length of the datagram, header included. */
export function totalLen(dv: DataView, off: number): number {
  return dv.getUint16(off + IPV4.LEN);
}

/** The protocol number of the payload. */
export function proto(dv: DataView, off: number): number {
  return dv.getUint8(off + IPV4.PROTO);
}

/** Time to live. */
export function ttl(dv: DataView, off: number): number {
  return dv.getUint8(off + IPV4.TTL);
}

/** Source address as an unsigned 32-bit number. */
export function src(dv: DataView, off: number): number {
  return dv.getUint32(off + IPV4.SRC);
}

/** Destination address as an unsigned 32-bit number. */
export function dst(dv: DataView, off: number): number {
  return dv.getUint32(off + IPV4.DST);
}

/** Whether the datagram is a fragment (more fragments follow, or it is not the first). */
export function isFragment(dv: DataView, off: number): boolean {
  return (dv.getUint16(off + IPV4.FRAG) & (MF | OFFSET_MASK)) !== 0;
}

/**
 * Checks version, IHL, total length against the `avail` bytes the frame holds, and the header checksum.
 * Returns Drop.NONE or the reason; after NONE every field of the header and the payload is in bounds.
 */
export function validate(dv: DataView, u8: Uint8Array, off: number, avail: number): number {
  if (avail < IPV4_HEADER_LEN) return Drop.IP_TRUNCATED;
  const vihl = dv.getUint8(off + IPV4.VER_IHL);
  if (vihl >>> 4 !== 4) return Drop.IP_BAD_VERSION;
  const hl = (vihl & 0x0f) << 2;
  if (hl < IPV4_HEADER_LEN || hl > avail) return Drop.IP_BAD_IHL;
  const total = dv.getUint16(off + IPV4.LEN);
  if (total < hl || total > avail) return Drop.IP_BAD_LENGTH;
  if (checksum(u8, off, hl) !== 0) return Drop.IP_BAD_CHECKSUM;
  return Drop.NONE;
}

/**
 * Writes a 20-byte header without options at `off` and fills its checksum; returns the payload offset.
 * `payloadLen` is the length of what follows the header.
 */
export function emitIpv4(
  dv: DataView,
  u8: Uint8Array,
  off: number,
  protocol: number,
  srcAddr: number,
  dstAddr: number,
  payloadLen: number,
  timeToLive: number,
): number {
  dv.setUint8(off + IPV4.VER_IHL, 0x45);
  dv.setUint8(off + IPV4.TOS, 0);
  dv.setUint16(off + IPV4.LEN, IPV4_HEADER_LEN + payloadLen);
  dv.setUint16(off + IPV4.ID, 0);
  dv.setUint16(off + IPV4.FRAG, 0x4000);
  dv.setUint8(off + IPV4.TTL, timeToLive);
  dv.setUint8(off + IPV4.PROTO, protocol);
  dv.setUint16(off + IPV4.CHECKSUM, 0);
  dv.setUint32(off + IPV4.SRC, srcAddr);
  dv.setUint32(off + IPV4.DST, dstAddr);
  dv.setUint16(off + IPV4.CHECKSUM, checksum(u8, off, IPV4_HEADER_LEN));
  return off + IPV4_HEADER_LEN;
}
