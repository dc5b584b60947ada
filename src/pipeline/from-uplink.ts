// A packet captured on the uplink for the NAT address: find its mapping (or the port forward of its
// destination port), check the filter, translate it back to the VM, rewrite its Ethernet header for the VM,
// and send it to the VM's port.

import { MappingKind, type NatOwner, NatProto } from '../nat/flows.js';
import { decrementTtl, rewrite, rewritePartial } from '../nat/translate.js';
import type { NatUplink } from '../nat/uplink.js';
import type { Port } from '../ports/port.js';
import { Drop } from '../stats/drops.js';
import { checksum, partialPseudo, update16, update32 } from '../wire/checksum.js';
import { ETH_HEADER_LEN, EtherType, emitEthernet } from '../wire/ethernet.js';
import { ICMP, ICMP_HEADER_LEN, IcmpType } from '../wire/icmp.js';
import * as ipv4 from '../wire/ipv4.js';
import { IPV4, IPV4_HEADER_LEN, IpProto } from '../wire/ipv4.js';
import { TCP } from '../wire/tcp.js';
import { UDP } from '../wire/udp.js';
import { VNET, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_HDR_LEN } from '../wire/vnet.js';
import { fromWorld64, icmpError64 } from './from-world64.js';
import { completeChecksum, cutAggregate, segLens } from './offload.js';
import { type Pipeline, STRIDE } from './pipeline.js';

/** What comes before a captured IPv4 packet: the virtio header, then the uplink's Ethernet header. */
const PREFIX = VNET_HDR_LEN + ETH_HEADER_LEN;

/** What decide() says of an aggregate the VM it is for cannot take whole: cut it, then decide each segment. */
const CUT_FIRST = -1;
/** What readyFor() says besides drop reasons and CUT_FIRST: the checksum is whole, or left to offload. */
const WHOLE = -2;
const PARTIAL = -3;

/**
 * Decides one frame from the uplink's packet socket: a virtio header at `off`, the Ethernet frame after it.
 * The frame's own Ethernet header is rewritten for the VM, so it goes out from where it came in, its
 * virtio header with it: an aggregate (GRO, a local sender's TSO) goes whole to a VM whose port has
 * virtio headers, its checksum left to offload, and is cut into segments for any other.
 */
export function fromUplink(p: Pipeline, nat: NatUplink, off: number, len: number): void {
  const drop = len < PREFIX ? Drop.RUNT : decide(p, nat, off, len);
  if (drop === CUT_FIRST) segmentThen(p, nat, off, len);
  else if (drop !== Drop.NONE) p.drops[drop]++;
}

/** Cuts an aggregate into MTU-sized segments (in the addon) and decides each. */
function segmentThen(p: Pipeline, nat: NatUplink, off: number, len: number): void {
  const at = p.nextSegment();
  const n = cutAggregate(p, off, len);
  if (n === 0) {
    p.drops[Drop.UPLINK_GSO]++;
    return;
  }
  for (let i = 0; i < n; i++) {
    const drop = decide(p, nat, at + i * STRIDE, segLens[i]);
    if (drop !== Drop.NONE) p.drops[drop]++;
  }
}

/**
 * Readies a TCP/UDP packet for the port of the VM it goes to: an aggregate for a port without virtio
 * headers must be cut first (CUT_FIRST); a checksum left to offload is filled in unless that port takes it
 * as it is; an aggregate for a port with virtio headers leaves its checksum to offload, its field holding
 * the pseudo-header's sum. Returns PARTIAL when the checksum is left to offload (rewrite it as a partial
 * sum), WHOLE when it is whole, CUT_FIRST, or a drop reason.
 */
