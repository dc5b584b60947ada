// NAT64 in (RFC 6146, headers per RFC 7915 4): an IPv4 packet for a NAT64 mapping goes back to the VM as
// IPv6, from its network's NAT64 prefix and the sender's IPv4 address, to the VM address and port the
// mapping is for; ICMPv4 errors about a translated packet become ICMPv6 errors with their quote
// translated too (fragmentation needed becomes packet too big, 20 bytes larger). The packet grows by 20
// bytes, so it is written into a segment slot of the batch (one copy), not in place.

import { type Mapping, NatProto } from '../nat/flows.js';
import type { Attachment } from '../net/attachment.js';
import { Drop } from '../stats/drops.js';
import { checksum, pseudoHeader, update16 } from '../wire/checksum.js';
import { ETH_HEADER_LEN, EtherType, emitEthernet } from '../wire/ethernet.js';
import { ICMP, IcmpType } from '../wire/icmp.js';
import { ICMP6, ICMP6_HEADER_LEN, Icmp6Type, icmp6Checksum, Unreachable } from '../wire/icmpv6.js';
import * as ipv4 from '../wire/ipv4.js';
import { IPV4, IPV4_HEADER_LEN, IpProto } from '../wire/ipv4.js';
import { emitIpv6, IPV6, IPV6_HEADER_LEN, NextHeader, pseudoSum, writeAddr } from '../wire/ipv6.js';
import { TCP } from '../wire/tcp.js';
import { UDP } from '../wire/udp.js';
import { VNET_HDR_LEN } from '../wire/vnet.js';
import { HEADROOM, type Pipeline, STRIDE } from './pipeline.js';
import { adjust } from './to-world64.js';

/** The most an IPv4 packet's payload may be to fit a segment slot once translated. */
const ROOM = STRIDE - HEADROOM - ETH_HEADER_LEN - IPV6_HEADER_LEN;
/** What IPv6 takes more than IPv4 per header. */
const GROWTH = IPV6_HEADER_LEN - IPV4_HEADER_LEN;

/** Takes a segment slot for a translated frame; -1 when the batch has none left. */
function slotFor(p: Pipeline): number {
  if (p.segmentsLeft() === 0) return -1;
  const out = p.nextSegment();
  p.takeSegments(1);
  // A frame softnet writes leaves nothing to offload.
  p.u8.fill(0, out - VNET_HDR_LEN, out);
  return out;
}

/** Writes the IPv6 header at `ip6` for a packet from `src4` (behind the VM's NAT64 prefix) to mapping `m`'s VM address. */
function header6(
  dv: DataView,
  ip6: number,
  att: Attachment,
  m: Mapping,
  src4: number,
  next: number,
  payloadLen: number,
  hop: number,
  tclass: number,
): void {
  const pre = att.nat64!;
  emitIpv6(dv, ip6, next, payloadLen, hop);
  dv.setUint32(ip6, 0x60000000 | (tclass << 20));
  writeAddr(dv, ip6 + IPV6.SRC, pre[0], pre[1], pre[2], src4);
  writeAddr(dv, ip6 + IPV6.DST, att.p0, att.p1, m.iid2, m.iid3);
}

/**
 * Translates the whole IPv4 packet at `ip` (header `hl`, `total` bytes, checksums whole) for NAT64 mapping
 * `m` and queues it for the VM. `natProto`: the mapping's protocol.
 */
