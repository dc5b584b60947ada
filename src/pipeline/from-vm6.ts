// A VM's IPv6 frame: the roles a VM may never take (router, DHCPv6 server), the gateway's own services at
// fe80::1 (ND, router solicitations, echo, DHCPv6), source checks against the VM's /64, then the host (the
// gateway's ULA address), another VM's /64, or the world through NAT66 (to-world6.ts). Link-local and
// unspecified sources are let through only for what is addressed to the gateway itself: nothing they send
// leaves the VM's link.

import { type Attachment, AttType } from '../net/attachment.js';
import { answerEcho6InPlace, emitIcmp6Error, emitRejection6 } from '../services/icmpv6.js';
import {
  ALL_NODES,
  emitNeighborAdvert,
  emitRouterAdvert,
  GATEWAY_LL,
  ND_HOP_LIMIT,
} from '../services/ndp.js';
import { Drop } from '../stats/drops.js';
import { checksum } from '../wire/checksum.js';
import { ETH, ETH_HEADER_LEN, EtherType, emitEthernet, sameMac, writeMac } from '../wire/ethernet.js';
import { ICMP6, ICMP6_HEADER_LEN, Icmp6Type, icmp6Checksum, ND } from '../wire/icmpv6.js';
import * as ipv6 from '../wire/ipv6.js';
import { chain, IPV6, IPV6_HEADER_LEN, NextHeader, pseudoSum, word } from '../wire/ipv6.js';
import * as udp from '../wire/udp.js';
import { VNET, VNET_F_NEEDS_CSUM, VNET_HDR_LEN } from '../wire/vnet.js';
import { completeChecksum, forwardFrame } from './offload.js';
import type { Pipeline } from './pipeline.js';
import type { Segment } from './segment.js';
import { toWorld6 } from './to-world6.js';
import { toWorld64 } from './to-world64.js';

const LINK_LOCAL = 0xfe800000 | 0;
const DHCP6_CLIENT_PORT = 546;
const DHCP6_SERVER_PORT = 547;
/** ff02::1:2, all DHCPv6 relay agents and servers. */
const ALL_DHCP = Int32Array.of(0xff020000 | 0, 0, 0, 0x00010002);
/** Room the DHCPv6 server has for a reply: the minimum MTU's worth. */
const DHCP6_ROOM = 1200;

