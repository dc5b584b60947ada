// TCP header (RFC 9293): offsets, flag bits and accessors over the arena.

export const TCP = {
  SRC_PORT: 0,
  DST_PORT: 2,
  SEQ: 4,
  ACK: 8,
  DATA_OFF: 12,
  FLAGS: 13,
  WINDOW: 14,
  CHECKSUM: 16,
  URGENT: 18,
} as const;
export const TCP_HEADER_LEN = TCP.URGENT + 2;

export const TcpFlag = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

/** Source port. */
export function srcPort(dv: DataView, off: number): number {
  return dv.getUint16(off + TCP.SRC_PORT);
}

/** Destination port. */
export function dstPort(dv: DataView, off: number): number {
  return dv.getUint16(off + TCP.DST_PORT);
}

/** Sequence number. */
export function seq(dv: DataView, off: number): number {
  return dv.getUint32(off + TCP.SEQ);
}

/** Acknowledgment number. */
export function ack(dv: DataView, off: number): number {
  return dv.getUint32(off + TCP.ACK);
}

/** Header length in bytes, from the data offset. */
export function headerLen(dv: DataView, off: number): number {
  return (dv.getUint8(off + TCP.DATA_OFF) >>> 4) << 2;
}

/** The eight flag bits. */
export function flags(dv: DataView, off: number): number {
  return dv.getUint8(off + TCP.FLAGS);
}

/** Receive window. */
export function window(dv: DataView, off: number): number {
  return dv.getUint16(off + TCP.WINDOW);
}
