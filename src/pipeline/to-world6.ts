// A VM's IPv6 packet for the world: policy, the router's duties (hop limit, packet too big: an IPv6
// router never fragments), then NAT66 from the uplink's IPv6 address with the same mappings, filtering
// and timeouts as NAT44 (nat/flows.ts). The packet is rewritten in place, every checksum updated
// incrementally (an IPv6 header has none), and sent from its receive slot: as a whole frame through the
// uplink's packet socket when the next hop is known (a TCP aggregate from a VM with offloads in one send,
// its checksum left to the device), else through the raw IPv6 socket, Ethernet header left behind (an
// aggregate cut first), as to-world.ts does for IPv4.

import { NatProto, NoMapping, remoteKey6 } from '../nat/flows.js';
import type { PortForward } from '../nat/forwards.js';
import type { NatUplink6 } from '../nat/uplink.js';
import { type Attachment, AttType } from '../net/attachment.js';
import { Drop } from '../stats/drops.js';
import { checksum, update16, update32, updatePartial32 } from '../wire/checksum.js';
import { ETH, ETH_HEADER_LEN, sameMac } from '../wire/ethernet.js';
import { ICMP6, ICMP6_HEADER_LEN, Icmp6Type, icmp6Checksum, Unreachable } from '../wire/icmpv6.js';
import { chain, IPV6, NextHeader, pseudoSum, word } from '../wire/ipv6.js';
import * as tcp from '../wire/tcp.js';
import { TcpFlag } from '../wire/tcp.js';
import * as udp from '../wire/udp.js';
import {
  VNET,
  VNET_F_NEEDS_CSUM,
  VNET_GSO_ECN,
  VNET_GSO_NONE,
  VNET_GSO_TCPV6,
  VNET_HDR_LEN,
} from '../wire/vnet.js';
import { blocked6, routerError } from './from-vm6.js';
import { completeChecksum, cutAggregate, segLens } from './offload.js';
import { type Pipeline, STRIDE } from './pipeline.js';
import type { Segment } from './segment.js';
import { badFlags } from './to-world.js';

/**
 * Replaces the address at `field` (IPV6.SRC or IPV6.DST) of the packet at `ip` with `addr`, updating the
 * transport checksum at `sum` (-1: none; `partial`: it holds only the pseudo-header's sum).
 */
export function swapAddress6(
  dv: DataView,
  ip: number,
  field: number,
  w0: number,
  w1: number,
  w2: number,
  w3: number,
  sum: number,
  partial: boolean,
): void {
  let c = sum < 0 ? 0 : dv.getUint16(sum);
  for (let i = 0; i < 4; i++) {
    const at = ip + field + 4 * i;
    const old = dv.getInt32(at);
    const now = i === 0 ? w0 : i === 1 ? w1 : i === 2 ? w2 : w3;
    if (old === now) continue;
    dv.setInt32(at, now);
    if (sum >= 0) c = partial ? updatePartial32(c, old, now) : update32(c, old, now);
  }
  if (sum >= 0) dv.setUint16(sum, c);
}

/** The offset of the checksum of a TCP, UDP or ICMPv6 header at `l4`. */
export function checksumAt(proto: number, l4: number): number {
  if (proto === NextHeader.TCP) return l4 + tcp.TCP.CHECKSUM;
  if (proto === NextHeader.UDP) return l4 + udp.UDP.CHECKSUM;
  return l4 + ICMP6.CHECKSUM;
}

/** The fragment table's key of a packet's source address (the VM's, before translation). */
function sourceKey(dv: DataView, ip: number): number {
  return remoteKey6(
    word(dv, ip, IPV6.SRC, 0),
    word(dv, ip, IPV6.SRC, 1),
    word(dv, ip, IPV6.SRC, 2),
    word(dv, ip, IPV6.SRC, 3),
  );
}

/**
 * Whether a packet the VM's rules block answers a client of one of its port forwards on the IPv6 address:
 * TCP or UDP from the forwarded port to a remote the forward talked with, a TCP segment carrying ACK or RST
 * (a SYN alone starts something, and that the rules decide). As answersForward() in to-world.ts.
 */