function readyFor(
  p: Pipeline,
  port: Port,
  off: number,
  ip: number,
  hl: number,
  total: number,
  proto: number,
): number {
  const u8 = p.u8;
  const partial = (u8[off + VNET.FLAGS] & VNET_F_NEEDS_CSUM) !== 0;
  if (u8[off + VNET.GSO_TYPE] !== VNET_GSO_NONE) {
    if (!port.vnet || proto !== IpProto.TCP) return CUT_FIRST;
    if (!partial) {
      const dv = p.dv;
      dv.setUint16(
        ip + hl + TCP.CHECKSUM,
        partialPseudo(ipv4.src(dv, ip), ipv4.dst(dv, ip), proto, total - hl),
      );
      u8[off + VNET.FLAGS] = VNET_F_NEEDS_CSUM;
      dv.setUint16(off + VNET.CSUM_START, ETH_HEADER_LEN + hl, true);
      dv.setUint16(off + VNET.CSUM_OFFSET, TCP.CHECKSUM, true);
    }
    return PARTIAL;
  }
  if (!partial) return WHOLE;
  if (port.vnet) return PARTIAL;
  return completeChecksum(p, off, ip, hl, total, proto) ? WHOLE : Drop.UPLINK_BAD_OFFLOAD;
}

function natProtoOf(proto: number): number {
  if (proto === IpProto.TCP) return NatProto.TCP;
  if (proto === IpProto.UDP) return NatProto.UDP;
  if (proto === IpProto.ICMP) return NatProto.ICMP;
  return -1;
}

function decide(p: Pipeline, nat: NatUplink, off: number, frameLen: number): number {
  const dv = p.dv;
  const u8 = p.u8;
  const ip = off + PREFIX;
  const aggregate = u8[off + VNET.GSO_TYPE] !== VNET_GSO_NONE;
  const bad = ipv4.validate(dv, u8, ip, frameLen - PREFIX);
  // An aggregate whose header does not add up is left to the cutting, which makes each segment's anew.
  if (bad !== Drop.NONE) return aggregate ? CUT_FIRST : bad;
  if (ipv4.dst(dv, ip) !== nat.addr) return Drop.UPLINK_NOT_OURS;
  // A router does not forward what has no hop left; the VM would see it wrapped round to 255.
  if (dv.getUint8(ip + IPV4.TTL) <= 1) return Drop.TTL_EXCEEDED;
  const hl = ipv4.headerLen(dv, ip);
  const total = ipv4.totalLen(dv, ip);
  const proto = ipv4.proto(dv, ip);
  const frag = dv.getUint16(ip + IPV4.FRAG);
  const natProto = natProtoOf(proto);
  if (aggregate && (natProto !== NatProto.TCP || (frag & 0x3fff) !== 0)) return CUT_FIRST;
  // A whole TCP or UDP packet's checksum is dealt with once its VM is known (readyFor); the rest's now.
  const late = (frag & 0x1fff) === 0 && (natProto === NatProto.TCP || natProto === NatProto.UDP);
  if (!late && u8[off + VNET.FLAGS] & VNET_F_NEEDS_CSUM && !completeChecksum(p, off, ip, hl, total, proto))
    return Drop.UPLINK_BAD_OFFLOAD;
  if ((frag & 0x1fff) !== 0) return laterFragment(p, nat, ip, total, proto);
  const l4 = ip + hl;
  const l4len = total - hl;
  if (natProto < 0) return Drop.UPLINK_NO_MAPPING;
  if (natProto === NatProto.ICMP) {
    if (l4len < ICMP_HEADER_LEN) return Drop.ICMP_MALFORMED;
    const type = dv.getUint8(l4 + ICMP.TYPE);
    if (type !== IcmpType.ECHO_REPLY) return icmpError(p, nat, ip, hl, total, type);
  } else if (natProto === NatProto.TCP) {
    const doff = (dv.getUint8(l4 + TCP.DATA_OFF) >>> 4) << 2;
    if (l4len < 20 || doff < 20 || doff > l4len) return Drop.TCP_MALFORMED;
  } else {
    const ulen = l4len < 8 ? 0 : dv.getUint16(l4 + UDP.LEN);
    if (l4len < 8 || ulen < 8 || ((frag & 0x2000) === 0 && ulen > l4len)) return Drop.UDP_MALFORMED;
  }

  const extPort = natProto === NatProto.ICMP ? dv.getUint16(l4 + ICMP.ID) : dv.getUint16(l4 + 2);
  const m = nat.flows.inbound(natProto, extPort);
  if (m === undefined) {
    if (natProto === NatProto.ICMP) return Drop.UPLINK_NO_MAPPING;
    return forwardIn(p, nat, off, ip, l4, hl, total, proto, natProto, extPort, frag);
  }
  if (!m.admits(ipv4.src(dv, ip) | 0)) return Drop.UPLINK_FILTERED;
  if (m.kind === MappingKind.NAT64) {
    // Translated into a slot of its own, whole: an aggregate is cut, a checksum left to offload filled in.
    if (aggregate) return CUT_FIRST;
    if (u8[off + VNET.FLAGS] & VNET_F_NEEDS_CSUM && !completeChecksum(p, off, ip, hl, total, proto))
      return Drop.UPLINK_BAD_OFFLOAD;
    m.lastSeen = p.clock;
    if (natProto === NatProto.TCP) m.tcpIn(dv.getUint8(l4 + TCP.FLAGS));
    return fromWorld64(p, ip, hl, total, natProto, m);
  }
  const att = m.owner;
  if (att.ip === 0 || att.port.closed) return Drop.UPLINK_VM_GONE;
  const ready = late ? readyFor(p, att.port, off, ip, hl, total, proto) : WHOLE;
  if (ready !== WHOLE && ready !== PARTIAL) return ready;
  m.lastSeen = p.clock;
  if (natProto === NatProto.TCP) m.tcpIn(dv.getUint8(l4 + TCP.FLAGS));
  if (frag & 0x2000)
    nat.fragments.remember(ipv4.src(dv, ip) | 0, proto, dv.getUint16(ip + IPV4.ID), att, p.clock);
  if (ready === PARTIAL) rewritePartial(dv, ip, l4, proto, IPV4.DST, att.ip | 0, m.vmPort);
  else rewrite(dv, p.u8, ip, l4, proto, IPV4.DST, att.ip | 0, m.vmPort);
  decrementTtl(dv, ip);
  toVm(p, att, ip, total);
  return Drop.NONE;
}

