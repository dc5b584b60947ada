// What a packet socket with PACKET_VNET_HDR leaves to softnet (the uplink's capture, a bridge's LAN): the
// transport checksum of a packet a sender on this machine left to offload, and aggregates (GRO, a veth
// peer's TSO) to cut into MTU-sized segments before anything else looks at them.

import { native } from '../native.js';
import { checksum } from '../wire/checksum.js';
import { IpProto } from '../wire/ipv4.js';
import { VNET, VNET_HDR_LEN } from '../wire/vnet.js';
import { type Pipeline, SEG_SLOTS, STRIDE } from './pipeline.js';

/** The lengths of the segments cutAggregate() wrote last. */
export const segLens = new Uint32Array(SEG_SLOTS);

/**
 * Cuts the aggregate at `off` (its virtio header first) into this batch's segment slots, from
 * p.nextSegment() on, STRIDE apart, each with a zeroed virtio header; returns how many (their lengths in
 * segLens), or 0 when it cannot (not TCP/IPv4, no room left in this batch).
 */
export function cutAggregate(p: Pipeline, off: number, len: number): number {
  const room = p.segmentsLeft();
  const n = room > 0 ? native.gsoSegment(off, len, p.nextSegment(), STRIDE, room, segLens) : -1;
  if (n <= 0) return 0;
  p.takeSegments(n);
  return n;
}

/**
 * Fills in the transport checksum of the IPv4 packet at `ip` (header `hl`, `total` bytes, protocol
 * `proto`) whose virtio header at `off` says it holds only the pseudo-header sum (VNET_F_NEEDS_CSUM: a
 * sender on this machine). Returns false when the header's offsets point outside the transport data.
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
  return true;
}
