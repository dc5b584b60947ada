// A bridge network's frames. A VM's frame is checked as on any network, then goes to the LAN from the
// VM's external MAC, or, as a switch would, straight to another VM of the network when it is for that
// VM's external MAC. A frame from the LAN goes to the VM whose external MAC it is for, at the VM's own
// MAC, and a broadcast or multicast one to every VM. DHCP is relayed and snooped on the way
// (bridge-dhcp.ts).
//
// A fanned-out frame is queued on every port from its one slot, never copied: every recipient of a
// broadcast sees the same bytes, and only a frame with a single recipient is rewritten for it.

import type { Attachment } from '../net/attachment.js';
import type { BridgeLan } from '../net/bridge-lan.js';
import { DHCP_CLIENT_PORT, DHCP_SERVER_PORT } from '../services/dhcp.js';
import { Drop } from '../stats/drops.js';
import * as arp from '../wire/arp.js';
import { ARP, ARP_LEN, ArpOp } from '../wire/arp.js';
import { ETH, ETH_HEADER_LEN, EtherType, isGroupMac, sameMac, writeMac } from '../wire/ethernet.js';
import * as ipv4 from '../wire/ipv4.js';
import { IpProto } from '../wire/ipv4.js';
import * as udp from '../wire/udp.js';
import { VNET, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_HDR_LEN } from '../wire/vnet.js';
import { relayFromVm, relayToVm } from './bridge-dhcp.js';
import { unsupportedEtherType } from './ethertype.js';
import { completeChecksum, cutAggregate, forwardFrame, isAggregate, segLens } from './offload.js';
import { type Pipeline, STRIDE } from './pipeline.js';
import type { Segment } from './segment.js';
import { blocked } from './to-world.js';

/** Decides a frame from bridged VM `att` whose Ethernet source was checked; returns Drop.NONE or a reason. */
export function fromVmBridge(
  p: Pipeline,
  seg: Segment,
  att: Attachment,
  off: number,
  len: number,
  slot: number,
): number {
  const lan = seg.lan;
  if (lan === null) return Drop.NO_ROUTE;
  const type = p.dv.getUint16(off + ETH.TYPE);
  if (type === EtherType.IPV4) return vmIpv4(p, seg, lan, att, off, len, slot);
  if (type === EtherType.ARP) return vmArp(p, lan, att, off, len);
  return unsupportedEtherType(type);
}

function vmArp(p: Pipeline, lan: BridgeLan, att: Attachment, off: number, len: number): number {
  const dv = p.dv;
  const u8 = p.u8;
  const a = off + ETH_HEADER_LEN;
  if (!arp.isEthernetIpv4(dv, a, len - ETH_HEADER_LEN)) return Drop.ARP_MALFORMED;
  if (!sameMac(u8, a + ARP.SHA, att.mac)) return Drop.ARP_SPOOFED;
  const op = arp.op(dv, a);
  if (op !== ArpOp.REQUEST && op !== ArpOp.REPLY) return Drop.ARP_MALFORMED;
  // On a LAN the VM answers for itself: requests and replies alike carry its own address, and only a
  // probe (RFC 5227) carries 0.0.0.0.
  const spa = arp.senderIp(dv, a);
  if (spa === 0 ? op !== ArpOp.REQUEST : spa !== att.ip) return Drop.ARP_SPOOFED;
  writeMac(u8, a + ARP.SHA, att.extMac);
  writeMac(u8, off + ETH.SRC, att.extMac);
  return toLan(p, lan, att, off, ETH_HEADER_LEN + ARP_LEN);
}

function vmIpv4(
  p: Pipeline,
  seg: Segment,
  lan: BridgeLan,
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
  const src = ipv4.src(dv, ip);
  const l4 = ip + hl;
  if (ipv4.proto(dv, ip) === IpProto.UDP && !ipv4.isFragment(dv, ip) && total - hl >= udp.UDP_HEADER_LEN) {
    if (udp.dstPort(dv, l4) === DHCP_SERVER_PORT) return relayFromVm(p, lan, att, off, ip, hl, total);
    // A VM is a DHCP client only: what a rogue server in it sends goes nowhere.
    if (udp.srcPort(dv, l4) === DHCP_SERVER_PORT || udp.dstPort(dv, l4) === DHCP_CLIENT_PORT)
      return Drop.DHCP_FROM_SERVER_PORT;
  }
  if (att.ip === 0) return Drop.IP_NO_LEASE;
  if (src !== att.ip) return Drop.IP_SRC_SPOOFED;
  // The LAN is what a bridged VM is for: only the user's own rules block a destination there.
  if (!att.policy.allowsOnLan(ipv4.dst(dv, ip) | 0)) return blocked(p, seg, att, ip, hl, total, slot);
  writeMac(u8, off + ETH.SRC, att.extMac);
  return toLan(p, lan, att, off, ETH_HEADER_LEN + total);
}

/**
 * Sends a VM's frame, its source already the external MAC, where its destination MAC says: another VM of
 * the network, or the LAN (and every other VM, when it is a group address).
 */