/** Decides one IPv6 frame received from `att`'s port (not a bridged VM's). */
export function fromVmIpv6(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  off: number,
  len: number,
  slot: number,
): number {
  const v6 = seg.cfg.v6;
  if (v6 === null || seg.router === null) return Drop.IP6_OFF;
  const dv = p.dv;
  const ip = off + ETH_HEADER_LEN;
  let bad = ipv6.validate(dv, ip, len - ETH_HEADER_LEN);
  if (bad !== Drop.NONE) return bad;
  const total = ipv6.totalLen(dv, ip);
  bad = ipv6.walk(dv, ip, total);
  if (bad !== Drop.NONE) return bad;
  const proto = chain.proto;
  const l4 = chain.l4;
  if (proto === NextHeader.ICMPV6 && l4 >= 0) {
    const type = dv.getUint8(l4 + ICMP6.TYPE);
    // RA guard (RFC 6105): a VM is never a router, whoever it tells.
    if (type === Icmp6Type.ROUTER_ADVERT) return Drop.ND_RA_FROM_VM;
    if (type === Icmp6Type.REDIRECT) return Drop.ND_REDIRECT_FROM_VM;
  }
  if (proto === NextHeader.UDP && l4 >= 0) {
    // RFC 7610: a VM is a DHCPv6 client only.
    const sport = udp.srcPort(dv, l4);
    const dport = udp.dstPort(dv, l4);
    if (sport === DHCP6_SERVER_PORT || dport === DHCP6_CLIENT_PORT) return Drop.DHCP6_FROM_SERVER;
    if (dport === DHCP6_SERVER_PORT && chain.frag < 0)
      return fromVmDhcp6(p, seg, att, off, ip, total, l4, slot);
  }
  const d0 = word(dv, ip, IPV6.DST, 0);
  if (d0 >>> 24 === 0xff) return toGroup(p, seg, att, ip, total, proto, l4, slot);
  const s0 = word(dv, ip, IPV6.SRC, 0);
  const s1 = word(dv, ip, IPV6.SRC, 1);
  const toGateway = ipv6.addrIs(dv, ip, IPV6.DST, GATEWAY_LL[0], GATEWAY_LL[1], GATEWAY_LL[2], GATEWAY_LL[3]);
  if (toGateway) {
    if (!sameMac(p.u8, off + ETH.DST, seg.gatewayMac)) return Drop.DST_MAC_FOREIGN;
    return toGatewayLinkLocal(p, seg, att, off, ip, total, proto, l4, slot);
  }
  if (att.p0 === 0 && att.p1 === 0) return Drop.IP6_NO_PREFIX;
  if (s0 !== att.p0 || s1 !== att.p1) return Drop.IP6_SRC_SPOOFED;
  const s2 = word(dv, ip, IPV6.SRC, 2);
  const s3 = word(dv, ip, IPV6.SRC, 3);
  if (s2 !== att.last2 || s3 !== att.last3) att.noteSource6(s2, s3);
  if (proto === NextHeader.ICMPV6 && l4 >= 0) {
    const type = dv.getUint8(l4 + ICMP6.TYPE);
    if (type >= Icmp6Type.ROUTER_SOLICIT && type <= Icmp6Type.NEIGHBOR_ADVERT) return Drop.ND_NOT_GATEWAY;
  }
  // Other link-local destinations: nobody else is on the VM's link.
  if ((d0 & 0xffc00000) === LINK_LOCAL) return Drop.ND_NOT_GATEWAY;
  if (!sameMac(p.u8, off + ETH.DST, seg.gatewayMac)) return Drop.DST_MAC_FOREIGN;
  const d1 = word(dv, ip, IPV6.DST, 1);
  if (d0 === v6.w0 && (d1 & 0xffff0000) === v6.w1) {
    const id = d1 & 0xffff;
    if (id !== 0) return toOtherVm6(p, seg, att, off, ip, total, proto, l4, slot, id);
    const g = v6.gateway;
    if (!ipv6.addrIs(dv, ip, IPV6.DST, g[0], g[1], g[2], g[3])) return Drop.NO_SUCH_VM;
    if (!att.policy.allows6(g[0], g[1], g[2], g[3])) return blocked6(p, seg, att, ip, total, proto, l4, slot);
    // For the host itself (DNS, services): from the VM's external MAC, as with IPv4.
    writeMac(p.u8, off + ETH.SRC, att.extMac);
    forwardFrame(p, seg.hostLink, off, ETH_HEADER_LEN + total);
    return Drop.NONE;
  }
  const n64 = seg.cfg.nat64;
  if (n64 !== null && d0 === n64[0] && d1 === n64[1] && word(dv, ip, IPV6.DST, 2) === n64[2])
    return toWorld64(p, seg, att, off, ip, total, proto, l4, slot);
  return toWorld6(p, seg, att, off, ip, total, proto, l4, slot);
}

/** Whether the 16 bytes at u8[at] are the VM's own: in its /64, or link-local other than the gateway's. */
function ownAddress(dv: DataView, att: Attachment, at: number): boolean {
  const t0 = dv.getInt32(at);
  const t1 = dv.getInt32(at + 4);
  if (t0 === att.p0 && t1 === att.p1 && (t0 !== 0 || t1 !== 0)) return true;
  if (t0 !== LINK_LOCAL || t1 !== 0) return false;
  return dv.getInt32(at + 8) !== 0 || dv.getInt32(at + 12) !== 1;
}

/** Whether the ICMPv6 message at `l4` is whole, checksummed right, and (for ND) sent with hop limit 255. */
function checkIcmp6(p: Pipeline, ip: number, total: number, l4: number, nd: boolean): number {
  const len = ip + total - l4;
  if (l4 < 0 || chain.frag >= 0 || len < ICMP6_HEADER_LEN) return Drop.ICMP6_MALFORMED;
  if (icmp6Checksum(p.u8, ip, l4, len) !== 0) return Drop.ICMP6_BAD_CHECKSUM;
  if (nd && p.dv.getUint8(ip + IPV6.HOP_LIMIT) !== ND_HOP_LIMIT) return Drop.ND_BAD_HOP_LIMIT;
  return Drop.NONE;
}