export function fromWorld64(
  p: Pipeline,
  ip: number,
  hl: number,
  total: number,
  natProto: number,
  m: Mapping,
): number {
  const dv = p.dv;
  const u8 = p.u8;
  const att = m.owner as Attachment;
  if ((att.p0 === 0 && att.p1 === 0) || att.nat64 === null || att.port.closed) return Drop.UPLINK_VM_GONE;
  if ((dv.getUint16(ip + IPV4.FRAG) & 0x3fff) !== 0) return Drop.NAT64_FRAGMENT;
  const l4len = total - hl;
  if (l4len > ROOM) return Drop.NAT64_NO_ROOM;
  const out = slotFor(p);
  if (out < 0) return Drop.NAT64_NO_ROOM;
  const src4 = dv.getInt32(ip + IPV4.SRC);
  const dst4 = dv.getInt32(ip + IPV4.DST);
  const proto = ipv4.proto(dv, ip);
  const ip6 = emitEthernet(u8, out, att.mac, 0, att.gatewayMac, EtherType.IPV6);
  const l4 = ip6 + IPV6_HEADER_LEN;
  u8.copyWithin(l4, ip + hl, ip + total);
  const next = natProto === NatProto.ICMP ? NextHeader.ICMPV6 : proto;
  header6(dv, ip6, att, m, src4, next, l4len, dv.getUint8(ip + IPV4.TTL) - 1, dv.getUint8(ip + IPV4.TOS));
  if (natProto === NatProto.ICMP) {
    dv.setUint8(l4 + ICMP6.TYPE, Icmp6Type.ECHO_REPLY);
    dv.setUint16(l4 + ICMP6.ID, m.vmPort);
    dv.setUint16(l4 + ICMP6.CHECKSUM, 0);
    dv.setUint16(l4 + ICMP6.CHECKSUM, icmp6Checksum(u8, ip6, l4, l4len));
  } else {
    const sumAt = l4 + (natProto === NatProto.TCP ? TCP.CHECKSUM : UDP.CHECKSUM);
    const extPort = dv.getUint16(l4 + 2);
    dv.setUint16(l4 + 2, m.vmPort);
    const c = dv.getUint16(sumAt);
    if (natProto === NatProto.UDP && c === 0) {
      // IPv4 UDP may go without a checksum; IPv6 UDP may not (RFC 7915 4.5): it is made here.
      const ulen = dv.getUint16(l4 + UDP.LEN);
      if (ulen < 8 || ulen > l4len) return Drop.UDP_MALFORMED;
      const sum = checksum(u8, l4, ulen, pseudoSum(u8, ip6, NextHeader.UDP, ulen));
      dv.setUint16(sumAt, sum === 0 ? 0xffff : sum);
    } else {
      let n = adjust(c, pseudoHeader(src4, dst4, proto, l4len), pseudoSum(u8, ip6, proto, l4len));
      n = update16(n, extPort, m.vmPort);
      dv.setUint16(sumAt, natProto === NatProto.UDP && n === 0 ? 0xffff : n);
    }
  }
  p.queue(att.port, out, ETH_HEADER_LEN + IPV6_HEADER_LEN + l4len);
  return Drop.NONE;
}

/** What mapError() found, in one object so that it allocates nothing. */
const mapped = { type: -1, code: 0, rest: 0 };

/**
 * The ICMPv6 type, code and rest-of-header for an ICMPv4 error (RFC 7915 4.2) into `mapped`, type -1 when
 * it has none; `mtu`: the next-hop MTU of fragmentation needed.
 */
function mapError(type: number, code: number, mtu: number): void {
  mapped.type = -1;
  mapped.code = 0;
  mapped.rest = 0;
  if (type === IcmpType.TIME_EXCEEDED) {
    mapped.type = Icmp6Type.TIME_EXCEEDED;
    mapped.code = code;
    return;
  }
  if (type !== IcmpType.DEST_UNREACHABLE) return;
  if (code === 4) {
    mapped.type = Icmp6Type.PACKET_TOO_BIG;
    const six = mtu + GROWTH;
    mapped.rest = six < 1280 ? 1280 : six;
  } else if (code === 3) {
    mapped.type = Icmp6Type.DEST_UNREACHABLE;
    mapped.code = Unreachable.PORT;
  } else if (code === 2) {
    // Protocol unreachable: a parameter problem pointing at the next header field (RFC 7915 4.2).
    mapped.type = Icmp6Type.PARAM_PROBLEM;
    mapped.code = 1;
    mapped.rest = IPV6.NEXT;
  } else if (code === 9 || code === 10 || code === 13) {
    mapped.type = Icmp6Type.DEST_UNREACHABLE;
    mapped.code = Unreachable.ADMIN_PROHIBITED;
  } else if (code <= 12) {
    mapped.type = Icmp6Type.DEST_UNREACHABLE;
    mapped.code = Unreachable.NO_ROUTE;
  }
}

