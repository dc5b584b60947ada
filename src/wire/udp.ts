// UDP header (RFC 768): offsets, accessors and checksum helpers over the arena.

import { checksum, pseudoHeader } from './checksum.js';
import { IpProto } from './ipv4.js';

export const UDP = { SRC_PORT: 0, DST_PORT: 2, LEN: 4, CHECKSUM: 6 } as const;
export const UDP_HEADER_LEN = UDP.CHECKSUM + 2;

/** Source port. */
export function srcPort(dv: DataView, off: number): number {
  return dv.getUint16(off + UDP.SRC_PORT);
}

/** Destination port. */
export function dstPort(dv: DataView, off: number): number {
  return dv.getUint16(off + UDP.DST_PORT);
}

/** Length field: header plus payload. */
export function udpLen(dv: DataView, off: number): number {
  return dv.getUint16(off + UDP.LEN);
}

/** Whether a datagram's checksum is right; a zero checksum means the sender did not compute one. */
export function checksumOk(
  dv: DataView,
  u8: Uint8Array,
  off: number,
  len: number,
  src: number,
  dst: number,
): boolean {
  if (dv.getUint16(off + UDP.CHECKSUM) === 0) return true;
  return checksum(u8, off, len, pseudoHeader(src, dst, IpProto.UDP, len)) === 0;
}

/** Writes a UDP header at `off` for `payloadLen` bytes already in place and fills the checksum. */
export function emitUdp(
  dv: DataView,
  u8: Uint8Array,
  off: number,
  src: number,
  dst: number,
  sport: number,
  dport: number,
  payloadLen: number,
): number {
  const len = UDP_HEADER_LEN + payloadLen;
  dv.setUint16(off + UDP.SRC_PORT, sport);
  dv.setUint16(off + UDP.DST_PORT, dport);
  dv.setUint16(off + UDP.LEN, len);
  dv.setUint16(off + UDP.CHECKSUM, 0);
  const c = checksum(u8, off, len, pseudoHeader(src, dst, IpProto.UDP, len));
  dv.setUint16(off + UDP.CHECKSUM, c === 0 ? 0xffff : c);
  return off + UDP_HEADER_LEN;
}
