// A VM's packet for anywhere beyond the gateway: policy, the router's duties (TTL, too big), then NAT out
// through the uplink, by the VM's port forward when it comes from a forwarded port, else by a mapping. The
// packet is rewritten in place and sent from its receive slot: as a whole frame through the uplink's packet
// socket when the next hop is known (an aggregate from a VM with offloads in one send, its checksum left
// to the device), else through the raw IP socket, Ethernet header left behind (an aggregate cut first).

import { NatProto, NoMapping } from '../nat/flows.js';
import { decrementTtl, rewrite, rewritePartial } from '../nat/translate.js';
import type { NatUplink } from '../nat/uplink.js';
import { type Attachment, AttType } from '../net/attachment.js';
import { emitIcmpError } from '../services/icmp.js';
import { emitRejection } from '../services/reject.js';
import { Drop } from '../stats/drops.js';
import { checksum, pseudoHeader } from '../wire/checksum.js';
import { ETH, ETH_HEADER_LEN, sameMac } from '../wire/ethernet.js';
import { echoId, ICMP_HEADER_LEN, IcmpType, icmpType } from '../wire/icmp.js';
import { IPV4, IpProto } from '../wire/ipv4.js';
import * as tcp from '../wire/tcp.js';
import { TcpFlag } from '../wire/tcp.js';
import * as udp from '../wire/udp.js';
import { VNET, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_HDR_LEN } from '../wire/vnet.js';
import { completeChecksum, cutAggregate, segLens } from './offload.js';
import { type Pipeline, STRIDE } from './pipeline.js';
import type { Segment } from './segment.js';

const DF = 0x4000;
const ICMP_FRAG_NEEDED = 4;
const ICMP_NET_UNREACHABLE = 0;

