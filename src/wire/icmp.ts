// ICMPv4 (RFC 792): offsets and accessors for the common header and echo messages.

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
