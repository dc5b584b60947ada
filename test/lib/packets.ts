// Bare IPv4 packets for in-process NAT tests, with every checksum right unless told otherwise; the frames
// around them as a VM sends them and as the uplink's capture socket reads them; and a reader with a full
// checksum check for what comes out.

import assert from 'node:assert/strict';
import { parseMac } from '../../src/wire/addr.js';
import { checksum, pseudoHeader } from '../../src/wire/checksum.js';
import { IpProto } from '../../src/wire/ipv4.js';
import { TcpFlag } from '../../src/wire/tcp.js';

/** The uplink's MAC and its router's, in captured frames. */
export const UPLINK_MAC = parseMac('02:00:00:00:00:aa')!;
export const ROUTER_MAC = parseMac('02:00:00:00:00:bb')!;

export const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
export const bytes = (n: number, seed = 1) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

// ---- Packet builders: bare IPv4 packets with every checksum right unless told otherwise ----

export interface IpOpts {
  ttl?: number;
  id?: number;
  /** Flags and fragment offset; DF by default. */
  frag?: number;
  /** Total length field, when it must lie. */
  total?: number;
  /** IHL field, when it must lie. */
  ihl?: number;
}

export function ipv4(proto: number, src: number, dst: number, l4: Uint8Array, o: IpOpts = {}): Uint8Array {
  const pkt = new Uint8Array(20 + l4.length);
  const dv = view(pkt);
  pkt[0] = 0x40 | (o.ihl ?? 5);
  dv.setUint16(2, o.total ?? pkt.length);
  dv.setUint16(4, o.id ?? 0x1c46);
  dv.setUint16(6, o.frag ?? 0x4000);
  pkt[8] = o.ttl ?? 64;
  pkt[9] = proto;
  dv.setUint32(12, src);
  dv.setUint32(16, dst);
  dv.setUint16(10, checksum(pkt, 0, 20));
  pkt.set(l4, 20);
  return pkt;
}

export function tcpSeg(
  src: number,
  dst: number,
  sport: number,
  dport: number,
  flags: number,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const seg = new Uint8Array(20 + payload.length);
  const dv = view(seg);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint32(4, 0x11223344);
  dv.setUint32(8, flags & TcpFlag.ACK ? 0x55667788 : 0);
  seg[12] = 5 << 4;
  seg[13] = flags;
  dv.setUint16(14, 64240);
  seg.set(payload, 20);
  dv.setUint16(16, checksum(seg, 0, seg.length, pseudoHeader(src, dst, IpProto.TCP, seg.length)));
  return seg;
}

export function tcp(
  src: number,
  dst: number,
  sport: number,
  dport: number,
  flags: number,
  o: IpOpts = {},
  data?: Uint8Array,
) {
  return ipv4(IpProto.TCP, src, dst, tcpSeg(src, dst, sport, dport, flags, data), o);
}

export function udpDgram(
  src: number,
  dst: number,
  sport: number,
  dport: number,
  payload: Uint8Array,
  noSum = false,
) {
  const d = new Uint8Array(8 + payload.length);
  const dv = view(d);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint16(4, d.length);
  d.set(payload, 8);
  if (!noSum) {
    const c = checksum(d, 0, d.length, pseudoHeader(src, dst, IpProto.UDP, d.length));
    dv.setUint16(6, c === 0 ? 0xffff : c);
  }
  return d;
}

export function udp(
  src: number,
  dst: number,
  sport: number,
  dport: number,
  payload = bytes(20),
  o: IpOpts = {},
) {
  return ipv4(IpProto.UDP, src, dst, udpDgram(src, dst, sport, dport, payload), o);
}

/** An ICMP message: type, code, the 32-bit rest of header (echo id and sequence, or the MTU), and a body. */
export function icmpMsg(type: number, code: number, rest: number, body: Uint8Array): Uint8Array {
  const m = new Uint8Array(8 + body.length);
  const dv = view(m);
  m[0] = type;
  m[1] = code;
  dv.setUint32(4, rest >>> 0);
  m.set(body, 8);
  dv.setUint16(2, checksum(m, 0, m.length));
  return m;
}