/**
 * A TCP or UDP packet for a port outside the NAT range: a port forward's, from anyone. It goes to the VM's
 * address of the moment, its source kept, and the forward remembers the sender as one the VM may answer.
 */
function forwardIn(
  p: Pipeline,
  nat: NatUplink,
  off: number,
  ip: number,
  l4: number,
  hl: number,
  total: number,
  proto: number,
  natProto: number,
  ext: number,
  frag: number,
): number {
  const f = nat.forwards.inbound(natProto, ext);
  if (f === undefined) return Drop.UPLINK_NO_MAPPING;
  const att = f.owner;
  if (att.port.closed) return Drop.UPLINK_VM_GONE;
  if (att.ip === 0) return Drop.FORWARD_NO_ADDRESS;
  const ready = (frag & 0x1fff) === 0 ? readyFor(p, att.port, off, ip, hl, total, proto) : WHOLE;
  if (ready !== WHOLE && ready !== PARTIAL) return ready;
  const dv = p.dv;
  f.touch(ipv4.src(dv, ip) | 0, p.clock);
  if (frag & 0x2000)
    nat.fragments.remember(ipv4.src(dv, ip) | 0, proto, dv.getUint16(ip + IPV4.ID), att, p.clock);
  if (ready === PARTIAL) rewritePartial(dv, ip, l4, proto, IPV4.DST, att.ip | 0, f.int);
  else rewrite(dv, p.u8, ip, l4, proto, IPV4.DST, att.ip | 0, f.int);
  decrementTtl(dv, ip);
  toVm(p, att, ip, total);
  return Drop.NONE;
}

/** A fragment after the first: it goes where its first fragment went, only its destination rewritten. */
function laterFragment(p: Pipeline, nat: NatUplink, ip: number, total: number, proto: number): number {
  const dv = p.dv;
  const att = nat.fragments.find(ipv4.src(dv, ip) | 0, proto, dv.getUint16(ip + IPV4.ID));
  if (att === undefined) return Drop.UPLINK_FRAGMENT;
  if (att.ip === 0 || att.port.closed) return Drop.UPLINK_VM_GONE;
  rewrite(dv, p.u8, ip, -1, proto, IPV4.DST, att.ip | 0, 0);
  decrementTtl(dv, ip);
  toVm(p, att, ip, total);
  return Drop.NONE;
}

function toVm(p: Pipeline, att: NatOwner, ip: number, total: number): void {
  const frame = ip - ETH_HEADER_LEN;
  emitEthernet(p.u8, frame, att.mac, 0, att.gatewayMac, EtherType.IPV4);
  p.queue(att.port, frame, ETH_HEADER_LEN + total);
}