/** Multicast from a VM: router solicitations, neighbor solicitations for the gateway, DAD and MLD. */
function toGroup(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  ip: number,
  total: number,
  proto: number,
  l4: number,
  slot: number,
): number {
  if (proto !== NextHeader.ICMPV6) return Drop.IP6_MULTICAST;
  const dv = p.dv;
  const type = l4 < 0 ? -1 : dv.getUint8(l4 + ICMP6.TYPE);
  if (type === Icmp6Type.MLD_REPORT || type === Icmp6Type.MLD_DONE || type === Icmp6Type.MLD2_REPORT)
    return Drop.MLD;
  const nd = type >= Icmp6Type.ROUTER_SOLICIT && type <= Icmp6Type.NEIGHBOR_ADVERT;
  if (!nd) return Drop.IP6_MULTICAST;
  const bad = checkIcmp6(p, ip, total, l4, true);
  if (bad !== Drop.NONE) return bad;
  return neighborDiscovery(p, seg, att, ip, total, l4, type, slot);
}

/** ND messages from a VM, to the gateway or its groups. */
function neighborDiscovery(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  ip: number,
  total: number,
  l4: number,
  type: number,
  slot: number,
): number {
  const dv = p.dv;
  if (!validNdSource(dv, att, ip)) return Drop.IP6_SRC_SPOOFED;
  if (type === Icmp6Type.ROUTER_SOLICIT) {
    if (att.p0 === 0 && att.p1 === 0) return Drop.IP6_NO_PREFIX;
    const out = p.answerOffset(slot);
    const unspecified = ipv6.addrIs(dv, ip, IPV6.SRC, 0, 0, 0, 0);
    // To the soliciting address, or to all nodes when it had none yet; always to this VM's MAC alone.
    const to = unspecified ? ALL_NODES : solicitor.fill(dv, ip);
    p.queue(att.port, out, emitRouterAdvert(p.u8, dv, out, seg.router!, att.mac, to, att.p0, att.p1));
    return Drop.NONE;
  }
  if (ip + total - l4 < ND.OPTIONS) return Drop.ND_MALFORMED;
  const target = l4 + ND.TARGET;
  if (type === Icmp6Type.NEIGHBOR_ADVERT)
    return ownAddress(dv, att, target) ? Drop.ND_ADVERT : Drop.ND_TARGET_NOT_OWN;
  const g = GATEWAY_LL;
  const forGateway =
    dv.getInt32(target) === g[0] &&
    dv.getInt32(target + 4) === g[1] &&
    dv.getInt32(target + 8) === g[2] &&
    dv.getInt32(target + 12) === g[3];
  if (!forGateway) {
    if (ipv6.addrIs(dv, ip, IPV6.SRC, 0, 0, 0, 0))
      return ownAddress(dv, att, target) ? Drop.ND_DAD : Drop.ND_TARGET_NOT_OWN;
    return Drop.ND_NOT_GATEWAY;
  }
  const out = p.answerOffset(slot);
  p.queue(
    att.port,
    out,
    emitNeighborAdvert(p.u8, dv, out, seg.gatewayMac, att.mac, target, ip + IPV6.SRC, true),
  );
  return Drop.NONE;
}

/** The source of an ND message: the unspecified address, link-local, or in the VM's /64. */
function validNdSource(dv: DataView, att: Attachment, ip: number): boolean {
  if (ipv6.addrIs(dv, ip, IPV6.SRC, 0, 0, 0, 0)) return true;
  return ownAddress(dv, att, ip + IPV6.SRC);
}

/** A scratch copy of a solicitation's source, so the advertisement's destination outlives the frame. */
const solicitor = {
  words: new Int32Array(4),
  fill(dv: DataView, ip: number): Int32Array {
    for (let i = 0; i < 4; i++) this.words[i] = dv.getInt32(ip + IPV6.SRC + 4 * i);
    return this.words;
  },
};

