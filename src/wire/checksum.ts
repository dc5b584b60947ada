// The Internet checksum (RFC 1071) over bytes of the arena, and its incremental update (RFC 1624).
// Sums are kept as plain numbers: 32-bit partial sums of 16-bit words never lose bits before fold().

// A view of the last array summed: the pipeline always sums its arena, so this is made once. Keyed by the
// array itself because reading `u8.buffer` is a builtin call that cost more than a 20-byte sum.
let viewOf: Uint8Array | null = null;
let view: DataView | null = null;

/**
 * Adds the 16-bit big-endian words of u8[off, off+len) to `acc` (a partial sum below 2^31); an odd last
 * byte is padded with zero. Returns a partial sum below 2^18, its carries folded in. It reads 32 bits at
 * a time and keeps their halves in two integer sums: no double arithmetic, so nothing is boxed.
 */
export function sum(u8: Uint8Array, off: number, len: number, acc: number): number {
  if (viewOf !== u8) {
    viewOf = u8;
    view = new DataView(u8.buffer, u8.byteOffset, u8.byteLength);
  }
  const dv = view!;
  let i = off;
  const end = i + len;
  let hi = 0;
  let lo = acc;
  for (const stop = end - 3; i < stop; i += 4) {
    const w = dv.getUint32(i);
    hi += w >>> 16;
    lo += w & 0xffff;
  }
  if (end - i >= 2) {
    lo += dv.getUint16(i);
    i += 2;
  }
  if (i < end) lo += dv.getUint8(i) << 8;
  return (hi & 0xffff) + (hi >>> 16) + (lo & 0xffff) + (lo >>> 16);
}

/** Folds a partial sum to 16 bits and complements it: the value to store in a checksum field. */
export function fold(acc: number): number {
  // 0x10000 is 1 modulo 0xffff; sums from sum() never take the double branch.
  while (acc > 0xffffffff) acc = (acc % 0x10000) + Math.floor(acc / 0x10000);
  while (acc > 0xffff) acc = (acc & 0xffff) + (acc >>> 16);
  return ~acc & 0xffff;
}

/** The checksum of u8[off, off+len), starting from partial sum `acc`. */
export function checksum(u8: Uint8Array, off: number, len: number, acc = 0): number {
  return fold(sum(u8, off, len, acc));
}

/** RFC 1624 eqn. 3: the checksum after one 16-bit word of the covered data changed from `old` to `now`. */
export function update16(check: number, old: number, now: number): number {
  let acc = (~check & 0xffff) + (~old & 0xffff) + now;
  acc = (acc & 0xffff) + (acc >>> 16);
  acc = (acc & 0xffff) + (acc >>> 16);
  return ~acc & 0xffff;
}

/** update16 for a 32-bit field (an IPv4 address) that changed from `old` to `now`. */
export function update32(check: number, old: number, now: number): number {
  return update16(update16(check, old >>> 16, now >>> 16), old & 0xffff, now & 0xffff);
}

/**
 * update32 for the transport checksum field of a packet whose checksum is left to offload
 * (VNET_F_NEEDS_CSUM): that field holds the pseudo-header's folded sum itself, not its complement.
 */
export function updatePartial32(partial: number, old: number, now: number): number {
  return ~update32(~partial & 0xffff, old, now) & 0xffff;
}

/** What an offloaded TCP/UDP checksum field holds before the sum over the segment: the pseudo-header's. */
export function partialPseudo(src: number, dst: number, proto: number, len: number): number {
  return ~fold(pseudoHeader(src, dst, proto, len)) & 0xffff;
}

/** The partial sum of the IPv4 pseudo-header for a TCP/UDP checksum (RFC 768, RFC 9293). */
export function pseudoHeader(src: number, dst: number, proto: number, len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
}

/**
 * Overwrites the 6 bytes at u8[at] with mac[0..6) and returns checksum `check`, of data starting at `base`,
 * updated for them (RFC 1624). A byte is the high or the low half of its 16-bit word by its distance from
 * `base`, so any alignment works: a MAC in a DHCP option as well as chaddr.
 */
export function writeMacUpdating(
  u8: Uint8Array,
  at: number,
  mac: Uint8Array,
  base: number,
  check: number,
): number {
  let before = 0;
  let after = 0;
  for (let i = 0; i < 6; i++) {
    const shift = ((at + i - base) & 1) === 0 ? 8 : 0;
    before += u8[at + i] << shift;
    after += mac[i] << shift;
    u8[at + i] = mac[i];
  }
  before = (before & 0xffff) + (before >>> 16);
  after = (after & 0xffff) + (after >>> 16);
  return update16(check, (before & 0xffff) + (before >>> 16), (after & 0xffff) + (after >>> 16));
}
