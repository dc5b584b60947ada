// What offloads leave to softnet: the transport checksum of a packet its sender left to fill in, and
// TCP aggregates (GRO, TSO) of up to 64 KiB, IPv4 or IPv6. They come from a packet socket with
// PACKET_VNET_HDR (the uplink's captures, a bridge's LAN), cut and filled in before anything else looks at
// them, and from ports with virtio headers (a VM's TAP with offloads, the host link), which forwardFrame()
// lets through to other such ports as they are and resolves for the rest.

import { native } from '../native.js';
import type { Port } from '../ports/port.js';
import { Drop } from '../stats/drops.js';
import { checksum } from '../wire/checksum.js';
import { ETH, ETH_HEADER_LEN, EtherType } from '../wire/ethernet.js';
import * as ipv4 from '../wire/ipv4.js';
import { IpProto } from '../wire/ipv4.js';
import * as ipv6 from '../wire/ipv6.js';
import { IPV6_HEADER_LEN } from '../wire/ipv6.js';
import { VNET, VNET_F_NEEDS_CSUM, VNET_GSO_NONE, VNET_HDR_LEN } from '../wire/vnet.js';
import { type Pipeline, SEG_SLOTS, STRIDE } from './pipeline.js';

/** The lengths of the segments cutAggregate() wrote last. */
export const segLens = new Uint32Array(SEG_SLOTS);

/**
 * Cuts the aggregate at `off` (its virtio header first) into this batch's segment slots, from
 * p.nextSegment() on, STRIDE apart, each with a zeroed virtio header; returns how many (their lengths in
 * segLens), or 0 when it cannot (not TCP over IPv4 or over IPv6 without extension headers, no room left
 * in this batch).
 */
export function cutAggregate(p: Pipeline, off: number, len: number): number {
  const room = p.segmentsLeft();
  const n = room > 0 ? native.gsoSegment(off, len, p.nextSegment(), STRIDE, room, segLens) : -1;
  if (n <= 0) return 0;
  p.takeSegments(n);
  return n;
}

/**
 * Fills in the transport checksum of the IPv4 or IPv6 packet at `ip` (header `hl` bytes, extension headers
 * included, `total` bytes, protocol `proto`) whose virtio header at `off` says it holds only the
 * pseudo-header sum (VNET_F_NEEDS_CSUM: a sender on this machine). Returns false when the header's
 * offsets point outside the transport data.
 */
export function completeChecksum(
  p: Pipeline,
  off: number,
  ip: number,
  hl: number,
  total: number,
  proto: number,
): boolean {
  const dv = p.dv;
  // csum_start counts from the start of the Ethernet frame.
  const start = off + VNET_HDR_LEN + dv.getUint16(off + VNET.CSUM_START, true);
  const field = start + dv.getUint16(off + VNET.CSUM_OFFSET, true);
  if (start < ip + hl || field + 2 > ip + total) return false;
  const c = checksum(p.u8, start, ip + total - start);
  dv.setUint16(field, c === 0 && proto === IpProto.UDP ? 0xffff : c);
  // Done: whatever the frame meets next must not sum it again.
  p.u8[off + VNET.FLAGS] &= ~VNET_F_NEEDS_CSUM;
  return true;
}

/** Whether the frame at `off` is an aggregate (its virtio header names a GSO type). */
export function isAggregate(u8: Uint8Array, off: number): boolean {
  return u8[off - VNET_HDR_LEN + VNET.GSO_TYPE] !== VNET_GSO_NONE;
}

/**
 * Fills in the transport checksum of the IPv4 packet at `ip` in the frame at `off` if its sender left it
 * to offload, for a path that reads or changes the packet by its checksum (a DHCP message); false when the
 * virtio header's offsets are wrong.
 */
export function settleChecksum(p: Pipeline, off: number, ip: number, hl: number, total: number): boolean {
  const h = off - VNET_HDR_LEN;
  if ((p.u8[h + VNET.FLAGS] & VNET_F_NEEDS_CSUM) === 0) return true;
  return completeChecksum(p, h, ip, hl, total, ipv4.proto(p.dv, ip));
}

/**
 * Queues the Ethernet frame at `off` (its virtio header right before it) for `port`: as it is when the
 * port takes virtio headers or the frame leaves nothing to offload; else an aggregate is cut into
 * segments, queued one by one, and a checksum left to offload is filled in first.
 */
export function forwardFrame(p: Pipeline, port: Port, off: number, len: number): void {
  const u8 = p.u8;
  const h = off - VNET_HDR_LEN;
  if (
    port.vnet ||
    ((u8[h + VNET.FLAGS] & VNET_F_NEEDS_CSUM) === 0 && u8[h + VNET.GSO_TYPE] === VNET_GSO_NONE)
  ) {
    p.queue(port, off, len);
    return;
  }
  const drop = resolve(p, port, off, len);
  if (drop !== Drop.NONE) p.drops[drop]++;
}

function resolve(p: Pipeline, port: Port, off: number, len: number): number {
  const u8 = p.u8;
  const h = off - VNET_HDR_LEN;
  if (u8[h + VNET.GSO_TYPE] !== VNET_GSO_NONE) {
    const first = p.nextSegment();
    const n = cutAggregate(p, h, len + VNET_HDR_LEN);
    if (n === 0) return Drop.GSO_UNCUT;
    for (let i = 0; i < n; i++) p.queue(port, first + i * STRIDE + VNET_HDR_LEN, segLens[i] - VNET_HDR_LEN);
    return Drop.NONE;
  }
  const dv = p.dv;
  const ip = off + ETH_HEADER_LEN;
  const type = len < ETH_HEADER_LEN ? -1 : dv.getUint16(off + ETH.TYPE);
  let hl: number;
  let total: number;
  let proto: number;
  if (type === EtherType.IPV4 && len >= ETH_HEADER_LEN + ipv4.IPV4_HEADER_LEN) {
    hl = ipv4.headerLen(dv, ip);
    total = ipv4.totalLen(dv, ip);
    proto = ipv4.proto(dv, ip);
    if (hl < ipv4.IPV4_HEADER_LEN) return Drop.BAD_OFFLOAD;
  } else if (type === EtherType.IPV6 && ipv6.validate(dv, ip, len - ETH_HEADER_LEN) === Drop.NONE) {
    // The sum starts where the virtio header says, past any extension headers, so none is walked. A sum
    // of 0 is written 0xffff whatever the protocol, as the kernel's skb_checksum_help does: the same to
    // TCP's receiver, and the only right value for UDP's (RFC 8200 8.1).
    hl = IPV6_HEADER_LEN;
    total = ipv6.totalLen(dv, ip);
    proto = IpProto.UDP;
  } else {
    return Drop.BAD_OFFLOAD;
  }
  if (total < hl || ETH_HEADER_LEN + total > len) return Drop.BAD_OFFLOAD;
  if (!completeChecksum(p, h, ip, hl, total, proto)) return Drop.BAD_OFFLOAD;
  p.queue(port, off, len);
  return Drop.NONE;
}