/** Unicast to fe80::1: ND, echo; the gateway answers nothing else at its link-local address. */
function toGatewayLinkLocal(
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
  if (proto !== NextHeader.ICMPV6) return Drop.ICMP6_TO_GATEWAY;
  const dv = p.dv;
  const type = l4 < 0 ? -1 : dv.getUint8(l4 + ICMP6.TYPE);
  const nd = type >= Icmp6Type.ROUTER_SOLICIT && type <= Icmp6Type.NEIGHBOR_ADVERT;
  const bad = checkIcmp6(p, ip, total, l4, nd);
  if (bad !== Drop.NONE) return bad;
  if (nd) return neighborDiscovery(p, seg, att, ip, total, l4, type, slot);
  if (type !== Icmp6Type.ECHO_REQUEST) return Drop.ICMP6_TO_GATEWAY;
  if (!ownAddress(dv, att, ip + IPV6.SRC)) return Drop.IP6_SRC_SPOOFED;
  p.queue(att.port, off, answerEcho6InPlace(p.u8, dv, off, ip, l4, total, seg.gatewayMac));
  return Drop.NONE;
}

/**
 * A packet for another VM's /64 on the same network: routed to it when this VM's rules allow that
 * address, from the gateway's MAC to the other VM's own, its hop limit spent.
 */
function toOtherVm6(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  off: number,
  ip: number,
  total: number,
  proto: number,
  l4: number,
  slot: number,
  id: number,
): number {
  const dv = p.dv;
  if (
    !att.policy.allowsVm6(
      word(dv, ip, IPV6.DST, 0),
      word(dv, ip, IPV6.DST, 1),
      word(dv, ip, IPV6.DST, 2),
      word(dv, ip, IPV6.DST, 3),
    )
  ) {
    blocked6(p, seg, att, ip, total, proto, l4, slot);
    return Drop.OTHER_VM;
  }
  const peer = seg.vmAt6(id);
  if (peer === undefined || peer === att || peer.type === AttType.DISCONNECTED) return Drop.NO_SUCH_VM;
  const hop = dv.getUint8(ip + IPV6.HOP_LIMIT);
  if (hop <= 1) {
    routerError(p, seg, att, ip, total, slot, Icmp6Type.TIME_EXCEEDED, 0, 0);
    return Drop.TTL_EXCEEDED;
  }
  dv.setUint8(ip + IPV6.HOP_LIMIT, hop - 1);
  writeMac(p.u8, off + ETH.DST, peer.mac);
  writeMac(p.u8, off + ETH.SRC, seg.gatewayMac);
  forwardFrame(p, peer.port, off, ETH_HEADER_LEN + total);
  return Drop.NONE;
}

/** Sends the VM an ICMPv6 error from the gateway's ULA address, as its router. */
export function routerError(
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
  const len = emitIcmp6Error(
    p.u8,
    p.dv,
    out,
    ip,
    total,
    type,
    code,
    rest,
    seg.gatewayMac,
    att.mac,
    seg.cfg.v6!.gateway,
  );
  p.queue(att.port, out, len);
}

/**
 * Drops a packet the policy blocks, answering it first in reject mode (not an ICMPv6 error, a later
 * fragment or multicast: RFC 4443 2.4 (e)).
 */
export function blocked6(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  ip: number,
  total: number,
  proto: number,
  l4: number,
  slot: number,
): number {
  const dv = p.dv;
  const answerable =
    chain.fragOffset === 0 &&
    dv.getUint8(ip + IPV6.DST) !== 0xff &&
    (proto !== NextHeader.ICMPV6 || (l4 >= 0 && dv.getUint8(l4 + ICMP6.TYPE) >= 128));
  if (att.policy.reject && answerable) {
    const out = p.answerOffset(slot);
    const len = emitRejection6(
      p.u8,
      dv,
      out,
      ip,
      total,
      proto,
      l4,
      seg.gatewayMac,
      att.mac,
      seg.cfg.v6!.gateway,
    );
    if (len > 0) p.queue(att.port, out, len);
  }
  return Drop.POLICY_BLOCKED;
}

/** What the DHCPv6 server is told of the VM asking; one object, filled per message. */
const dhcp6Vm = {
  prefix0: 0,
  prefix1: 0,
  dns: new Int32Array(4) as ArrayLike<number>,
  domain: null as string | null,
  validLifetime: 0,
  preferredLifetime: 0,
};