function answersForward6(
  dv: DataView,
  nat: NatUplink6 | null,
  att: Attachment,
  proto: number,
  l4: number,
  d0: number,
  d1: number,
  d2: number,
  d3: number,
): boolean {
  if (nat === null || att.forward6Index.size === 0 || l4 < 0) return false;
  let f: PortForward | undefined;
  if (proto === NextHeader.TCP) {
    if ((tcp.flags(dv, l4) & (TcpFlag.ACK | TcpFlag.RST)) === 0) return false;
    f = nat.forwards.outbound(att, NatProto.TCP, tcp.srcPort(dv, l4));
  } else if (proto === NextHeader.UDP) {
    f = nat.forwards.outbound(att, NatProto.UDP, udp.srcPort(dv, l4));
  }
  return f?.knows(remoteKey6(d0, d1, d2, d3)) === true;
}

/** Decides a VM's IPv6 packet (header at `ip`, `total` bytes, walked: chain) for beyond the network. */
export function toWorld6(
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
  const d0 = word(dv, ip, IPV6.DST, 0);
  const d1 = word(dv, ip, IPV6.DST, 1);
  const d2 = word(dv, ip, IPV6.DST, 2);
  const d3 = word(dv, ip, IPV6.DST, 3);
  const nat = seg.nat?.v6 ?? null;
  if (!att.policy.allows6(d0, d1, d2, d3) && !answersForward6(dv, nat, att, proto, l4, d0, d1, d2, d3))
    return blocked6(p, seg, att, ip, total, proto, l4, slot);
  if (att.type !== AttType.SHARED) return Drop.HOST_ONLY;
  if (nat === null || nat.held) {
    if (att.policy.reject && chain.fragOffset === 0)
      routerError(p, seg, att, ip, total, slot, Icmp6Type.DEST_UNREACHABLE, Unreachable.NO_ROUTE, 0);
    return Drop.UPLINK6_HELD;
  }
  if (!sameMac(u8, off + ETH.DST, seg.gatewayMac)) return Drop.DST_MAC_FOREIGN;
  const hop = dv.getUint8(ip + IPV6.HOP_LIMIT);
  if (hop <= 1) {
    routerError(p, seg, att, ip, total, slot, Icmp6Type.TIME_EXCEEDED, 0, 0);
    return Drop.TTL_EXCEEDED;
  }
  const h = off - VNET_HDR_LEN;
  const aggregate = u8[h + VNET.GSO_TYPE] !== VNET_GSO_NONE;
  // Left to offload by the VM's stack: not filled in yet, so not to be checked, and updated as a partial sum.
  const partial = (u8[h + VNET.FLAGS] & VNET_F_NEEDS_CSUM) !== 0;
  if (aggregate || partial) {
    const bad = checkOffload6(dv, u8, h, off, ip, total, proto, l4, aggregate, partial);
    if (bad !== Drop.NONE) return bad;
  }
  // An aggregate leaves as segments of the VM's MSS: those must fit the uplink.
  const size = aggregate ? l4 - ip + tcp.headerLen(dv, l4) + dv.getUint16(h + VNET.GSO_SIZE, true) : total;
  if (size > nat.mtu) {
    routerError(p, seg, att, ip, total, slot, Icmp6Type.PACKET_TOO_BIG, 0, nat.mtu);
    return Drop.TOO_BIG;
  }
  const a = nat.addr;
  if (l4 < 0) {
    // A later fragment: no ports, no checksum of its own; the first one updated the transport checksum.
    // It goes only where its first fragment went: one softnet dropped (a header chain cut short, a TCP
    // segment without a mapping) takes the rest of its train with it (RFC 7112's tiny-fragment attack).
    const first = nat.outFragments.find(sourceKey(dv, ip), 0, chain.fragId);
    if (first !== att) return Drop.FRAGMENT_WITHOUT_FIRST;
    swapAddress6(dv, ip, IPV6.SRC, a[0], a[1], a[2], a[3], -1, false);
    dv.setUint8(ip + IPV6.HOP_LIMIT, hop - 1);
    return sendOut6(p, nat, off, ip, total, l4, proto, d0, d1, d2, d3);
  }
  const whole = chain.frag < 0;
  const l4len = ip + total - l4;
  let natProto: number;
  let vmPort: number;
  let tcpFlags = 0;
  if (proto === NextHeader.TCP) {
    if (
      l4len < tcp.TCP_HEADER_LEN ||
      tcp.headerLen(dv, l4) < tcp.TCP_HEADER_LEN ||
      tcp.headerLen(dv, l4) > l4len
    )
      return Drop.TCP_MALFORMED;
    tcpFlags = tcp.flags(dv, l4);
    if (badFlags(tcpFlags)) return Drop.TCP_BAD_FLAGS;
    if (whole && !partial && checksum(u8, l4, l4len, pseudoSum(u8, ip, NextHeader.TCP, l4len)) !== 0)
      return Drop.TCP_BAD_CHECKSUM;
    natProto = NatProto.TCP;
    vmPort = tcp.srcPort(dv, l4);
  } else if (proto === NextHeader.UDP) {
    if (l4len < udp.UDP_HEADER_LEN) return Drop.UDP_MALFORMED;
    const ulen = udp.udpLen(dv, l4);
    if (whole && (ulen < udp.UDP_HEADER_LEN || ulen > l4len)) return Drop.UDP_MALFORMED;
    // An IPv6 UDP checksum is never left out (RFC 8200 8.1).
    if (
      whole &&
      !partial &&
      (dv.getUint16(l4 + udp.UDP.CHECKSUM) === 0 ||
        checksum(u8, l4, ulen, pseudoSum(u8, ip, NextHeader.UDP, ulen)) !== 0)
    )
      return Drop.UDP_BAD_CHECKSUM;
    natProto = NatProto.UDP;
    vmPort = udp.srcPort(dv, l4);
  } else if (proto === NextHeader.ICMPV6) {
    if (l4len < ICMP6_HEADER_LEN) return Drop.ICMP6_MALFORMED;
    if (dv.getUint8(l4 + ICMP6.TYPE) !== Icmp6Type.ECHO_REQUEST) return Drop.NAT_ICMP_TYPE;
    if (whole && icmp6Checksum(u8, ip, l4, l4len) !== 0) return Drop.ICMP6_BAD_CHECKSUM;
    natProto = NatProto.ICMP;
    vmPort = dv.getUint16(l4 + ICMP6.ID);
  } else {
    return Drop.NO_ROUTE;
  }
  // From a forwarded port (its port forward on the IPv6 address) it leaves from the forward's port.
  const f =
    natProto !== NatProto.ICMP && att.forward6Index.size !== 0
      ? nat.forwards.outbound(att, natProto, vmPort)
      : undefined;
  let extPort: number;
  if (f !== undefined) {
    f.touch(remoteKey6(d0, d1, d2, d3), p.clock);
    extPort = f.ext;
  } else {
    const s2 = word(dv, ip, IPV6.SRC, 2);
    const s3 = word(dv, ip, IPV6.SRC, 3);
    let m = nat.flows.outbound6(att, natProto, vmPort, s2, s3);
    if (m === undefined) {
      if (natProto === NatProto.TCP && (tcpFlags & (TcpFlag.SYN | TcpFlag.ACK)) !== TcpFlag.SYN)
        return Drop.NAT_TCP_NOT_SYN;
      const made = nat.flows.create(att, natProto, vmPort, p.clock, 0, s2, s3);
      if (typeof made === 'number')
        return made === NoMapping.VM_SHARE_FULL ? Drop.NAT_VM_SHARE_FULL : Drop.NAT_PORTS_EXHAUSTED;
      m = made;
    }
    m.lastSeen = p.clock;
    m.sentTo(remoteKey6(d0, d1, d2, d3));
    if (natProto === NatProto.TCP) m.tcpOut(tcpFlags);
    extPort = m.extPort;
  }
  if (chain.frag >= 0 && chain.more)
    nat.outFragments.remember(sourceKey(dv, ip), 0, chain.fragId, att, p.clock);
  const sum = checksumAt(proto, l4);
  // The ICMPv6 checksum covers the pseudo-header too, so all three take the address change alike. A
  // partial sum (an aggregate's always) covers only the pseudo-header: the port is not in it.
  swapAddress6(dv, ip, IPV6.SRC, a[0], a[1], a[2], a[3], sum, partial);
  const portAt = natProto === NatProto.ICMP ? l4 + ICMP6.ID : l4;
  dv.setUint16(portAt, extPort);
  if (!partial) {
    let c = update16(dv.getUint16(sum), vmPort, extPort);
    if (proto === NextHeader.UDP && c === 0) c = 0xffff;
    dv.setUint16(sum, c);
  }
  dv.setUint8(ip + IPV6.HOP_LIMIT, hop - 1);
  return sendOut6(p, nat, off, ip, total, l4, proto, d0, d1, d2, d3);
}

