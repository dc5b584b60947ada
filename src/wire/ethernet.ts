// Ethernet II header: field offsets, accessors over the arena, and a header builder.

export const ETH = { DST: 0, SRC: 6, TYPE: 12 } as const;
export const ETH_HEADER_LEN = ETH.TYPE + 2;

export const EtherType = {
  IPV4: 0x0800,
  ARP: 0x0806,
  VLAN: 0x8100,
  QINQ: 0x88a8,
  IPV6: 0x86dd,
  LLDP: 0x88cc,
} as const;

/** The EtherType (or 802.3 length, when below 0x0600) of the frame at `off`. */
export function etherType(dv: DataView, off: number): number {
  return dv.getUint16(off + ETH.TYPE);
}

/** A MAC address at u8[at] as one number (48 bits fit a double exactly), for compares and Map keys. */
export function macKey(u8: Uint8Array, at: number): number {
  return (
    (u8[at] * 0x10000 + ((u8[at + 1] << 8) | u8[at + 2])) * 0x1000000 +
    ((u8[at + 3] << 16) | (u8[at + 4] << 8) | u8[at + 5])
  );
}

/**
 * Whether the MAC at u8[at] is mac[from, from+6). The hot path compares MACs with this rather than with
 * macKey: a boolean never allocates, while a 48-bit key returned from a call V8 did not inline is a heap
 * number made for every frame.
 */
export function sameMac(u8: Uint8Array, at: number, mac: Uint8Array, from = 0): boolean {
  return (
    u8[at] === mac[from] &&
    u8[at + 1] === mac[from + 1] &&
    u8[at + 2] === mac[from + 2] &&
    u8[at + 3] === mac[from + 3] &&
    u8[at + 4] === mac[from + 4] &&
    u8[at + 5] === mac[from + 5]
  );
}

/** Whether the MAC at u8[at] has the group bit set (broadcast or multicast). */
export function isGroupMac(u8: Uint8Array, at: number): boolean {
  return (u8[at] & 1) === 1;
}

/** Whether the MAC at u8[at] is ff:ff:ff:ff:ff:ff. */
export function isBroadcastMac(u8: Uint8Array, at: number): boolean {
  return (u8[at] & u8[at + 1] & u8[at + 2] & u8[at + 3] & u8[at + 4] & u8[at + 5]) === 0xff;
}

/** Copies the 6-byte MAC at mac[from] into u8[at]. */
export function writeMac(u8: Uint8Array, at: number, mac: Uint8Array, from = 0): void {
  u8[at] = mac[from];
  u8[at + 1] = mac[from + 1];
  u8[at + 2] = mac[from + 2];
  u8[at + 3] = mac[from + 3];
  u8[at + 4] = mac[from + 4];
  u8[at + 5] = mac[from + 5];
}

/** Writes an Ethernet header at `off` (destination read from dst[dstAt]); returns the payload offset. */
export function emitEthernet(
  u8: Uint8Array,
  off: number,
  dst: Uint8Array,
  dstAt: number,
  src: Uint8Array,
  type: number,
): number {
  writeMac(u8, off + ETH.DST, dst, dstAt);
  writeMac(u8, off + ETH.SRC, src);
  u8[off + ETH.TYPE] = type >>> 8;
  u8[off + ETH.TYPE + 1] = type & 0xff;
  return off + ETH_HEADER_LEN;
}