/** A DHCPv6 client message, from the VM's link-local address to the servers' group or fe80::1. */
function fromVmDhcp6(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  off: number,
  ip: number,
  total: number,
  l4: number,
  slot: number,
): number {
  const dv = p.dv;
  const u8 = p.u8;
  const v6 = seg.cfg.v6!;
  if (seg.dhcp6 === null) return Drop.IP6_OFF;
  // From the VM's own link-local address: not fe80::1, which is the gateway's.
  if (dv.getInt32(ip + IPV6.SRC) !== LINK_LOCAL || !ownAddress(dv, att, ip + IPV6.SRC))
    return Drop.IP6_SRC_SPOOFED;
  const toGroup = ipv6.addrIs(dv, ip, IPV6.DST, ALL_DHCP[0], ALL_DHCP[1], ALL_DHCP[2], ALL_DHCP[3]);
  const toUs = ipv6.addrIs(dv, ip, IPV6.DST, GATEWAY_LL[0], GATEWAY_LL[1], GATEWAY_LL[2], GATEWAY_LL[3]);
  if (!toGroup && !toUs) return Drop.DHCP_OTHER_SERVER;
  const ulen = udp.udpLen(dv, l4);
  if (ulen < udp.UDP_HEADER_LEN || l4 + ulen > ip + total) return Drop.UDP_MALFORMED;
  const h = off - VNET_HDR_LEN;
  if ((u8[h + VNET.FLAGS] & VNET_F_NEEDS_CSUM) !== 0) {
    if (!completeChecksum(p, h, ip, l4 - ip, total, NextHeader.UDP)) return Drop.BAD_OFFLOAD;
  } else if (checksum(u8, l4, ulen, pseudoSum(u8, ip, NextHeader.UDP, ulen)) !== 0) {
    return Drop.UDP_BAD_CHECKSUM;
  }
  dhcp6Vm.prefix0 = att.p0;
  dhcp6Vm.prefix1 = att.p1;
  dhcp6Vm.dns = v6.gateway;
  dhcp6Vm.domain = seg.cfg.domain;
  dhcp6Vm.validLifetime = v6.validLifetime;
  dhcp6Vm.preferredLifetime = v6.preferredLifetime;
  const out = p.answerOffset(slot);
  const rip = out + ETH_HEADER_LEN;
  const rudp = rip + IPV6_HEADER_LEN;
  const msg = rudp + udp.UDP_HEADER_LEN;
  const n = seg.dhcp6.handle(u8, l4 + udp.UDP_HEADER_LEN, ulen - udp.UDP_HEADER_LEN, dhcp6Vm, msg);
  if (n < 0) return -n;
  if (n > DHCP6_ROOM) return Drop.DHCP6_MALFORMED;
  emitEthernet(u8, out, att.mac, 0, seg.gatewayMac, EtherType.IPV6);
  ipv6.writeAddr(dv, rip + IPV6.SRC, GATEWAY_LL[0], GATEWAY_LL[1], GATEWAY_LL[2], GATEWAY_LL[3]);
  u8.copyWithin(rip + IPV6.DST, ip + IPV6.SRC, ip + IPV6.SRC + 16);
  ipv6.emitIpv6(dv, rip, NextHeader.UDP, udp.UDP_HEADER_LEN + n, 255);
  dv.setUint16(rudp, DHCP6_SERVER_PORT);
  dv.setUint16(rudp + 2, DHCP6_CLIENT_PORT);
  dv.setUint16(rudp + 4, udp.UDP_HEADER_LEN + n);
  dv.setUint16(rudp + 6, 0);
  const c = checksum(
    u8,
    rudp,
    udp.UDP_HEADER_LEN + n,
    pseudoSum(u8, rip, NextHeader.UDP, udp.UDP_HEADER_LEN + n),
  );
  dv.setUint16(rudp + 6, c === 0 ? 0xffff : c);
  p.queue(att.port, out, ETH_HEADER_LEN + IPV6_HEADER_LEN + udp.UDP_HEADER_LEN + n);
  return Drop.NONE;
}
