// A VM's packet for anywhere beyond the gateway: policy, the router's duties (TTL, too big), then NAT out
// through the uplink. The packet is rewritten in place and sent from its receive slot, Ethernet header
// left behind.

import { type Attachment, AttType } from '../engine/attachment.js';
import { NatProto, NoMapping } from '../nat/flows.js';
import { decrementTtl, rewrite } from '../nat/translate.js';
import { emitIcmpError } from '../services/icmp.js';
import { emitRejection } from '../services/reject.js';
import { Drop } from '../stats/drops.js';
import { checksum, pseudoHeader } from '../wire/checksum.js';
import { ETH, sameMac } from '../wire/ethernet.js';
import { echoId, ICMP_HEADER_LEN, IcmpType, icmpType } from '../wire/icmp.js';
import { IPV4, IpProto } from '../wire/ipv4.js';
import * as tcp from '../wire/tcp.js';
import { TcpFlag } from '../wire/tcp.js';
import * as udp from '../wire/udp.js';
import type { Pipeline } from './pipeline.js';
import type { Segment } from './segment.js';

const DF = 0x4000;
const ICMP_FRAG_NEEDED = 4;

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
  if (!att.policy.allows(dst)) return blocked(p, seg, att, ip, hl, total, slot);
  if (att.type !== AttType.SHARED) return Drop.HOST_ONLY;
  const nat = seg.nat;
  if (nat === null) return Drop.NO_ROUTE;
  if (!sameMac(u8, off + ETH.DST, seg.gatewayMac)) return Drop.DST_MAC_FOREIGN;
  if (dv.getUint8(ip + IPV4.TTL) <= 1) {
    answer(p, seg, att, ip, total, slot, IcmpType.TIME_EXCEEDED, 0, 0);
    return Drop.TTL_EXCEEDED;
  }
  if (total > nat.mtu) {
    if ((dv.getUint16(ip + IPV4.FRAG) & DF) === 0) return Drop.TOO_BIG;
    answer(p, seg, att, ip, total, slot, IcmpType.DEST_UNREACHABLE, ICMP_FRAG_NEEDED, nat.mtu);
    return Drop.TOO_BIG;
  }

  const proto = dv.getUint8(ip + IPV4.PROTO);
  const fragWord = dv.getUint16(ip + IPV4.FRAG);
  const l4 = ip + hl;
  const l4len = total - hl;
  // A later fragment carries no ports: only its source address changes; the first one updated the
  // transport checksum for the whole datagram.
  if ((fragWord & 0x1fff) !== 0) {
    rewrite(dv, p.u8, ip, -1, proto, IPV4.SRC, nat.addr | 0, 0);
    decrementTtl(dv, ip);
    p.queue(nat.raw, ip, total);
    return Drop.NONE;
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
    if (whole && checksum(u8, l4, l4len, pseudoHeader(src, dst, IpProto.TCP, l4len)) !== 0)
      return Drop.TCP_BAD_CHECKSUM;
    natProto = NatProto.TCP;
    vmPort = tcp.srcPort(dv, l4);
  } else if (proto === IpProto.UDP) {
    if (l4len < udp.UDP_HEADER_LEN) return Drop.UDP_MALFORMED;
    const ulen = udp.udpLen(dv, l4);
    if (whole && (ulen < udp.UDP_HEADER_LEN || ulen > l4len)) return Drop.UDP_MALFORMED;
    if (whole && !udp.checksumOk(dv, u8, l4, ulen, src, dst)) return Drop.UDP_BAD_CHECKSUM;
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
  rewrite(dv, p.u8, ip, l4, proto, IPV4.SRC, nat.addr | 0, m.extPort);
  decrementTtl(dv, ip);
  p.queue(nat.raw, ip, total);
  return Drop.NONE;
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
function badFlags(f: number): boolean {
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
