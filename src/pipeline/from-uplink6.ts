// An IPv6 packet captured on the uplink for its IPv6 address: its NAT66 mapping, the filter, then back
// to the VM's address of that mapping (the VM's /64 and the interface identifier it sent from) and to the
// VM's port. ICMPv6 errors about a translated packet (packet too big above all: path MTU discovery needs
// it) go back with their quote translated too. The frame goes out from where it came in, its virtio
// header with it: a TCP aggregate (GRO, a local sender's TSO) goes whole to a VM whose port has virtio
// headers, its checksum left to offload, and is cut into segments for any other, as from-uplink.ts does
// for IPv4.

import { NatProto, remoteKey6 } from '../nat/flows.js';
import type { NatUplink6 } from '../nat/uplink.js';
import type { Attachment } from '../net/attachment.js';
import { Drop } from '../stats/drops.js';
import { fold, update16 } from '../wire/checksum.js';
import { ETH_HEADER_LEN, EtherType, emitEthernet } from '../wire/ethernet.js';
import { ICMP6, ICMP6_HEADER_LEN, Icmp6Type, icmp6Checksum } from '../wire/icmpv6.js';
import * as ipv6 from '../wire/ipv6.js';
import { chain, IPV6, IPV6_HEADER_LEN, NextHeader, pseudoSum, word } from '../wire/ipv6.js';
import * as tcp from '../wire/tcp.js';
import * as udp from '../wire/udp.js';
import { VNET, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_HDR_LEN } from '../wire/vnet.js';
import { completeChecksum, cutAggregate, segLens } from './offload.js';
import { type Pipeline, STRIDE } from './pipeline.js';
import { checksumAt, swapAddress6 } from './to-world6.js';

/** What comes before a captured IPv6 packet: the virtio header, then the uplink's Ethernet header. */
const PREFIX = VNET_HDR_LEN + ETH_HEADER_LEN;

/** What decide() says of an aggregate the VM it is for cannot take whole: cut it, then decide each segment. */
const CUT_FIRST = -1;

/** Decides one frame from the uplink's IPv6 packet socket: a virtio header at `off`, the frame after it. */
export function fromUplink6(p: Pipeline, nat: NatUplink6, off: number, len: number): void {
  const drop = len < PREFIX ? Drop.RUNT : decide(p, nat, off, len);
  if (drop === CUT_FIRST) segmentThen(p, nat, off, len);
  else if (drop !== Drop.NONE) p.drops[drop]++;
}