/** Decides a VM's IPv4 packet (header at `ip`, `hl` and `total` bytes) whose destination is not the gateway. */
export function toWorld(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  off: number,
  ip: number,
  hl: number,
  total: number,
  slot: number,
): number {
  const dv = p.dv;
  const u8 = p.u8;
  // Addresses cross calls as signed 32-bit values (`| 0`): a value above 2^31 would be boxed, i.e. allocated.
  const dst = dv.getUint32(ip + IPV4.DST) | 0;
  const src = att.ip | 0;
  if (!att.policy.allows(dst) && !answersForward(p.dv, att, ip, hl, total, dst))
    return blocked(p, seg, att, ip, hl, total, slot);
  if (att.type !== AttType.SHARED) return Drop.HOST_ONLY;
  const nat = seg.nat;
  if (nat === null) return Drop.NO_ROUTE;
  if (nat.held) return held(p, seg, att, ip, hl, total, slot);
  if (!sameMac(u8, off + ETH.DST, seg.gatewayMac)) return Drop.DST_MAC_FOREIGN;
  if (dv.getUint8(ip + IPV4.TTL) <= 1) {
    answer(p, seg, att, ip, total, slot, IcmpType.TIME_EXCEEDED, 0, 0);
    return Drop.TTL_EXCEEDED;
  }
  const proto = dv.getUint8(ip + IPV4.PROTO);
  const h = off - VNET_HDR_LEN;
  const aggregate = u8[h + VNET.GSO_TYPE] !== VNET_GSO_NONE;
  // Left to offload by the VM's stack: not filled in yet, so not to be checked, and updated as a partial sum.
  const partial = (u8[h + VNET.FLAGS] & VNET_F_NEEDS_CSUM) !== 0;
  if (aggregate || partial) {
    const bad = checkOffload(dv, u8, h, ip, hl, total, proto, aggregate);
    if (bad !== Drop.NONE) return bad;
  }
  // An aggregate leaves as segments of the VM's MSS: those must fit the uplink.
  const size = aggregate ? hl + tcp.headerLen(dv, ip + hl) + dv.getUint16(h + VNET.GSO_SIZE, true) : total;
  if (size > nat.mtu) {
    if ((dv.getUint16(ip + IPV4.FRAG) & DF) === 0) return Drop.TOO_BIG;
    answer(p, seg, att, ip, total, slot, IcmpType.DEST_UNREACHABLE, ICMP_FRAG_NEEDED, nat.mtu);
    return Drop.TOO_BIG;
  }

  const fragWord = dv.getUint16(ip + IPV4.FRAG);
  const l4 = ip + hl;
  const l4len = total - hl;
  // A later fragment carries no ports: only its source address changes; the first one updated the
  // transport checksum for the whole datagram.
  if ((fragWord & 0x1fff) !== 0) {
    rewrite(dv, p.u8, ip, -1, proto, IPV4.SRC, nat.addr | 0, 0);
    decrementTtl(dv, ip);
    return sendOut(p, nat, off, ip, hl, total, dst, proto);
  }
  const whole = (fragWord & 0x2000) === 0;
  let natProto: number;
  let vmPort: number;
  let tcpFlags = 0;
  if (proto === IpProto.TCP) {
    if (
      l4len < tcp.TCP_HEADER_LEN ||
      tcp.headerLen(dv, l4) < tcp.TCP_HEADER_LEN ||
      tcp.headerLen(dv, l4) > l4len
    ) {
      return Drop.TCP_MALFORMED;
    }
    tcpFlags = tcp.flags(dv, l4);
    if (badFlags(tcpFlags)) return Drop.TCP_BAD_FLAGS;
    if (whole && !partial && checksum(u8, l4, l4len, pseudoHeader(src, dst, IpProto.TCP, l4len)) !== 0)
      return Drop.TCP_BAD_CHECKSUM;
    natProto = NatProto.TCP;
    vmPort = tcp.srcPort(dv, l4);
  } else if (proto === IpProto.UDP) {
    if (l4len < udp.UDP_HEADER_LEN) return Drop.UDP_MALFORMED;
    const ulen = udp.udpLen(dv, l4);
    if (whole && (ulen < udp.UDP_HEADER_LEN || ulen > l4len)) return Drop.UDP_MALFORMED;
    if (whole && !partial && !udp.checksumOk(dv, u8, l4, ulen, src, dst)) return Drop.UDP_BAD_CHECKSUM;
    natProto = NatProto.UDP;
    vmPort = udp.srcPort(dv, l4);
  } else if (proto === IpProto.ICMP) {
    if (l4len < ICMP_HEADER_LEN) return Drop.ICMP_MALFORMED;
    if (icmpType(dv, l4) !== IcmpType.ECHO_REQUEST) return Drop.NAT_ICMP_TYPE;
    if (whole && checksum(u8, l4, l4len) !== 0) return Drop.ICMP_BAD_CHECKSUM;
    natProto = NatProto.ICMP;
    vmPort = echoId(dv, l4);
  } else {
    return Drop.NO_ROUTE;
  }

  if (natProto !== NatProto.ICMP && att.forwardIndex.size !== 0) {
    const f = nat.forwards.outbound(att, natProto, vmPort);
    if (f !== undefined) {
      f.touch(dst, p.clock);
      if (partial) rewritePartial(dv, ip, l4, proto, IPV4.SRC, nat.addr | 0, f.ext);
      else rewrite(dv, p.u8, ip, l4, proto, IPV4.SRC, nat.addr | 0, f.ext);
      decrementTtl(dv, ip);
      return sendOut(p, nat, off, ip, hl, total, dst, proto);
    }
  }
  let m = nat.flows.outbound(att, natProto, vmPort);
  if (m === undefined) {
    if (natProto === NatProto.TCP && (tcpFlags & (TcpFlag.SYN | TcpFlag.ACK)) !== TcpFlag.SYN)
      return Drop.NAT_TCP_NOT_SYN;
    const made = nat.flows.create(att, natProto, vmPort, p.clock);
    if (typeof made === 'number')
      return made === NoMapping.VM_SHARE_FULL ? Drop.NAT_VM_SHARE_FULL : Drop.NAT_PORTS_EXHAUSTED;
    m = made;
  }
  m.lastSeen = p.clock;
  m.sentTo(dst);
  if (natProto === NatProto.TCP) m.tcpOut(tcpFlags);
  if (partial) rewritePartial(dv, ip, l4, proto, IPV4.SRC, nat.addr | 0, m.extPort);
  else rewrite(dv, p.u8, ip, l4, proto, IPV4.SRC, nat.addr | 0, m.extPort);
  decrementTtl(dv, ip);
  return sendOut(p, nat, off, ip, hl, total, dst, proto);
}

/**
 * Whether a VM's frame with offloads (its virtio header at `h`) is what softnet can carry: an aggregate is
 * TCP, whole, with a segment size; a checksum left to offload is the TCP or UDP one, where the header says.
 */
function checkOffload(
  dv: DataView,
  u8: Uint8Array,
  h: number,
  ip: number,
  hl: number,
  total: number,
  proto: number,
  aggregate: boolean,
): number {
  if (aggregate) {
    const l4 = ip + hl;
    if (proto !== IpProto.TCP || (dv.getUint16(ip + IPV4.FRAG) & 0x3fff) !== 0) return Drop.GSO_UNCUT;
    if (total - hl < tcp.TCP_HEADER_LEN || tcp.headerLen(dv, l4) < tcp.TCP_HEADER_LEN)
      return Drop.TCP_MALFORMED;
    if (dv.getUint16(h + VNET.GSO_SIZE, true) === 0) return Drop.GSO_UNCUT;
  }
  if ((u8[h + VNET.FLAGS] & VNET_F_NEEDS_CSUM) === 0) return Drop.NONE;
  const at = proto === IpProto.TCP ? tcp.TCP.CHECKSUM : proto === IpProto.UDP ? udp.UDP.CHECKSUM : -1;
  // csum_start counts from the start of the Ethernet frame.
  if (at < 0 || dv.getUint16(h + VNET.CSUM_START, true) !== ETH_HEADER_LEN + hl) return Drop.BAD_OFFLOAD;
  if (dv.getUint16(h + VNET.CSUM_OFFSET, true) !== at || ip + hl + at + 2 > ip + total)
    return Drop.BAD_OFFLOAD;
  return Drop.NONE;
}

