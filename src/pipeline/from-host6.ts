// An IPv6 frame from the host link: neighbor solicitations for a VM's addresses are answered here with the
// VM's external MAC (the host sees each VM's /64 on-link, through the gateway's /48 there); packets for a
// VM's /64 go to it, their destination MAC translated back to the VM's own.

import { AttType } from '../net/attachment.js';
import { emitNeighborAdvert, ND_HOP_LIMIT } from '../services/ndp.js';
import { Drop } from '../stats/drops.js';
import { ETH, ETH_HEADER_LEN, isGroupMac, sameMac, writeMac } from '../wire/ethernet.js';
import { ICMP6, Icmp6Type, icmp6Checksum, ND } from '../wire/icmpv6.js';
import * as ipv6 from '../wire/ipv6.js';
import { chain, IPV6, NextHeader } from '../wire/ipv6.js';
import { forwardFrame } from './offload.js';
import type { Pipeline } from './pipeline.js';
import type { Segment } from './segment.js';

/** Decides one IPv6 frame from the host link; returns Drop.NONE or why it was dropped. */
export function fromHostIpv6(p: Pipeline, seg: Segment, off: number, len: number, slot: number): number {
  const v6 = seg.cfg.v6;
  if (v6 === null) return Drop.IP6_OFF;
  const dv = p.dv;
  const ip = off + ETH_HEADER_LEN;
  let bad = ipv6.validate(dv, ip, len - ETH_HEADER_LEN);
  if (bad !== Drop.NONE) return bad;
  const total = ipv6.totalLen(dv, ip);
  bad = ipv6.walk(dv, ip, total);
  if (bad !== Drop.NONE) return bad;
  const l4 = chain.l4;
  if (
    chain.proto === NextHeader.ICMPV6 &&
    l4 >= 0 &&
    dv.getUint8(l4 + ICMP6.TYPE) === Icmp6Type.NEIGHBOR_SOLICIT
  )
    return solicitation(p, seg, off, ip, total, l4, slot);
  if (isGroupMac(p.u8, off + ETH.DST)) return Drop.HOST_GROUP;
  const id = vmId(dv, seg, ip + IPV6.DST);
  const att = id === 0 ? undefined : seg.vmAt6(id);
  if (att === undefined || !sameMac(p.u8, off + ETH.DST, att.extMac)) return Drop.HOST_DST_UNKNOWN;
  if (att.type === AttType.DISCONNECTED) return Drop.VM_DISCONNECTED;
  writeMac(p.u8, off + ETH.DST, att.mac);
  forwardFrame(p, att.port, off, ETH_HEADER_LEN + total);
  return Drop.NONE;
}

/** The subnet ID of the address at u8[at] when it is in the network's /48 (0: not a VM's /64). */
function vmId(dv: DataView, seg: Segment, at: number): number {
  const v6 = seg.cfg.v6!;
  const w1 = dv.getInt32(at + 4);
  if (dv.getInt32(at) !== v6.w0 || (w1 & 0xffff0000) !== v6.w1) return 0;
  return w1 & 0xffff;
}

/** The MAC a solicitation came from, copied: the answer is written in another slot, from its own MACs. */
const asker = new Uint8Array(6);

/** The host asks where a VM's address is: at the VM's external MAC, as ARP says for IPv4. */
function solicitation(
  p: Pipeline,
  seg: Segment,
  off: number,
  ip: number,
  total: number,
  l4: number,
  slot: number,
): number {
  const dv = p.dv;
  const len = ip + total - l4;
  if (len < ND.OPTIONS || chain.frag >= 0) return Drop.ND_MALFORMED;
  if (dv.getUint8(ip + IPV6.HOP_LIMIT) !== ND_HOP_LIMIT) return Drop.ND_BAD_HOP_LIMIT;
  if (icmp6Checksum(p.u8, ip, l4, len) !== 0) return Drop.ICMP6_BAD_CHECKSUM;
  const target = l4 + ND.TARGET;
  const id = vmId(dv, seg, target);
  const att = id === 0 ? undefined : seg.vmAt6(id);
  if (att === undefined || att.port.closed || att.type === AttType.DISCONNECTED) return Drop.HOST_ND_NOT_VM;
  asker.set(p.u8.subarray(off + ETH.SRC, off + ETH.SRC + 6));
  const out = p.answerOffset(slot);
  p.queue(
    seg.hostLink,
    out,
    emitNeighborAdvert(p.u8, dv, out, att.extMac, asker, target, ip + IPV6.SRC, false),
  );
  return Drop.NONE;
}
