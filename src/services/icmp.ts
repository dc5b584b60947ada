// ICMP at the gateway: echo answered by turning the request around in place, and the errors the gateway
// sends as a router (time exceeded, fragmentation needed).

import { checksum, update16 } from '../wire/checksum.js';
import { ETH, ETH_HEADER_LEN, EtherType, emitEthernet, writeMac } from '../wire/ethernet.js';
import { ICMP, ICMP_HEADER_LEN, IcmpType, updateIcmpChecksum } from '../wire/icmp.js';
import { emitIpv4, headerLen, IPV4, IPV4_HEADER_LEN, IpProto } from '../wire/ipv4.js';

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
  updateIcmpChecksum(dv, u8, icmp, ipTotal - (icmp - ip), typeWord, replyWord);
  return ETH_HEADER_LEN + ipTotal;
}

/** Bytes of the offending datagram an ICMP error quotes: its header and 8 bytes of its payload (RFC 792). */
const QUOTE_PAYLOAD = 8;

/**
 * Writes, at `out`, the ICMP error (type, code, and the 32-bit rest-of-header `rest`, e.g. the next-hop MTU
 * of "fragmentation needed") sent from address `from` (the gateway, or a blocked destination in reject
 * mode) back for the IPv4 packet at `ip` (`ipTotal` bytes), to `dstMac`. Returns the frame's length.
 */
export function emitIcmpError(
  u8: Uint8Array,
  dv: DataView,
  out: number,
  ip: number,
  ipTotal: number,
  type: number,
  code: number,
  rest: number,
  srcMac: Uint8Array,
  dstMac: Uint8Array,
  from: number,
): number {
  const quote = Math.min(ipTotal, headerLen(dv, ip) + QUOTE_PAYLOAD);
  const dst = dv.getUint32(ip + IPV4.SRC);
  const icmp = emitEthernet(u8, out, dstMac, 0, srcMac, EtherType.IPV4) + IPV4_HEADER_LEN;
  u8.copyWithin(icmp + ICMP_HEADER_LEN, ip, ip + quote);
  dv.setUint8(icmp + ICMP.TYPE, type);
  dv.setUint8(icmp + ICMP.CODE, code);
  dv.setUint16(icmp + ICMP.CHECKSUM, 0);
  dv.setUint32(icmp + ICMP.ID, rest);
  dv.setUint16(icmp + ICMP.CHECKSUM, checksum(u8, icmp, ICMP_HEADER_LEN + quote));
  emitIpv4(dv, u8, icmp - IPV4_HEADER_LEN, IpProto.ICMP, from, dst, ICMP_HEADER_LEN + quote, REPLY_TTL);
  return icmp + ICMP_HEADER_LEN + quote - out;
}