export function echo(type: number, src: number, dst: number, id: number, seq: number, o: IpOpts = {}) {
  return ipv4(IpProto.ICMP, src, dst, icmpMsg(type, 0, (id << 16) | seq, bytes(24)), o);
}

/** An Ethernet frame from `srcMac` to `dstMac` around a packet. */
export function ethFrame(pkt: Uint8Array, srcMac: Uint8Array, dstMac: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + pkt.length);
  f.set(dstMac, 0);
  f.set(srcMac, 6);
  view(f).setUint16(12, 0x0800);
  f.set(pkt, 14);
  return f;
}

export interface Vnet {
  flags: number;
  csumStart: number;
  csumOffset: number;
  /** For an aggregate: its GSO type, segment size and header length. */
  gsoType?: number;
  gsoSize?: number;
  hdrLen?: number;
}

/** Writes a virtio_net_hdr at f[at]. */
export function writeVnet(f: Uint8Array, at: number, vnet: Vnet): void {
  const dv = view(f);
  f[at] = vnet.flags;
  f[at + 1] = vnet.gsoType ?? 0;
  dv.setUint16(at + 2, vnet.hdrLen ?? 0, true);
  dv.setUint16(at + 4, vnet.gsoSize ?? 0, true);
  dv.setUint16(at + 6, vnet.csumStart, true);
  dv.setUint16(at + 8, vnet.csumOffset, true);
}

/** What the capture socket reads: a virtio_net_hdr, the uplink's Ethernet header, the packet. */
export function captureFrame(pkt: Uint8Array, vnet?: Vnet): Uint8Array {
  const f = new Uint8Array(10 + 14 + pkt.length);
  const dv = view(f);
  if (vnet) writeVnet(f, 0, vnet);
  f.set(UPLINK_MAC, 10);
  f.set(ROUTER_MAC, 16);
  dv.setUint16(22, 0x0800);
  f.set(pkt, 24);
  return f;
}

// ---- Reading packets back ----

export interface Parsed {
  src: number;
  dst: number;
  ttl: number;
  proto: number;
  frag: number;
  hl: number;
  total: number;
  /** Transport ports, or ICMP type/code and echo id. */
  sport: number;
  dport: number;
  l4: Uint8Array;
}

export function parse(b: Uint8Array, at: number): Parsed {
  const dv = view(b);
  const hl = (b[at] & 0x0f) << 2;
  const total = dv.getUint16(at + 2);
  const l4 = b.subarray(at + hl, at + total);
  const l4dv = view(l4);
  return {
    src: dv.getUint32(at + 12),
    dst: dv.getUint32(at + 16),
    ttl: b[at + 8],
    proto: b[at + 9],
    frag: dv.getUint16(at + 6),
    hl,
    total,
    sport: l4.length >= 2 ? l4dv.getUint16(0) : -1,
    dport: l4.length >= 4 ? l4dv.getUint16(2) : -1,
    l4,
  };
}

/** Recomputes every checksum of the packet at b[at] in full. */
export function assertChecksums(b: Uint8Array, at: number, why = ''): void {
  const p = parse(b, at);
  assert.equal(checksum(b, at, p.hl), 0, `IPv4 header checksum ${why}`);
  if (p.frag & 0x3fff && p.frag !== 0x4000) return; // a fragment: the transport checksum spans the datagram
  const len = p.total - p.hl;
  if (p.proto === IpProto.TCP) {
    assert.equal(checksum(p.l4, 0, len, pseudoHeader(p.src, p.dst, p.proto, len)), 0, `TCP checksum ${why}`);
  } else if (p.proto === IpProto.UDP && view(p.l4).getUint16(6) !== 0) {
    assert.equal(checksum(p.l4, 0, len, pseudoHeader(p.src, p.dst, p.proto, len)), 0, `UDP checksum ${why}`);
  } else if (p.proto === IpProto.ICMP) {
    assert.equal(checksum(p.l4, 0, len), 0, `ICMP checksum ${why}`);
  }
}
