// A frame from a VM: source checks, then the gateway's own services, the host link, or the world; a
// bridged VM's frame goes its own way (bridge.ts). Every frame ends here either queued on a port or
// counted under a drop reason.

import { type Attachment, AttType } from '../net/attachment.js';
import { inSubnet } from '../net/network.js';
import { answerArpInPlace } from '../services/arp.js';
import { DHCP_CLIENT_PORT, DHCP_SERVER_PORT, emitDhcpFrame } from '../services/dhcp.js';
import { answerEchoInPlace } from '../services/icmp.js';
import { Drop } from '../stats/drops.js';
import { monotonicMs } from '../util/clock.js';
import * as arp from '../wire/arp.js';
import { checksum } from '../wire/checksum.js';
import { parseDhcp } from '../wire/dhcp.js';
import { ETH, ETH_HEADER_LEN, EtherType, isBroadcastMac, sameMac, writeMac } from '../wire/ethernet.js';
import { ICMP_HEADER_LEN, IcmpType, icmpType } from '../wire/icmp.js';
import * as ipv4 from '../wire/ipv4.js';
import { IpProto } from '../wire/ipv4.js';
import * as udp from '../wire/udp.js';
import { fromVmBridge } from './bridge.js';
import { checkDhcpClient } from './dhcp-client.js';
import { unsupportedEtherType } from './ethertype.js';
import { fromVmIpv6 } from './from-vm6.js';
import { forwardFrame } from './offload.js';
import type { Pipeline } from './pipeline.js';
import type { Segment } from './segment.js';
import { blocked, toWorld } from './to-world.js';

const LIMITED_BROADCAST = 0xffffffff;

/** Decides one frame received from `att`'s port. */
export function fromVm(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  off: number,
  len: number,
  slot: number,
): void {
  const drop = decide(p, seg, att, off, len, slot);
  if (drop !== Drop.NONE) p.drops[drop]++;
}

function decide(p: Pipeline, seg: Segment, att: Attachment, off: number, len: number, slot: number): number {
  if (len < ETH_HEADER_LEN) return Drop.RUNT;
  if (att.type === AttType.DISCONNECTED) return Drop.VM_DISCONNECTED;
  const u8 = p.u8;
  if (!sameMac(u8, off + ETH.SRC, att.mac)) return Drop.SRC_MAC_SPOOFED;
  if (att.type === AttType.BRIDGE) return fromVmBridge(p, seg, att, off, len, slot);
  const type = p.dv.getUint16(off + ETH.TYPE);
  if (seg.cfg.ipv6Only && (type === EtherType.IPV4 || type === EtherType.ARP)) return Drop.IPV4_OFF;
  if (type === EtherType.IPV4) return fromVmIpv4(p, seg, att, off, len, slot);
  if (type === EtherType.ARP) return fromVmArp(p, seg, att, off, len);
  if (type === EtherType.IPV6)
    return seg.cfg.v6 === null ? Drop.IP6_OFF : fromVmIpv6(p, seg, att, off, len, slot);
  return unsupportedEtherType(type);
}

function fromVmArp(p: Pipeline, seg: Segment, att: Attachment, off: number, len: number): number {
  const dv = p.dv;
  const a = off + ETH_HEADER_LEN;
  if (!arp.isEthernetIpv4(dv, a, len - ETH_HEADER_LEN)) return Drop.ARP_MALFORMED;
  if (!sameMac(p.u8, a + arp.ARP.SHA, att.mac)) return Drop.ARP_SPOOFED;
  const spa = arp.senderIp(dv, a);
  // A probe (RFC 5227) has sender 0.0.0.0; anything else must be the VM's own leased address.
  if (spa !== 0 && spa !== att.ip) return Drop.ARP_SPOOFED;
  if (arp.op(dv, a) !== arp.ArpOp.REQUEST) return Drop.ARP_REPLY;
  const tpa = arp.targetIp(dv, a);
  if (tpa === seg.cfg.gateway) {
    p.queue(att.port, off, answerArpInPlace(p.u8, dv, off, seg.gatewayMac));
    return Drop.NONE;
  }
  if (spa === tpa && spa !== 0) return Drop.ARP_ANNOUNCE;
  // Another VM the rules let this one reach is a neighbour, known by its external MAC as the host knows it.
  const peer = spa === 0 ? undefined : seg.vmAt(tpa);
  if (
    peer === undefined ||
    peer === att ||
    peer.type === AttType.DISCONNECTED ||
    !att.policy.allowsVm(tpa | 0)
  )
    return Drop.ARP_NOT_GATEWAY;
  p.queue(att.port, off, answerArpInPlace(p.u8, dv, off, peer.extMac));
  return Drop.NONE;
}

