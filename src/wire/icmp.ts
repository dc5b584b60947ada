// ICMPv4 (RFC 792): offsets and accessors for the common header and echo messages.

import { checksum, update16 } from './checksum.js';

export const ICMP = { TYPE: 0, CODE: 1, CHECKSUM: 2, ID: 4, SEQ: 6 } as const;
export const ICMP_HEADER_LEN = ICMP.SEQ + 2;

export const IcmpType = {
  ECHO_REPLY: 0,
  DEST_UNREACHABLE: 3,
  ECHO_REQUEST: 8,
  TIME_EXCEEDED: 11,
} as const;

/** Message type. */
export function icmpType(dv: DataView, off: number): number {
  return dv.getUint8(off + ICMP.TYPE);
}

/** Message code. */
export function icmpCode(dv: DataView, off: number): number {
  return dv.getUint8(off + ICMP.CODE);
}

/** Echo identifier (the "port" of ping). */
export function echoId(dv: DataView, off: number): number {
  return dv.getUint16(off + ICMP.ID);
}

/**
 * Updates the checksum of the ICMP message at `icmp` (`len` bytes, in the arena `u8`) after one of its
 * 16-bit words changed from `old` to `now` (RFC 1624). The update cannot tell +0 from -0: when it gives
 * 0x0000 the message may now be all zeros, which needs 0xffff, so that rare case is summed in full.
 */
export function updateIcmpChecksum(
  dv: DataView,
  u8: Uint8Array,
  icmp: number,
  len: number,
  old: number,
  now: number,
): void {
  const c = update16(dv.getUint16(icmp + ICMP.CHECKSUM), old, now);
  dv.setUint16(icmp + ICMP.CHECKSUM, c);
  if (c === 0) dv.setUint16(icmp + ICMP.CHECKSUM, checksum(u8, icmp, len));
}
