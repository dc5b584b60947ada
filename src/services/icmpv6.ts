// ICMPv6 at the gateway: echo answered by turning the request around in place, the errors the gateway
// sends as a router (time exceeded, packet too big, unreachable), and reject mode's answers for IPv6.

import { checksum, update16 } from '../wire/checksum.js';
import { ETH, ETH_HEADER_LEN, EtherType, emitEthernet, writeMac } from '../wire/ethernet.js';
import { ICMP6, ICMP6_HEADER_LEN, Icmp6Type, icmp6Checksum, Unreachable } from '../wire/icmpv6.js';
import { emitIpv6, IPV6, IPV6_HEADER_LEN, NextHeader, pseudoSum, writeAddr } from '../wire/ipv6.js';
import { TCP, TCP_HEADER_LEN, TcpFlag } from '../wire/tcp.js';
import { writeRst } from './reject.js';

const REPLY_HOP_LIMIT = 64;
/** An error quotes as much of the offending packet as fits the IPv6 minimum MTU (RFC 4443 2.4 (c)). */
const MAX_QUOTE = 1280 - IPV6_HEADER_LEN - ICMP6_HEADER_LEN;

/**
 * Rewrites the echo request frame at `off` (IPv6 header at `ip`, ICMPv6 at `icmp`, `total` bytes of IP)
 * into its reply from `srcMac`, in place; returns the reply's frame length.
 */
export function answerEcho6InPlace(
  u8: Uint8Array,
  dv: DataView,
  off: number,
  ip: number,
  icmp: number,
  total: number,
  srcMac: Uint8Array,
): number {
  u8.copyWithin(off + ETH.DST, off + ETH.SRC, off + ETH.SRC + 6);
  writeMac(u8, off + ETH.SRC, srcMac);
  // Swapping the addresses leaves the pseudo-header's sum as it was; only the type word changes.
  for (let i = 0; i < 16; i += 4) {
    const s = dv.getInt32(ip + IPV6.SRC + i);
    dv.setInt32(ip + IPV6.SRC + i, dv.getInt32(ip + IPV6.DST + i));
    dv.setInt32(ip + IPV6.DST + i, s);
  }
  dv.setUint8(ip + IPV6.HOP_LIMIT, REPLY_HOP_LIMIT);
  const typeWord = dv.getUint16(icmp + ICMP6.TYPE);
  const replyWord = (Icmp6Type.ECHO_REPLY << 8) | (typeWord & 0xff);
  dv.setUint16(icmp + ICMP6.TYPE, replyWord);
  dv.setUint16(icmp + ICMP6.CHECKSUM, update16(dv.getUint16(icmp + ICMP6.CHECKSUM), typeWord, replyWord));
  return ETH_HEADER_LEN + total;
}

/**
 * Writes at `out` the ICMPv6 error (type, code, 32-bit `rest`: the MTU of packet too big) from address
 * `from` (four words) about the IPv6 packet at `ip` (`total` bytes), back to its source at `dstMac`.
 * Returns the frame's length.
 */
export function emitIcmp6Error(
  u8: Uint8Array,
  dv: DataView,
  out: number,
  ip: number,
  total: number,
  type: number,
  code: number,
  rest: number,
  srcMac: Uint8Array,
  dstMac: Uint8Array,
  from: ArrayLike<number>,
): number {
  const quote = total < MAX_QUOTE ? total : MAX_QUOTE;
  const rip = emitEthernet(u8, out, dstMac, 0, srcMac, EtherType.IPV6);
  const icmp = rip + IPV6_HEADER_LEN;
  // The quote is copied first: `out` may be where the packet's own header lies in another slot, never here.
  u8.copyWithin(icmp + ICMP6_HEADER_LEN, ip, ip + quote);
  u8.copyWithin(rip + IPV6.DST, ip + IPV6.SRC, ip + IPV6.SRC + 16);
  writeAddr(dv, rip + IPV6.SRC, from[0], from[1], from[2], from[3]);
  emitIpv6(dv, rip, NextHeader.ICMPV6, ICMP6_HEADER_LEN + quote, REPLY_HOP_LIMIT);
  dv.setUint8(icmp + ICMP6.TYPE, type);
  dv.setUint8(icmp + ICMP6.CODE, code);
  dv.setUint16(icmp + ICMP6.CHECKSUM, 0);
  dv.setUint32(icmp + ICMP6.ID, rest);
  dv.setUint16(icmp + ICMP6.CHECKSUM, icmp6Checksum(u8, rip, icmp, ICMP6_HEADER_LEN + quote));
  return icmp + ICMP6_HEADER_LEN + quote - out;
}

/**
 * Reject mode for IPv6: writes at `out` a RST from the blocked address for TCP at `l4` (nothing for a
 * RST: 0 is returned), else an ICMPv6 administratively prohibited from `gateway`. Returns the frame's length.
 */
export function emitRejection6(
  u8: Uint8Array,
  dv: DataView,
  out: number,
  ip: number,
  total: number,
  proto: number,
  l4: number,
  gatewayMac: Uint8Array,
  vmMac: Uint8Array,
  gateway: ArrayLike<number>,
): number {
  if (proto !== NextHeader.TCP || l4 < 0 || ip + total - l4 < TCP_HEADER_LEN) {
    return emitIcmp6Error(
      u8,
      dv,
      out,
      ip,
      total,
      Icmp6Type.DEST_UNREACHABLE,
      Unreachable.ADMIN_PROHIBITED,
      0,
      gatewayMac,
      vmMac,
      gateway,
    );
  }
  if (dv.getUint8(l4 + TCP.FLAGS) & TcpFlag.RST) return 0;
  const rip = emitEthernet(u8, out, vmMac, 0, gatewayMac, EtherType.IPV6);
  const rtcp = rip + IPV6_HEADER_LEN;
  u8.copyWithin(rip + IPV6.SRC, ip + IPV6.DST, ip + IPV6.DST + 16);
  u8.copyWithin(rip + IPV6.DST, ip + IPV6.SRC, ip + IPV6.SRC + 16);
  writeRst(dv, u8, rtcp, l4, ip + total - l4);
  emitIpv6(dv, rip, NextHeader.TCP, TCP_HEADER_LEN, REPLY_HOP_LIMIT);
  dv.setUint16(
    rtcp + TCP.CHECKSUM,
    checksum(u8, rtcp, TCP_HEADER_LEN, pseudoSum(u8, rip, NextHeader.TCP, TCP_HEADER_LEN)),
  );
  return rtcp + TCP_HEADER_LEN - out;
}
