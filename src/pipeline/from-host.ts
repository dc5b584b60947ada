// A frame from the host link: ARP for a VM is answered here with its external MAC; IPv4 to a VM's leased
// address goes to it, its destination MAC translated back to the VM's internal one.

import { AttType } from '../net/attachment.js';
import { answerArpInPlace } from '../services/arp.js';
import { Drop } from '../stats/drops.js';
import * as arp from '../wire/arp.js';
import { ETH, ETH_HEADER_LEN, EtherType, isGroupMac, sameMac, writeMac } from '../wire/ethernet.js';
import * as ipv4 from '../wire/ipv4.js';
import { unsupportedEtherType } from './ethertype.js';
import { fromHostIpv6 } from './from-host6.js';
import { forwardFrame } from './offload.js';
import type { Pipeline } from './pipeline.js';
import type { Segment } from './segment.js';

/** Decides one frame received from the host link. */
export function fromHost(p: Pipeline, seg: Segment, off: number, len: number, slot: number): void {
  const drop = decide(p, seg, off, len, slot);
  if (drop !== Drop.NONE) p.drops[drop]++;
}

function decide(p: Pipeline, seg: Segment, off: number, len: number, slot: number): number {
  if (len < ETH_HEADER_LEN) return Drop.RUNT;
  const dv = p.dv;
  const type = dv.getUint16(off + ETH.TYPE);
  if (type === EtherType.IPV4) return fromHostIpv4(p, seg, off, len);
  if (type === EtherType.ARP) return fromHostArp(p, seg, off, len);
  if (type === EtherType.IPV6 && seg.cfg.v6 !== null) return fromHostIpv6(p, seg, off, len, slot);
  return isGroupMac(p.u8, off + ETH.DST) ? Drop.HOST_GROUP : unsupportedEtherType(type);
}

function fromHostArp(p: Pipeline, seg: Segment, off: number, len: number): number {
  const dv = p.dv;
  const a = off + ETH_HEADER_LEN;
  if (!arp.isEthernetIpv4(dv, a, len - ETH_HEADER_LEN)) return Drop.ARP_MALFORMED;
  if (arp.op(dv, a) !== arp.ArpOp.REQUEST) return Drop.ARP_REPLY;
  const att = seg.vmAt(arp.targetIp(dv, a));
  if (att === undefined || att.port.closed || att.type === AttType.DISCONNECTED) return Drop.HOST_ARP_NOT_VM;
  p.queue(seg.hostLink, off, answerArpInPlace(p.u8, dv, off, att.extMac));
  return Drop.NONE;
}

function fromHostIpv4(p: Pipeline, seg: Segment, off: number, len: number): number {
  const u8 = p.u8;
  const ip = off + ETH_HEADER_LEN;
  if (isGroupMac(u8, off + ETH.DST)) return Drop.HOST_GROUP;
  const bad = ipv4.validate(p.dv, u8, ip, len - ETH_HEADER_LEN);
  if (bad !== Drop.NONE) return bad;
  const att = seg.vmAt(ipv4.dst(p.dv, ip));
  if (att === undefined || !sameMac(u8, off + ETH.DST, att.extMac)) return Drop.HOST_DST_UNKNOWN;
  if (att.type === AttType.DISCONNECTED) return Drop.VM_DISCONNECTED;
  // The host knows the VM by its external MAC; the guest by its own.
  writeMac(u8, off + ETH.DST, att.mac);
  forwardFrame(p, att.port, off, ETH_HEADER_LEN + ipv4.totalLen(p.dv, ip));
  return Drop.NONE;
}