/** Cuts an aggregate into MTU-sized segments (in the addon) and decides each. */
function segmentThen(p: Pipeline, nat: NatUplink6, off: number, len: number): void {
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

function decide(p: Pipeline, nat: NatUplink6, off: number, len: number): number {
  const dv = p.dv;
  const ip = off + PREFIX;
  const aggregate = p.u8[off + VNET.GSO_TYPE] !== VNET_GSO_NONE;
  let bad = ipv6.validate(dv, ip, len - PREFIX);
  // An aggregate whose header does not add up is left to the cutting, which makes each segment's anew.
  if (bad !== Drop.NONE) return aggregate ? CUT_FIRST : bad;
  const a = nat.addr;
  if (!ipv6.addrIs(dv, ip, IPV6.DST, a[0], a[1], a[2], a[3])) return Drop.UPLINK_NOT_OURS;
  const hop = dv.getUint8(ip + IPV6.HOP_LIMIT);
  if (hop <= 1) return Drop.TTL_EXCEEDED;
  const total = ipv6.totalLen(dv, ip);
  bad = ipv6.walk(dv, ip, total);
  if (bad !== Drop.NONE) return bad;
  const proto = chain.proto;
  const l4 = chain.l4;
  // Only a whole TCP aggregate with no extension header goes whole; the cutting refuses any other.
  if (aggregate && (proto !== NextHeader.TCP || l4 !== ip + IPV6_HEADER_LEN)) return CUT_FIRST;
  const srcKey = remoteKey6(
    word(dv, ip, IPV6.SRC, 0),
    word(dv, ip, IPV6.SRC, 1),
    word(dv, ip, IPV6.SRC, 2),
    word(dv, ip, IPV6.SRC, 3),
  );
  if (l4 < 0) return laterFragment(p, nat, ip, total, srcKey, hop);
  const l4len = ip + total - l4;
  let natProto: number;
  let extPort: number;
  if (proto === NextHeader.TCP) {
    if (l4len < tcp.TCP_HEADER_LEN) return Drop.TCP_MALFORMED;
    natProto = NatProto.TCP;
    extPort = tcp.dstPort(dv, l4);
  } else if (proto === NextHeader.UDP) {
    if (l4len < udp.UDP_HEADER_LEN) return Drop.UDP_MALFORMED;
    natProto = NatProto.UDP;
    extPort = udp.dstPort(dv, l4);
  } else if (proto === NextHeader.ICMPV6) {
    if (l4len < ICMP6_HEADER_LEN) return Drop.ICMP6_MALFORMED;
    const type = dv.getUint8(l4 + ICMP6.TYPE);
    if (type !== Icmp6Type.ECHO_REPLY) return icmpError6(p, nat, ip, total, l4, type, hop);
    natProto = NatProto.ICMP;
    extPort = dv.getUint16(l4 + ICMP6.ID);
  } else {
    return Drop.UPLINK_NO_MAPPING;
  }
  const m = nat.flows.inbound(natProto, extPort);
  // Not a mapping's port: maybe a port forward's (outside the NAT range), open to anyone, to the address
  // the VM was last seen sending from.
  const f =
    m === undefined && natProto !== NatProto.ICMP ? nat.forwards.inbound(natProto, extPort) : undefined;
  if (m === undefined && f === undefined) return Drop.UPLINK_NO_MAPPING;
  if (m !== undefined && !m.admits(srcKey)) return Drop.UPLINK_FILTERED;
  const att = (m?.owner ?? f!.owner) as Attachment;
  if ((att.p0 === 0 && att.p1 === 0) || att.port.closed) return Drop.UPLINK_VM_GONE;
  if (m === undefined && att.last2 === 0 && att.last3 === 0) return Drop.FORWARD_NO_ADDRESS;
  const vmPort = m?.vmPort ?? f!.int;
  const iid2 = m?.iid2 ?? att.last2;
  const iid3 = m?.iid3 ?? att.last3;
  if (aggregate && !att.port.vnet) return CUT_FIRST;
  const u8 = p.u8;
  let partial = (u8[off + VNET.FLAGS] & VNET_F_NEEDS_CSUM) !== 0;
  if (partial && !att.port.vnet) {
    if (!completeChecksum(p, off, ip, l4 - ip, total, proto)) return Drop.UPLINK_BAD_OFFLOAD;
    partial = false;
  }
  // An aggregate whose checksum the kernel verified (GRO) holds its first segment's in the field, wrong
  // for the whole: it leaves to offload too, the field made the pseudo-header's sum once translated.
  const fresh = aggregate && !partial;
  if (m !== undefined) {
    m.lastSeen = p.clock;
    if (natProto === NatProto.TCP) m.tcpIn(tcp.flags(dv, l4));
  } else {
    f!.touch(srcKey, p.clock);
  }
  if (chain.frag >= 0 && chain.more)
    nat.fragments.remember(srcKey, 0, chain.fragId, att, p.clock, iid2, iid3);
  const sum = checksumAt(proto, l4);
  swapAddress6(dv, ip, IPV6.DST, att.p0, att.p1, iid2, iid3, fresh ? -1 : sum, partial);
  const portAt = natProto === NatProto.ICMP ? l4 + ICMP6.ID : l4 + 2;
  dv.setUint16(portAt, vmPort);
  if (fresh) leaveToOffload(p, off, ip, l4, total);
  // A UDP checksum of 0 means none only in IPv4; here it is malformed, and left for the VM to drop.
  else if (!partial) dv.setUint16(sum, update16(dv.getUint16(sum), extPort, vmPort));
  dv.setUint8(ip + IPV6.HOP_LIMIT, hop - 1);
  toVm(p, att, ip, total);
  return Drop.NONE;
}

/**
 * Makes the TCP checksum of the aggregate at `ip` (its virtio header at `off`) one left to offload: the
 * field holds the pseudo-header's sum, and the header says where the sum starts and goes.
 */
function leaveToOffload(p: Pipeline, off: number, ip: number, l4: number, total: number): void {
  const dv = p.dv;
  dv.setUint16(l4 + tcp.TCP.CHECKSUM, ~fold(pseudoSum(p.u8, ip, NextHeader.TCP, ip + total - l4)) & 0xffff);
  p.u8[off + VNET.FLAGS] = VNET_F_NEEDS_CSUM;
  dv.setUint16(off + VNET.CSUM_START, ETH_HEADER_LEN + (l4 - ip), true);
  dv.setUint16(off + VNET.CSUM_OFFSET, tcp.TCP.CHECKSUM, true);
}

/** A fragment after the first: it goes where its first fragment went, only its destination rewritten. */
function laterFragment(
  p: Pipeline,
  nat: NatUplink6,
  ip: number,
  total: number,
  srcKey: number,
  hop: number,
): number {
  const e = nat.fragments.entry(srcKey, 0, chain.fragId);
  if (e === undefined) return Drop.UPLINK_FRAGMENT;
  const att = e.owner as Attachment;
  if ((att.p0 === 0 && att.p1 === 0) || att.port.closed) return Drop.UPLINK_VM_GONE;
  swapAddress6(p.dv, ip, IPV6.DST, att.p0, att.p1, e.iid2, e.iid3, -1, false);
  p.dv.setUint8(ip + IPV6.HOP_LIMIT, hop - 1);
  toVm(p, att, ip, total);
  return Drop.NONE;
}

function toVm(p: Pipeline, att: Attachment, ip: number, total: number): void {
  const frame = ip - ETH_HEADER_LEN;
  emitEthernet(p.u8, frame, att.mac, 0, att.gatewayMac, EtherType.IPV6);
  p.queue(att.port, frame, ETH_HEADER_LEN + total);
}

/** Where walkQuote() found the quoted packet's upper layer (l4 -1: a later fragment); valid until the next walk. */
const quote = { proto: 0, l4: 0 };

/**
 * Walks the extension headers of the packet an ICMPv6 error quotes (header at `inner`, the quote ending
 * at `end`) into `quote`, as far as its ports: false when they are not in the quote or the chain is
 * longer than softnet lets out.
 */
function walkQuote(dv: DataView, inner: number, end: number): boolean {
  let next = dv.getUint8(inner + IPV6.NEXT);
  let at = inner + IPV6_HEADER_LEN;
  for (let n = 0; n <= ipv6.MAX_EXT_HEADERS; n++) {
    if (
      next !== NextHeader.HOP_BY_HOP &&
      next !== NextHeader.ROUTING &&
      next !== NextHeader.DEST_OPTS &&
      next !== NextHeader.FRAGMENT
    ) {
      quote.proto = next;
      quote.l4 = at;
      return at + 8 <= end;
    }
    if (at + 8 > end) return false;
    if (next === NextHeader.FRAGMENT && (dv.getUint16(at + 2) & 0xfff8) !== 0) {
      quote.l4 = -1;
      return true;
    }
    const len = next === NextHeader.FRAGMENT ? 8 : (dv.getUint8(at + 1) + 1) << 3;
    next = dv.getUint8(at);
    at += len;
  }
  return false;
}

/**
 * An ICMPv6 error (unreachable, packet too big, time exceeded, parameter problem) about a packet NAT66
 * sent: the quoted packet names the mapping by its source port (or echo id). The outer destination and
 * the quoted source go back to the VM's address, the quoted port to the VM's, and the ICMPv6 checksum is
 * computed again over the message.
 */
function icmpError6(
  p: Pipeline,
  nat: NatUplink6,
  ip: number,
  total: number,
  l4: number,
  type: number,
  hop: number,
): number {
  if (type < Icmp6Type.DEST_UNREACHABLE || type > Icmp6Type.PARAM_PROBLEM) return Drop.NAT_ICMP_TYPE;
  const dv = p.dv;
  const end = ip + total;
  const inner = l4 + ICMP6_HEADER_LEN;
  if (inner + IPV6_HEADER_LEN + 8 > end) return Drop.ICMP6_MALFORMED;
  const a = nat.addr;
  if (!ipv6.addrIs(dv, inner, IPV6.SRC, a[0], a[1], a[2], a[3])) return Drop.ICMP6_MALFORMED;
  if (!walkQuote(dv, inner, end)) return Drop.ICMP6_MALFORMED;
  const innerProto = quote.proto;
  const innerL4 = quote.l4;
  // A later fragment's quote holds no ports to find the mapping by.
  if (innerL4 < 0) return Drop.UPLINK_NO_MAPPING;
  let natProto: number;
  if (innerProto === NextHeader.TCP) natProto = NatProto.TCP;
  else if (innerProto === NextHeader.UDP) natProto = NatProto.UDP;
  else if (innerProto === NextHeader.ICMPV6) natProto = NatProto.ICMP;
  else return Drop.UPLINK_NO_MAPPING;
  const portAt = natProto === NatProto.ICMP ? innerL4 + ICMP6.ID : innerL4;
  const extPort = dv.getUint16(portAt);
  const m = nat.flows.inbound(natProto, extPort);
  if (m === undefined) return Drop.UPLINK_NO_MAPPING;
  const remote = remoteKey6(
    word(dv, inner, IPV6.DST, 0),
    word(dv, inner, IPV6.DST, 1),
    word(dv, inner, IPV6.DST, 2),
    word(dv, inner, IPV6.DST, 3),
  );
  if (!m.admits(remote)) return Drop.UPLINK_FILTERED;
  const att = m.owner as Attachment;
  if ((att.p0 === 0 && att.p1 === 0) || att.port.closed) return Drop.UPLINK_VM_GONE;
  // The quote's own transport checksum, when it is whole in the quote, follows its address and port.
  const innerSum = checksumAt(innerProto, innerL4);
  const quoted = innerSum + 2 <= end;
  swapAddress6(dv, inner, IPV6.SRC, att.p0, att.p1, m.iid2, m.iid3, quoted ? innerSum : -1, false);
  dv.setUint16(portAt, m.vmPort);
  if (quoted) dv.setUint16(innerSum, update16(dv.getUint16(innerSum), extPort, m.vmPort));
  swapAddress6(dv, ip, IPV6.DST, att.p0, att.p1, m.iid2, m.iid3, -1, false);
  dv.setUint16(l4 + ICMP6.CHECKSUM, 0);
  dv.setUint16(l4 + ICMP6.CHECKSUM, icmp6Checksum(p.u8, ip, l4, end - l4));
  dv.setUint8(ip + IPV6.HOP_LIMIT, hop - 1);
  toVm(p, att, ip, total);
  return Drop.NONE;
}