/**
 * An ICMP error (unreachable, time exceeded, parameter problem) about a packet softnet translated: the
 * quoted packet names the mapping (or the port forward) by its source port (or echo id). Both the outer
 * destination and the quoted source go back to the VM's, and the ICMP checksum is recomputed over the
 * small message.
 */
function icmpError(p: Pipeline, nat: NatUplink, ip: number, hl: number, total: number, type: number): number {
  if (type !== IcmpType.DEST_UNREACHABLE && type !== IcmpType.TIME_EXCEEDED && type !== 12)
    return Drop.NAT_ICMP_TYPE;
  const dv = p.dv;
  const icmp = ip + hl;
  const inner = icmp + ICMP_HEADER_LEN;
  const end = ip + total;
  if (inner + IPV4_HEADER_LEN > end) return Drop.ICMP_MALFORMED;
  const ihl = ipv4.headerLen(dv, inner);
  const innerL4 = inner + ihl;
  if (ihl < IPV4_HEADER_LEN || innerL4 + 8 > end || ipv4.src(dv, inner) !== nat.addr)
    return Drop.ICMP_MALFORMED;
  const innerProto = ipv4.proto(dv, inner);
  const natProto = natProtoOf(innerProto);
  if (natProto < 0) return Drop.UPLINK_NO_MAPPING;
  const extPort = natProto === NatProto.ICMP ? dv.getUint16(innerL4 + ICMP.ID) : dv.getUint16(innerL4);
  const m = nat.flows.inbound(natProto, extPort);
  let att: NatOwner;
  let vmPort: number;
  if (m !== undefined) {
    if (!m.admits(ipv4.dst(dv, inner))) return Drop.UPLINK_FILTERED;
    if (m.kind === MappingKind.NAT64) return icmpError64(p, ip, total, icmp, inner, m);
    att = m.owner;
    vmPort = m.vmPort;
  } else {
    const f = natProto === NatProto.ICMP ? undefined : nat.forwards.inbound(natProto, extPort);
    if (f === undefined) return Drop.UPLINK_NO_MAPPING;
    // About what the VM sent from the forward's port: only to an address the forward talked with.
    if (!f.knows(ipv4.dst(dv, inner) | 0)) return Drop.UPLINK_FILTERED;
    att = f.owner;
    vmPort = f.int;
  }
  if (att.ip === 0 || att.port.closed) return Drop.UPLINK_VM_GONE;

  // The quoted packet: source address and port back to the VM's; its header checksum, and its transport
  // checksum when the quote holds it, follow.
  const oldSrc = dv.getUint32(inner + IPV4.SRC);
  dv.setUint32(inner + IPV4.SRC, att.ip);
  dv.setUint16(inner + IPV4.CHECKSUM, update32(dv.getUint16(inner + IPV4.CHECKSUM), oldSrc, att.ip));
  if (natProto === NatProto.ICMP) {
    dv.setUint16(innerL4 + ICMP.ID, vmPort);
    if (innerL4 + ICMP.CHECKSUM + 2 <= end) {
      dv.setUint16(innerL4 + ICMP.CHECKSUM, update16(dv.getUint16(innerL4 + ICMP.CHECKSUM), extPort, vmPort));
    }
  } else {
    dv.setUint16(innerL4, vmPort);
    const at = innerL4 + (natProto === NatProto.TCP ? TCP.CHECKSUM : UDP.CHECKSUM);
    if (at + 2 <= end && !(natProto === NatProto.UDP && dv.getUint16(at) === 0)) {
      dv.setUint16(at, update16(update32(dv.getUint16(at), oldSrc, att.ip), extPort, vmPort));
    }
  }
  const oldDst = dv.getUint32(ip + IPV4.DST);
  dv.setUint32(ip + IPV4.DST, att.ip);
  dv.setUint16(ip + IPV4.CHECKSUM, update32(dv.getUint16(ip + IPV4.CHECKSUM), oldDst, att.ip));
  dv.setUint16(icmp + ICMP.CHECKSUM, 0);
  dv.setUint16(icmp + ICMP.CHECKSUM, checksum(p.u8, icmp, total - hl));
  decrementTtl(dv, ip);
  toVm(p, att, ip, total);
  return Drop.NONE;
}
