// NAT64 out (RFC 6146, headers per RFC 7915 5): a VM's IPv6 packet to its network's NAT64 prefix leaves as
// IPv4 to the address the prefix embeds, from the uplink's IPv4 address and a port of NAT44's range (the
// same table: NAT64 and NAT44 share the ports, the guard and the filter). The policy is the IPv4
// destination's. The packet is translated in place: its IPv4 header takes the last 20 bytes of the IPv6
// one, so it shrinks by 20 bytes and is sent from 20 bytes further on, as NAT44 sends.

import { MappingKind, NatProto, NoMapping } from '../nat/flows.js';
import { type Attachment, AttType } from '../net/attachment.js';
import { Verdict } from '../policy/rules.js';
import { specialPurposeTable } from '../policy/special.js';
import { Drop } from '../stats/drops.js';
import { checksum, fold, pseudoHeader, update16 } from '../wire/checksum.js';
import { ETH_HEADER_LEN } from '../wire/ethernet.js';
import { ICMP6, ICMP6_HEADER_LEN, Icmp6Type, icmp6Checksum, Unreachable } from '../wire/icmpv6.js';
import { emitIpv4, IPV4, IPV4_HEADER_LEN, IpProto } from '../wire/ipv4.js';
import { chain, IPV6, IPV6_HEADER_LEN, NextHeader, pseudoSum, word } from '../wire/ipv6.js';
import * as tcp from '../wire/tcp.js';
import { TcpFlag } from '../wire/tcp.js';
import * as udp from '../wire/udp.js';
import { VNET, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_HDR_LEN } from '../wire/vnet.js';
import { blocked6, routerError } from './from-vm6.js';
import { completeChecksum, cutAggregate, segLens } from './offload.js';
import { type Pipeline, STRIDE } from './pipeline.js';
import type { Segment } from './segment.js';
import { badFlags, sendOut } from './to-world.js';

/** The IPv4 special-purpose registry: the well-known prefix never carries these (RFC 6052 3.1). */
const SPECIAL = specialPurposeTable();
/** The smallest MTU an IPv6 link has: a packet too big never says less (RFC 8200 5). */
const MIN_MTU6 = 1280;
/** The header sizes NAT64 trades: what IPv6 takes more than IPv4. */
const GROWTH = IPV6_HEADER_LEN - IPV4_HEADER_LEN;

/**
 * RFC 1624 for a change of many words at once: the checksum `check` over data whose words summing to
 * `before` (a partial sum) now sum to `after`.
 */
export function adjust(check: number, before: number, after: number): number {
  let acc = (~check & 0xffff) + fold(before) + (~fold(after) & 0xffff);
  acc = (acc & 0xffff) + (acc >>> 16);
  acc = (acc & 0xffff) + (acc >>> 16);
  return ~acc & 0xffff;
}

/** Decides a VM's IPv6 packet (walked: chain) to its network's NAT64 prefix. */
export function toWorld64(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  off: number,
  ip: number,
  total: number,
  proto: number,
  l4: number,
  slot: number,
): number {
  const dv = p.dv;
  const u8 = p.u8;
  const dst4 = word(dv, ip, IPV6.DST, 3);
  if (seg.cfg.nat64WellKnown && SPECIAL.lookup(dst4) === Verdict.BLOCK) return Drop.NAT64_NON_GLOBAL;
  if (!att.policy.allows(dst4)) return blocked6(p, seg, att, ip, total, proto, l4, slot);
  if (att.type !== AttType.SHARED) return Drop.HOST_ONLY;
  const nat = seg.nat;
  if (nat === null) return Drop.NO_ROUTE;
  if (nat.held) {
    if (att.policy.reject)
      routerError(p, seg, att, ip, total, slot, Icmp6Type.DEST_UNREACHABLE, Unreachable.NO_ROUTE, 0);
    return Drop.UPLINK_HELD;
  }
  const hop = dv.getUint8(ip + IPV6.HOP_LIMIT);
  if (hop <= 1) {
    routerError(p, seg, att, ip, total, slot, Icmp6Type.TIME_EXCEEDED, 0, 0);
    return Drop.TTL_EXCEEDED;
  }
  if (chain.frag >= 0) return Drop.NAT64_FRAGMENT;
  if (chain.count !== 0) return Drop.NAT64_EXT_HEADER;
  const h = off - VNET_HDR_LEN;
  if (u8[h + VNET.GSO_TYPE] !== VNET_GSO_NONE) return cutThenTranslate(p, seg, att, h, total, slot);
  if ((u8[h + VNET.FLAGS] & VNET_F_NEEDS_CSUM) !== 0 && !completeChecksum(p, h, ip, l4 - ip, total, proto))
    return Drop.BAD_OFFLOAD;
  return translate(p, seg, att, ip, total, proto, l4, slot, hop, dst4);
}