/**
 * An ICMPv4 error (at `icmp`) quoting a packet NAT64 sent (its header at `inner`) for mapping `m`: sent to
 * the VM as the ICMPv6 error RFC 7915 maps it to, from the prefix and the reporting router's address,
 * quoting the packet as the VM sent it (IPv6, its own address and port).
 */
export function icmpError64(
  p: Pipeline,
  ip: number,
  total: number,
  icmp: number,
  inner: number,
  m: Mapping,
): number {
  const dv = p.dv;
  const u8 = p.u8;
  const att = m.owner as Attachment;
  if ((att.p0 === 0 && att.p1 === 0) || att.nat64 === null || att.port.closed) return Drop.UPLINK_VM_GONE;
  mapError(dv.getUint8(icmp + ICMP.TYPE), dv.getUint8(icmp + ICMP.CODE), dv.getUint16(icmp + 6));
  if (mapped.type < 0) return Drop.NAT_ICMP_TYPE;
  const end = ip + total;
  const ihl = ipv4.headerLen(dv, inner);
  const innerL4 = inner + ihl;
  const quoted = end - innerL4;
  if (quoted < 8 || IPV6_HEADER_LEN + ICMP6_HEADER_LEN + IPV6_HEADER_LEN + quoted > ROOM + IPV6_HEADER_LEN)
    return Drop.ICMP_MALFORMED;
  const out = slotFor(p);
  if (out < 0) return Drop.NAT64_NO_ROOM;
  const ip6 = emitEthernet(u8, out, att.mac, 0, att.gatewayMac, EtherType.IPV6);
  const icmp6 = ip6 + IPV6_HEADER_LEN;
  const in6 = icmp6 + ICMP6_HEADER_LEN;
  const inL4 = in6 + IPV6_HEADER_LEN;
  u8.copyWithin(inL4, innerL4, end);
  const innerProto = ipv4.proto(dv, inner);
  const innerLen = dv.getUint16(inner + IPV4.LEN) - ihl;
  // The quote as the VM sent it: from its own address and port, to the prefix and the IPv4 destination.
  emitIpv6(
    dv,
    in6,
    innerProto === IpProto.ICMP ? NextHeader.ICMPV6 : innerProto,
    innerLen < 0 ? 0 : innerLen,
    dv.getUint8(inner + IPV4.TTL),
  );
  const pre = att.nat64;
  writeAddr(dv, in6 + IPV6.SRC, att.p0, att.p1, m.iid2, m.iid3);
  writeAddr(dv, in6 + IPV6.DST, pre[0], pre[1], pre[2], dv.getInt32(inner + IPV4.DST));
  if (innerProto === IpProto.ICMP) {
    dv.setUint8(inL4 + ICMP6.TYPE, Icmp6Type.ECHO_REQUEST);
    dv.setUint16(inL4 + ICMP6.ID, m.vmPort);
  } else {
    dv.setUint16(inL4, m.vmPort);
  }
  const len = ICMP6_HEADER_LEN + IPV6_HEADER_LEN + quoted;
  header6(
    dv,
    ip6,
    att,
    m,
    dv.getInt32(ip + IPV4.SRC),
    NextHeader.ICMPV6,
    len,
    dv.getUint8(ip + IPV4.TTL) - 1,
    0,
  );
  dv.setUint8(icmp6 + ICMP6.TYPE, mapped.type);
  dv.setUint8(icmp6 + ICMP6.CODE, mapped.code);
  dv.setUint16(icmp6 + ICMP6.CHECKSUM, 0);
  dv.setUint32(icmp6 + ICMP6.ID, mapped.rest);
  dv.setUint16(icmp6 + ICMP6.CHECKSUM, icmp6Checksum(u8, ip6, icmp6, len));
  p.queue(att.port, out, ETH_HEADER_LEN + IPV6_HEADER_LEN + len);
  return Drop.NONE;
}
