// ICMP echo at the gateway: the answer is the request turned around in place.

import { checksum, update16 } from '../wire/checksum.js';
import { ETH, ETH_HEADER_LEN, writeMac } from '../wire/ethernet.js';
import { ICMP, IcmpType } from '../wire/icmp.js';
import { IPV4 } from '../wire/ipv4.js';

const REPLY_TTL = 64;

/**
 * Rewrites the echo request frame at `off` (IPv4 header at `ip`, ICMP at `icmp`, `ipTotal` bytes of IP)
 * into its reply from `srcMac`, in place; returns the reply's frame length.
 */
export function answerEchoInPlace(
  u8: Uint8Array,
  dv: DataView,
  off: number,
  ip: number,
  icmp: number,
  ipTotal: number,
  srcMac: Uint8Array,
): number {
  u8.copyWithin(off + ETH.DST, off + ETH.SRC, off + ETH.SRC + 6);
  writeMac(u8, off + ETH.SRC, srcMac);
  // Swapping source and destination leaves the header sum unchanged; only the TTL word changes.
  const src = dv.getUint32(ip + IPV4.SRC);
  dv.setUint32(ip + IPV4.SRC, dv.getUint32(ip + IPV4.DST));
  dv.setUint32(ip + IPV4.DST, src);
  const ttlWord = dv.getUint16(ip + IPV4.TTL);
  const newTtlWord = (REPLY_TTL << 8) | (ttlWord & 0xff);
  dv.setUint16(ip + IPV4.TTL, newTtlWord);
  dv.setUint16(ip + IPV4.CHECKSUM, update16(dv.getUint16(ip + IPV4.CHECKSUM), ttlWord, newTtlWord));
  const typeWord = dv.getUint16(icmp + ICMP.TYPE);
  const replyWord = (IcmpType.ECHO_REPLY << 8) | (typeWord & 0xff);
  dv.setUint8(icmp + ICMP.TYPE, IcmpType.ECHO_REPLY);
  const check = update16(dv.getUint16(icmp + ICMP.CHECKSUM), typeWord, replyWord);
  dv.setUint16(icmp + ICMP.CHECKSUM, check);
  // RFC 1624's update cannot tell +0 from -0: a message that is now all zeros needs 0xffff, not 0x0000.
  if (check === 0) {
    dv.setUint16(icmp + ICMP.CHECKSUM, 0);
    dv.setUint16(icmp + ICMP.CHECKSUM, checksum(u8, icmp, ipTotal - (icmp - ip)));
  }
  return ETH_HEADER_LEN + ipTotal;
}