/**
 * Whether a VM's frame with offloads (its virtio header at `h`, the frame at `off`) is what softnet can
 * carry: an aggregate is TCP/IPv6, whole (no fragment header), with a segment size and its checksum left
 * to offload; a checksum left to offload is the TCP or UDP one of a whole packet, where the header says.
 */
function checkOffload6(
  dv: DataView,
  u8: Uint8Array,
  h: number,
  off: number,
  ip: number,
  total: number,
  proto: number,
  l4: number,
  aggregate: boolean,
  partial: boolean,
): number {
  if (l4 < 0 || chain.frag >= 0) return aggregate ? Drop.GSO_UNCUT : Drop.BAD_OFFLOAD;
  if (aggregate) {
    if ((u8[h + VNET.GSO_TYPE] & ~VNET_GSO_ECN) !== VNET_GSO_TCPV6 || proto !== NextHeader.TCP)
      return Drop.GSO_UNCUT;
    if (ip + total - l4 < tcp.TCP_HEADER_LEN || tcp.headerLen(dv, l4) < tcp.TCP_HEADER_LEN)
      return Drop.TCP_MALFORMED;
    if (dv.getUint16(h + VNET.GSO_SIZE, true) === 0) return Drop.GSO_UNCUT;
    // A sender that makes aggregates leaves their checksum to offload; any other field is unknowable.
    if (!partial) return Drop.BAD_OFFLOAD;
  }
  const at = proto === NextHeader.TCP ? tcp.TCP.CHECKSUM : proto === NextHeader.UDP ? udp.UDP.CHECKSUM : -1;
  // csum_start counts from the start of the Ethernet frame: past the IPv6 header and its extensions.
  if (at < 0 || dv.getUint16(h + VNET.CSUM_START, true) !== l4 - off) return Drop.BAD_OFFLOAD;
  if (dv.getUint16(h + VNET.CSUM_OFFSET, true) !== at || l4 + at + 2 > ip + total) return Drop.BAD_OFFLOAD;
  return Drop.NONE;
}