function fromVmIpv4(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  off: number,
  len: number,
  slot: number,
): number {
  const dv = p.dv;
  const u8 = p.u8;
  const ip = off + ETH_HEADER_LEN;
  const bad = ipv4.validate(dv, u8, ip, len - ETH_HEADER_LEN);
  if (bad !== Drop.NONE) return bad;
  const hl = ipv4.headerLen(dv, ip);
  const total = ipv4.totalLen(dv, ip);
  const proto = ipv4.proto(dv, ip);
  const src = ipv4.src(dv, ip);
  const dst = ipv4.dst(dv, ip);
  const l4 = ip + hl;
  const l4len = total - hl;
  const fragment = ipv4.isFragment(dv, ip);

  if (proto === IpProto.UDP && !fragment && l4len >= udp.UDP_HEADER_LEN) {
    if (udp.dstPort(dv, l4) === DHCP_SERVER_PORT) return fromVmDhcp(p, seg, att, off, hl, total, dst, slot);
    // A VM is a DHCP client only: what a rogue server in it sends goes nowhere.
    if (udp.srcPort(dv, l4) === DHCP_SERVER_PORT || udp.dstPort(dv, l4) === DHCP_CLIENT_PORT)
      return Drop.DHCP_FROM_SERVER_PORT;
  }
  if (att.ip === 0) return Drop.IP_NO_LEASE;
  if (src !== att.ip) return Drop.IP_SRC_SPOOFED;
  if (dst !== seg.cfg.gateway) {
    // `| 0`: an address above 2^31 crossing a call V8 did not inline would be a heap number a frame.
    if (inSubnet(seg.cfg, dst | 0)) return toOtherVm(p, seg, att, off, ip, hl, total, slot);
    return toWorld(p, seg, att, off, ip, hl, total, slot);
  }
  if (!att.policy.allows(dst | 0)) return blocked(p, seg, att, ip, hl, total, slot);
  if (!sameMac(u8, off + ETH.DST, seg.gatewayMac)) return Drop.DST_MAC_FOREIGN;

  if (proto === IpProto.ICMP && !fragment) {
    if (l4len < ICMP_HEADER_LEN) return Drop.ICMP_MALFORMED;
    if (icmpType(dv, l4) === IcmpType.ECHO_REQUEST) {
      if (checksum(u8, l4, l4len) !== 0) return Drop.ICMP_BAD_CHECKSUM;
      p.queue(att.port, off, answerEchoInPlace(u8, dv, off, ip, l4, total, seg.gatewayMac));
      return Drop.NONE;
    }
  }
  // Everything else for the gateway is for the host itself: the frame goes to the host link from the VM's
  // external MAC, trimmed of Ethernet padding.
  writeMac(u8, off + ETH.SRC, att.extMac);
  forwardFrame(p, seg.hostLink, off, ETH_HEADER_LEN + total);
  return Drop.NONE;
}

/**
 * A packet for another address of the VM's own subnet: delivered to the VM holding it when this VM's rules
 * allow that address, as a switch would: from this VM's external MAC to the other's internal one.
 */
function toOtherVm(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  off: number,
  ip: number,
  hl: number,
  total: number,
  slot: number,
): number {
  const u8 = p.u8;
  const dst = p.dv.getUint32(ip + ipv4.IPV4.DST) | 0;
  if (!att.policy.allowsVm(dst)) {
    blocked(p, seg, att, ip, hl, total, slot);
    return Drop.OTHER_VM;
  }
  const peer = seg.vmAt(dst);
  if (peer === undefined || peer === att || peer.type === AttType.DISCONNECTED) return Drop.NO_SUCH_VM;
  if (!sameMac(u8, off + ETH.DST, peer.extMac)) return Drop.DST_MAC_FOREIGN;
  writeMac(u8, off + ETH.DST, peer.mac);
  writeMac(u8, off + ETH.SRC, att.extMac);
  forwardFrame(p, peer.port, off, ETH_HEADER_LEN + total);
  return Drop.NONE;
}

function fromVmDhcp(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  off: number,
  hl: number,
  total: number,
  dst: number,
  slot: number,
): number {
  const dv = p.dv;
  const u8 = p.u8;
  const ip = off + ETH_HEADER_LEN;
  const checked = checkDhcpClient(p, att, off, ip, hl, total);
  if (checked !== Drop.NONE) return checked;
  const l4 = ip + hl;
  const ulen = udp.udpLen(dv, l4);
  if (dst !== LIMITED_BROADCAST && dst !== seg.cfg.gateway) return Drop.DHCP_OTHER_SERVER;
  if (!isBroadcastMac(u8, off + ETH.DST) && !sameMac(u8, off + ETH.DST, seg.gatewayMac)) {
    return Drop.DST_MAC_FOREIGN;
  }
  const parsed = parseDhcp(u8, l4 + udp.UDP_HEADER_LEN, ulen - udp.UDP_HEADER_LEN);
  if (!parsed.ok) return parsed.reason;
  const out = seg.dhcp.handle(parsed.msg, att, monotonicMs());
  if (typeof out === 'number') return out;
  const at = p.answerOffset(slot);
  p.queue(att.port, at, emitDhcpFrame(u8, dv, at, out, seg.gatewayMac, seg.cfg.gateway));
  return Drop.NONE;
}