/**
 * Sends a translated packet (its frame at `off`, IPv4 header at `ip`) out of the uplink: whole through the
 * packet socket when the next hop is known, its virtio header saying what is left to offload; else
 * through the raw socket, an aggregate cut into segments and a checksum filled in first.
 */
export function sendOut(
  p: Pipeline,
  nat: NatUplink,
  off: number,
  ip: number,
  hl: number,
  total: number,
  dst: number,
  proto: number,
): number {
  const u8 = p.u8;
  if (nat.tx !== null && nat.hop!.writeHeader(u8, off, dst)) {
    p.queue(nat.tx, off, ETH_HEADER_LEN + total);
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
  if ((u8[h + VNET.FLAGS] & VNET_F_NEEDS_CSUM) !== 0 && !completeChecksum(p, h, ip, hl, total, proto))
    return Drop.BAD_OFFLOAD;
  p.queue(nat.raw, ip, total);
  return Drop.NONE;
}

/**
 * Whether a packet the VM's rules block answers a client of one of its port forwards: TCP or UDP from the
 * forwarded port to an address the forward talked with, a TCP segment carrying ACK or RST (a SYN alone
 * starts something, and that the rules decide).
 */
function answersForward(
  dv: DataView,
  att: Attachment,
  ip: number,
  hl: number,
  total: number,
  dst: number,
): boolean {
  if (att.forwardIndex.size === 0 || (dv.getUint16(ip + IPV4.FRAG) & 0x1fff) !== 0) return false;
  const proto = dv.getUint8(ip + IPV4.PROTO);
  const l4 = ip + hl;
  let key: number;
  if (proto === IpProto.TCP) {
    if (total - hl < tcp.TCP_HEADER_LEN || (tcp.flags(dv, l4) & (TcpFlag.ACK | TcpFlag.RST)) === 0)
      return false;
    key = (NatProto.TCP << 16) | tcp.srcPort(dv, l4);
  } else if (proto === IpProto.UDP) {
    if (total - hl < udp.UDP_HEADER_LEN) return false;
    key = (NatProto.UDP << 16) | udp.srcPort(dv, l4);
  } else {
    return false;
  }
  return att.forwardIndex.get(key)?.knows(dst) === true;
}

/** Drops a packet the policy blocks, answering it first in reject mode. */
export function blocked(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  ip: number,
  hl: number,
  total: number,
  slot: number,
): number {
  if (att.policy.reject && mayAnswer(p.dv, ip, hl, total)) {
    const out = p.answerOffset(slot);
    const len = emitRejection(p.u8, p.dv, out, ip, hl, total, seg.gatewayMac, att.mac);
    if (len > 0) p.queue(att.port, out, len);
  }
  return Drop.POLICY_BLOCKED;
}

/** Drops a packet for the world while the uplink cannot carry it, answering "network unreachable" in reject mode. */
function held(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  ip: number,
  hl: number,
  total: number,
  slot: number,
): number {
  if (att.policy.reject && mayAnswer(p.dv, ip, hl, total))
    answer(p, seg, att, ip, total, slot, IcmpType.DEST_UNREACHABLE, ICMP_NET_UNREACHABLE, 0);
  return Drop.UPLINK_HELD;
}

/**
 * Whether a blocked packet may be answered (RFC 1122 3.2.2, RFC 1812 4.3.2.7): not when it was sent to a
 * broadcast or multicast address, is a later fragment, or is itself an ICMP error.
 */
function mayAnswer(dv: DataView, ip: number, hl: number, total: number): boolean {
  const dst = dv.getUint32(ip + IPV4.DST);
  if (dst >= 0xe0000000) return false;
  if ((dv.getUint16(ip + IPV4.FRAG) & 0x1fff) !== 0) return false;
  if (dv.getUint8(ip + IPV4.PROTO) === IpProto.ICMP) {
    return total - hl >= ICMP_HEADER_LEN && dv.getUint8(ip + hl) === IcmpType.ECHO_REQUEST;
  }
  return true;
}

/** SYN with FIN or RST, or none of SYN, FIN, RST, ACK: no TCP stack sends these (scans and attacks do). */
export function badFlags(f: number): boolean {
  if (f & TcpFlag.SYN && f & (TcpFlag.FIN | TcpFlag.RST)) return true;
  return (f & (TcpFlag.SYN | TcpFlag.FIN | TcpFlag.RST | TcpFlag.ACK)) === 0;
}

function answer(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  ip: number,
  total: number,
  slot: number,
  type: number,
  code: number,
  rest: number,
): void {
  const out = p.answerOffset(slot);
  p.queue(
    att.port,
    out,
    emitIcmpError(p.u8, p.dv, out, ip, total, type, code, rest, seg.gatewayMac, att.mac, seg.cfg.gateway),
  );
}
