// Rewriting a packet's address, port and TTL for NAT, with every checksum updated incrementally
// (RFC 1624): the IPv4 header's, and the TCP/UDP checksum through its pseudo-header.

import { update16, update32, updatePartial32 } from '../wire/checksum.js';
import { ICMP, updateIcmpChecksum } from '../wire/icmp.js';
import { IPV4, IpProto } from '../wire/ipv4.js';
import { TCP } from '../wire/tcp.js';
import { UDP } from '../wire/udp.js';

/** The offset of the transport checksum in a TCP or UDP header, or -1 for other protocols. */
function l4ChecksumAt(proto: number): number {
  if (proto === IpProto.TCP) return TCP.CHECKSUM;
  if (proto === IpProto.UDP) return UDP.CHECKSUM;
  return -1;
}

/** Decrements the TTL of the IPv4 header at `ip`. */
export function decrementTtl(dv: DataView, ip: number): void {
  const word = dv.getUint16(ip + IPV4.TTL);
  const next = word - 0x100;
  dv.setUint16(ip + IPV4.TTL, next);
  dv.setUint16(ip + IPV4.CHECKSUM, update16(dv.getUint16(ip + IPV4.CHECKSUM), word, next));
}

/** Puts `addr` in the address field `which` of the IPv4 header at `ip`, updating its checksum; returns the old one. */
function swapAddress(dv: DataView, ip: number, which: number, addr: number): number {
  // Signed 32-bit, so the value is not boxed when passed on (see pipeline/to-world.ts).
  const old = dv.getUint32(ip + which) | 0;
  dv.setUint32(ip + which, addr);
  dv.setUint16(ip + IPV4.CHECKSUM, update32(dv.getUint16(ip + IPV4.CHECKSUM), old, addr));
  return old;
}

/**
 * Replaces the source (`which` = IPV4.SRC) or destination (IPV4.DST) address of the packet at `ip` and,
 * when `l4` >= 0, the matching port (or ICMP echo id) of its transport header at `l4`.
 */
export function rewrite(
  dv: DataView,
  u8: Uint8Array,
  ip: number,
  l4: number,
  proto: number,
  which: number,
  addr: number,
  port: number,
): void {
  const oldAddr = swapAddress(dv, ip, which, addr);
  if (l4 < 0) return;
  if (proto === IpProto.ICMP) {
    const oldId = dv.getUint16(l4 + ICMP.ID);
    dv.setUint16(l4 + ICMP.ID, port);
    updateIcmpChecksum(dv, u8, l4, ip + dv.getUint16(ip + IPV4.LEN) - l4, oldId, port);
    return;
  }
  const portAt = l4 + (which === IPV4.SRC ? 0 : 2);
  const oldPort = dv.getUint16(portAt);
  dv.setUint16(portAt, port);
  const at = l4 + l4ChecksumAt(proto);
  const check = dv.getUint16(at);
  // A UDP datagram sent without a checksum stays without one.
  if (proto === IpProto.UDP && check === 0) return;
  let next = update16(update32(check, oldAddr, addr), oldPort, port);
  if (proto === IpProto.UDP && next === 0) next = 0xffff;
  dv.setUint16(at, next);
}

/**
 * rewrite() for a TCP or UDP packet whose transport checksum is left to offload (VNET_F_NEEDS_CSUM): its
 * field holds only the pseudo-header's sum, which the address is part of, while the port is summed with
 * the rest of the segment when the checksum is filled in.
 */
export function rewritePartial(
  dv: DataView,
  ip: number,
  l4: number,
  proto: number,
  which: number,
  addr: number,
  port: number,
): void {
  const oldAddr = swapAddress(dv, ip, which, addr);
  dv.setUint16(l4 + (which === IPV4.SRC ? 0 : 2), port);
  const at = l4 + l4ChecksumAt(proto);
  dv.setUint16(at, updatePartial32(dv.getUint16(at), oldAddr, addr));
}
