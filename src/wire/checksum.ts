// The Internet checksum (RFC 1071) over bytes of the arena, and its incremental update (RFC 1624).
// Sums are kept as plain numbers: 32-bit partial sums of 16-bit words never lose bits before fold().

/** Adds the 16-bit big-endian words of u8[off, off+len) to `acc`; an odd last byte is padded with zero. */
export function sum(u8: Uint8Array, off: number, len: number, acc: number): number {
  const end = off + (len & ~1);
  let i = off;
  for (; i < end; i += 2) acc += (u8[i] << 8) | u8[i + 1];
  if (len & 1) acc += u8[i] << 8;
  return acc;
}

/** Folds a partial sum to 16 bits and complements it: the value to store in a checksum field. */
export function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
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

/** The partial sum of the IPv4 pseudo-header for a TCP/UDP checksum (RFC 768, RFC 9293). */
export function pseudoHeader(src: number, dst: number, proto: number, len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
}