/** An aggregate to the prefix: cut into segments, each translated as a packet of its own. */
function cutThenTranslate(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  h: number,
  total: number,
  slot: number,
): number {
  const first = p.nextSegment();
  const n = cutAggregate(p, h, VNET_HDR_LEN + ETH_HEADER_LEN + total);
  if (n === 0) return Drop.GSO_UNCUT;
  const dv = p.dv;
  for (let i = 0; i < n; i++) {
    const ip = first + i * STRIDE + VNET_HDR_LEN + ETH_HEADER_LEN;
    const len = segLens[i] - VNET_HDR_LEN - ETH_HEADER_LEN;
    const l4 = ip + IPV6_HEADER_LEN;
    const drop = translate(
      p,
      seg,
      att,
      ip,
      len,
      NextHeader.TCP,
      l4,
      slot,
      dv.getUint8(ip + IPV6.HOP_LIMIT),
      word(dv, ip, IPV6.DST, 3),
    );
    if (drop !== Drop.NONE) p.drops[drop]++;
  }
  return Drop.NONE;
}

function translate(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  ip: number,
  total: number,
  proto: number,
  l4: number,
  slot: number,
  hop: number,
  dst4: number,
): number {
  const dv = p.dv;
  const u8 = p.u8;
  const nat = seg.nat!;
  const l4len = total - IPV6_HEADER_LEN;
  if (total - GROWTH > nat.mtu) {
    const mtu = nat.mtu + GROWTH;
    routerError(p, seg, att, ip, total, slot, Icmp6Type.PACKET_TOO_BIG, 0, mtu < MIN_MTU6 ? MIN_MTU6 : mtu);
    return Drop.TOO_BIG;
  }
  let natProto: number;
  let vmPort: number;
  let tcpFlags = 0;
  let sumAt = -1;
  if (proto === NextHeader.TCP) {
    if (
      l4len < tcp.TCP_HEADER_LEN ||
      tcp.headerLen(dv, l4) < tcp.TCP_HEADER_LEN ||
      tcp.headerLen(dv, l4) > l4len
    )
      return Drop.TCP_MALFORMED;
    tcpFlags = tcp.flags(dv, l4);
    if (badFlags(tcpFlags)) return Drop.TCP_BAD_FLAGS;
    if (checksum(u8, l4, l4len, pseudoSum(u8, ip, NextHeader.TCP, l4len)) !== 0) return Drop.TCP_BAD_CHECKSUM;
    natProto = NatProto.TCP;
    vmPort = tcp.srcPort(dv, l4);
    sumAt = l4 + tcp.TCP.CHECKSUM;
  } else if (proto === NextHeader.UDP) {
    if (l4len < udp.UDP_HEADER_LEN) return Drop.UDP_MALFORMED;
    const ulen = udp.udpLen(dv, l4);
    if (ulen < udp.UDP_HEADER_LEN || ulen > l4len) return Drop.UDP_MALFORMED;
    if (
      dv.getUint16(l4 + udp.UDP.CHECKSUM) === 0 ||
      checksum(u8, l4, ulen, pseudoSum(u8, ip, NextHeader.UDP, ulen)) !== 0
    )
      return Drop.UDP_BAD_CHECKSUM;
    natProto = NatProto.UDP;
    vmPort = udp.srcPort(dv, l4);
    sumAt = l4 + udp.UDP.CHECKSUM;
  } else if (proto === NextHeader.ICMPV6) {
    if (l4len < ICMP6_HEADER_LEN) return Drop.ICMP6_MALFORMED;
    if (dv.getUint8(l4 + ICMP6.TYPE) !== Icmp6Type.ECHO_REQUEST) return Drop.NAT_ICMP_TYPE;
    if (icmp6Checksum(u8, ip, l4, l4len) !== 0) return Drop.ICMP6_BAD_CHECKSUM;
    natProto = NatProto.ICMP;
    vmPort = dv.getUint16(l4 + ICMP6.ID);
  } else {
    return Drop.NO_ROUTE;
  }
  // Everything the IPv4 header will cover is read first: it is written over the IPv6 header's second half.
  const s2 = word(dv, ip, IPV6.SRC, 2);
  const s3 = word(dv, ip, IPV6.SRC, 3);
  const tclass = (dv.getUint16(ip) >>> 4) & 0xff;
  let m = nat.flows.outbound6(att, natProto, vmPort, s2, s3, MappingKind.NAT64);
  if (m === undefined) {
    if (natProto === NatProto.TCP && (tcpFlags & (TcpFlag.SYN | TcpFlag.ACK)) !== TcpFlag.SYN)
      return Drop.NAT_TCP_NOT_SYN;
    const made = nat.flows.create(att, natProto, vmPort, p.clock, 0, s2, s3, MappingKind.NAT64);
    if (typeof made === 'number')
      return made === NoMapping.VM_SHARE_FULL ? Drop.NAT_VM_SHARE_FULL : Drop.NAT_PORTS_EXHAUSTED;
    m = made;
  }
  m.lastSeen = p.clock;
  m.sentTo(dst4);
  if (natProto === NatProto.TCP) m.tcpOut(tcpFlags);
  const src4 = nat.addr | 0;
  const proto4 = natProto === NatProto.ICMP ? IpProto.ICMP : proto;
  if (sumAt >= 0) {
    const before = pseudoSum(u8, ip, proto, l4len);
    let c = adjust(dv.getUint16(sumAt), before, pseudoHeader(src4, dst4, proto, l4len));
    c = update16(c, vmPort, m.extPort);
    dv.setUint16(sumAt, proto === NextHeader.UDP && c === 0 ? 0xffff : c);
    dv.setUint16(l4, m.extPort);
  } else {
    // ICMP has no pseudo-header: its checksum is made anew over the message.
    dv.setUint8(l4 + ICMP6.TYPE, 8);
    dv.setUint16(l4 + ICMP6.ID, m.extPort);
    dv.setUint16(l4 + ICMP6.CHECKSUM, 0);
    dv.setUint16(l4 + ICMP6.CHECKSUM, checksum(u8, l4, l4len));
  }
  const ip4 = ip + GROWTH;
  emitIpv4(dv, u8, ip4, proto4, src4, dst4, l4len, hop - 1);
  if (tclass !== 0) {
    const word0 = dv.getUint16(ip4);
    dv.setUint8(ip4 + IPV4.TOS, tclass);
    dv.setUint16(ip4 + IPV4.CHECKSUM, update16(dv.getUint16(ip4 + IPV4.CHECKSUM), word0, dv.getUint16(ip4)));
  }
  // The frame now starts 20 bytes on; its virtio header before it says there is nothing left to offload.
  const frame = ip4 - ETH_HEADER_LEN;
  u8.fill(0, frame - VNET_HDR_LEN, frame);
  return sendOut(p, nat, frame, ip4, IPV4_HEADER_LEN, IPV4_HEADER_LEN + l4len, dst4, proto4);
}