/**
 * Sends a translated packet (its frame at `off`, IPv6 header at `ip`, upper-layer header at `l4`, -1 in a
 * later fragment) to d0..d3 out of the uplink: whole through the packet socket when the next hop is known,
 * its virtio header saying what is left to offload; else through the raw socket, an aggregate cut into
 * segments and a checksum filled in first.
 */
function sendOut6(
  p: Pipeline,
  nat: NatUplink6,
  off: number,
  ip: number,
  total: number,
  l4: number,
  proto: number,
  d0: number,
  d1: number,
  d2: number,
  d3: number,
): number {
  const u8 = p.u8;
  const tx = nat.tx;
  if (tx !== null && nat.hop?.writeHeader(u8, off, d0, d1, d2, d3) === true) {
    p.queue(tx, off, ETH_HEADER_LEN + total);
    return Drop.NONE;
  }
  const h = off - VNET_HDR_LEN;
  if (u8[h + VNET.GSO_TYPE] !== VNET_GSO_NONE) {
    const first = p.nextSegment();
    const n = cutAggregate(p, h, VNET_HDR_LEN + ETH_HEADER_LEN + total);
    if (n === 0) return Drop.GSO_UNCUT;
    const skip = VNET_HDR_LEN + ETH_HEADER_LEN;
    for (let i = 0; i < n; i++) p.queue(nat.raw, first + i * STRIDE + skip, segLens[i] - skip);
    return Drop.NONE;
  }
  if ((u8[h + VNET.FLAGS] & VNET_F_NEEDS_CSUM) !== 0 && !completeChecksum(p, h, ip, l4 - ip, total, proto))
    return Drop.BAD_OFFLOAD;
  p.queue(nat.raw, ip, total);
  return Drop.NONE;
}