function toLan(p: Pipeline, lan: BridgeLan, att: Attachment, off: number, len: number): number {
  const u8 = p.u8;
  const group = isGroupMac(u8, off + ETH.DST);
  const peer = group ? undefined : lan.vmWithMac(u8, off + ETH.DST);
  if (peer !== undefined) {
    if (peer === att) return Drop.DST_MAC_OWN;
    toVm(p, peer, off, len);
    return Drop.NONE;
  }
  // An aggregate from a VM with offloads leaves cut into segments, each within the LAN's MTU.
  if (len > lan.maxFrame && !isAggregate(u8, off)) return Drop.LAN_TOO_BIG;
  if (group) {
    const vms = lan.vms;
    for (let i = 0; i < vms.length; i++) if (vms[i] !== att) forwardFrame(p, vms[i].port, off, len);
  }
  forwardFrame(p, lan.tx, off, len);
  return Drop.NONE;
}

/** Delivers a unicast frame for `vm`'s external MAC at its own: the Ethernet destination, and ARP's target. */
function toVm(p: Pipeline, vm: Attachment, frame: number, len: number): void {
  const u8 = p.u8;
  writeMac(u8, frame + ETH.DST, vm.mac);
  const tha = frame + ETH_HEADER_LEN + ARP.THA;
  if (p.dv.getUint16(frame + ETH.TYPE) === EtherType.ARP && sameMac(u8, tha, vm.extMac))
    writeMac(u8, tha, vm.mac);
  forwardFrame(p, vm.port, frame, len);
}

/** Decides one frame from the LAN's capture socket: a virtio header at `off`, the Ethernet frame after it. */
export function fromLan(p: Pipeline, seg: Segment, off: number, len: number): void {
  const lan = seg.lan;
  if (lan === null) return;
  if (len >= VNET_HDR_LEN && p.u8[off + VNET.GSO_TYPE] !== VNET_GSO_NONE) {
    const at = p.nextSegment();
    const n = cutAggregate(p, off, len);
    if (n === 0) p.drops[Drop.LAN_GSO]++;
    for (let i = 0; i < n; i++) {
      const drop = decideLan(p, lan, at + i * STRIDE, segLens[i]);
      if (drop !== Drop.NONE) p.drops[drop]++;
    }
    return;
  }
  const drop = decideLan(p, lan, off, len);
  if (drop !== Drop.NONE) p.drops[drop]++;
}

function decideLan(p: Pipeline, lan: BridgeLan, off: number, len: number): number {
  const dv = p.dv;
  const u8 = p.u8;
  const frame = off + VNET_HDR_LEN;
  let flen = len - VNET_HDR_LEN;
  if (flen < ETH_HEADER_LEN) return Drop.RUNT;
  // A jumbo frame: no VM port takes one.
  if (flen > STRIDE) return Drop.OVERSIZE;
  // A VM's own frame looped back by the LAN (or a LAN host posing as a VM) would confuse every VM.
  if (lan.vmWithMac(u8, frame + ETH.SRC) !== undefined) return Drop.LAN_SRC_IS_VM;
  const type = dv.getUint16(frame + ETH.TYPE);
  if (type === EtherType.IPV4) {
    const ip = frame + ETH_HEADER_LEN;
    const bad = ipv4.validate(dv, u8, ip, flen - ETH_HEADER_LEN);
    if (bad !== Drop.NONE) return bad;
    const hl = ipv4.headerLen(dv, ip);
    const total = ipv4.totalLen(dv, ip);
    const proto = ipv4.proto(dv, ip);
    if (u8[off + VNET.FLAGS] & VNET_F_NEEDS_CSUM && !completeChecksum(p, off, ip, hl, total, proto))
      return Drop.LAN_BAD_OFFLOAD;
    const l4 = ip + hl;
    if (
      proto === IpProto.UDP &&
      !ipv4.isFragment(dv, ip) &&
      total - hl >= udp.UDP_HEADER_LEN &&
      udp.srcPort(dv, l4) === DHCP_SERVER_PORT &&
      udp.dstPort(dv, l4) === DHCP_CLIENT_PORT
    )
      return relayToVm(p, lan, frame, ip, hl, total);
    flen = ETH_HEADER_LEN + total;
  } else if (type === EtherType.ARP) {
    if (!arp.isEthernetIpv4(dv, frame + ETH_HEADER_LEN, flen - ETH_HEADER_LEN)) return Drop.ARP_MALFORMED;
    flen = ETH_HEADER_LEN + ARP_LEN;
  } else {
    return unsupportedEtherType(type);
  }
  if (isGroupMac(u8, frame + ETH.DST)) {
    const vms = lan.vms;
    if (vms.length === 0) return Drop.LAN_DST_NOT_VM;
    for (let i = 0; i < vms.length; i++) p.queue(vms[i].port, frame, flen);
    return Drop.NONE;
  }
  const vm = lan.vmWithMac(u8, frame + ETH.DST);
  if (vm === undefined) return Drop.LAN_DST_NOT_VM;
  toVm(p, vm, frame, flen);
  return Drop.NONE;
}
