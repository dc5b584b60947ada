// IPv6 frames for in-process tests and the fuzzer, built byte by byte with every checksum right unless
// told otherwise (the checksums are this file's own, not softnet's, so a wrong pseudo-header in src/ is
// caught): bare packets with extension headers, UDP, TCP, ICMPv6, Neighbor Discovery, DHCPv6 client
// messages, fragment trains, the frames around them as a VM sends them and as the uplink's capture
// socket reads them; and readers with a full checksum check for what comes out.

import assert from 'node:assert/strict';
import { parseIpv6 } from '../../src/wire/addr.js';
import { ROUTER_MAC, UPLINK_MAC } from './packets.js';

export { ROUTER_MAC, UPLINK_MAC };

export const NH = {
  HOP: 0,
  TCP: 6,
  UDP: 17,
  ROUTING: 43,
  FRAGMENT: 44,
  ICMP6: 58,
  NONE: 59,
  DEST: 60,
} as const;
export const T6 = {
  UNREACHABLE: 1,
  TOO_BIG: 2,
  TIME_EXCEEDED: 3,
  PARAM: 4,
  ECHO: 128,
  ECHO_REPLY: 129,
  MLD_REPORT: 131,
  RS: 133,
  RA: 134,
  NS: 135,
  NA: 136,
  REDIRECT: 137,
  MLD2_REPORT: 143,
} as const;
export const ND_OPT = { SLLA: 1, TLLA: 2, PREFIX: 3, REDIRECTED: 4, MTU: 5, RDNSS: 25, DNSSL: 31 } as const;

const ETHERTYPE_IPV6 = 0x86dd;
const VNET_HDR_LEN = 10;

const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** An address as four signed words (w0 = its first 4 bytes); throws on bad text. */
export function ip6(text: string): Int32Array {
  const w = parseIpv6(text);
  if (w === null) throw new Error(`not an IPv6 address: ${text}`);
  return Int32Array.from(w, (x) => x | 0);
}

/** The 16 bytes of an address given as text, as its 16 bytes (a Uint8Array), or as four words. */
export function addrBytes(a: string | ArrayLike<number>): Uint8Array {
  if (a instanceof Uint8Array) {
    if (a.length !== 16) throw new Error(`an address of ${a.length} bytes`);
    return Uint8Array.from(a);
  }
  const w = typeof a === 'string' ? ip6(a) : a;
  const out = new Uint8Array(16);
  for (let i = 0; i < 4; i++) view(out).setInt32(4 * i, w[i] | 0);
  return out;
}

/** The address at b[at] as text in full (eight groups, no compression): for messages and comparisons. */
export function addrText(b: Uint8Array, at: number): string {
  const dv = view(b);
  const g: string[] = [];
  for (let i = 0; i < 8; i++) g.push(dv.getUint16(at + 2 * i).toString(16));
  return g.join(':');
}

/** An address text in the same full form as addrText(). */
export function full6(text: string): string {
  return addrText(addrBytes(text), 0);
}

/** The solicited-node group of an address (RFC 4291 2.7.1), and its multicast MAC (RFC 2464 7). */
export function solicitedNode(a: string | ArrayLike<number>): { ip: Uint8Array; mac: Uint8Array } {
  const t = addrBytes(a);
  const ip = addrBytes('ff02::1:ff00:0');
  ip.set(t.subarray(13), 13);
  return { ip, mac: multicastMac(ip) };
}

/** The Ethernet address of an IPv6 group: 33:33 and its last 32 bits. */
export function multicastMac(group: Uint8Array): Uint8Array {
  return Uint8Array.of(0x33, 0x33, group[12], group[13], group[14], group[15]);
}

/** The EUI-64 link-local address of a MAC (RFC 4291 appendix A). */
export function linkLocalOf(mac: Uint8Array): Uint8Array {
  const a = addrBytes('fe80::');
  a.set([mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]], 8);
  return a;
}

// ---- The Internet checksum, written here from RFC 1071 and RFC 8200 8.1 ----

function sum16(b: Uint8Array, acc = 0): number {
  for (let i = 0; i + 1 < b.length; i += 2) acc += (b[i] << 8) | b[i + 1];
  if (b.length & 1) acc += b[b.length - 1] << 8;
  return acc;
}

function fold(acc: number): number {
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return ~acc & 0xffff;
}

/** The checksum of an upper-layer message `l4` between `src` and `dst` (16 bytes each). */
export function checksum6(src: Uint8Array, dst: Uint8Array, next: number, l4: Uint8Array): number {
  const len = l4.length;
  return fold(sum16(l4, sum16(src) + sum16(dst) + (len >>> 16) + (len & 0xffff) + next));
}

// ---- Packets ----

/** An extension header: its type and its bytes, whose first (Next Header) the builder fills in. */
export interface Ext {
  type: number;
  data: Uint8Array;
}

/** A hop-by-hop or destination options header of `units` 8-octet units, padded with PadN. */
export function options(type: typeof NH.HOP | typeof NH.DEST, units = 1): Ext {
  const data = new Uint8Array(8 * units);
  data[1] = units - 1;
  data[2] = 1;
  data[3] = data.length - 4;
  return { type, data };
}

/** A routing header of `routingType` (0 is the deprecated one, RFC 5095) with one address, segments left 1. */
export function routing(routingType: number): Ext {
  const data = new Uint8Array(24);
  data[1] = 2;
  data[2] = routingType;
  data[3] = 1;
  data.set(addrBytes('2001:db8:2::99'), 8);
  return { type: NH.ROUTING, data };
}

/** A fragment header: byte offset `offset` (a multiple of 8), more fragments or not, identification `id`. */
export function fragment(offset: number, more: boolean, id: number): Ext {
  const data = new Uint8Array(8);
  view(data).setUint16(2, offset | (more ? 1 : 0));
  view(data).setUint32(4, id >>> 0);
  return { type: NH.FRAGMENT, data };
}

export interface Ip6Opts {
  hop?: number;
  ext?: Ext[];
  /** The payload length field, when it must lie. */
  payloadLen?: number;
  /** Traffic class and flow label word's low 28 bits. */
  flow?: number;
}

/** A bare IPv6 packet carrying upper-layer `l4` of protocol `next` after the extension headers. */
export function ipv6(
  next: number,
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  l4: Uint8Array,
  o: Ip6Opts = {},
): Uint8Array {
  const ext = o.ext ?? [];
  const extLen = ext.reduce((n, e) => n + e.data.length, 0);
  const pkt = new Uint8Array(40 + extLen + l4.length);
  const dv = view(pkt);
  dv.setUint32(0, (0x6 << 28) | (o.flow ?? 0));
  dv.setUint16(4, o.payloadLen ?? extLen + l4.length);
  pkt[6] = ext.length > 0 ? ext[0].type : next;
  pkt[7] = o.hop ?? 64;
  pkt.set(addrBytes(src), 8);
  pkt.set(addrBytes(dst), 24);
  let at = 40;
  for (let i = 0; i < ext.length; i++) {
    pkt.set(ext[i].data, at);
    pkt[at] = i + 1 < ext.length ? ext[i + 1].type : next;
    at += ext[i].data.length;
  }
  pkt.set(l4, at);
  return pkt;
}

/** A UDP datagram with its checksum over the IPv6 pseudo-header (`noSum`: left zero, which IPv6 forbids). */
export function udpDgram6(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  sport: number,
  dport: number,
  payload: Uint8Array,
  noSum = false,
): Uint8Array {
  const d = new Uint8Array(8 + payload.length);
  const dv = view(d);
  dv.setUint16(0, sport);
  dv.setUint16(2, dport);
  dv.setUint16(4, d.length);
  d.set(payload, 8);
  if (!noSum) {
    const c = checksum6(addrBytes(src), addrBytes(dst), NH.UDP, d);
    dv.setUint16(6, c === 0 ? 0xffff : c);
  }
  return d;
}

/** A UDP/IPv6 packet. */
export function udp6(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  sport: number,
  dport: number,
  payload: Uint8Array = bytes(20),
  o: Ip6Opts = {},
): Uint8Array {
  return ipv6(NH.UDP, src, dst, udpDgram6(src, dst, sport, dport, payload), o);
}

/** A TCP segment (no options) with its checksum over the IPv6 pseudo-header. */
export function tcpSeg6(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
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
  dv.setUint32(8, flags & 0x10 ? 0x55667788 : 0);
  seg[12] = 5 << 4;
  seg[13] = flags;
  dv.setUint16(14, 64240);
  seg.set(payload, 20);
  dv.setUint16(16, checksum6(addrBytes(src), addrBytes(dst), NH.TCP, seg));
  return seg;
}

/** A TCP/IPv6 packet. */
export function tcp6(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  sport: number,
  dport: number,
  flags: number,
  o: Ip6Opts = {},
  payload?: Uint8Array,
): Uint8Array {
  return ipv6(NH.TCP, src, dst, tcpSeg6(src, dst, sport, dport, flags, payload), o);
}

/** An ICMPv6 message (type, code, the 32-bit word after the checksum, a body) with its checksum. */
export function icmp6Msg(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  type: number,
  code: number,
  rest: number,
  body: Uint8Array,
): Uint8Array {
  const m = new Uint8Array(8 + body.length);
  const dv = view(m);
  m[0] = type;
  m[1] = code;
  dv.setUint32(4, rest >>> 0);
  m.set(body, 8);
  dv.setUint16(2, checksum6(addrBytes(src), addrBytes(dst), NH.ICMP6, m));
  return m;
}

/** An ICMPv6/IPv6 packet. */
export function icmp6(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  type: number,
  code: number,
  rest: number,
  body: Uint8Array,
  o: Ip6Opts = {},
): Uint8Array {
  return ipv6(NH.ICMP6, src, dst, icmp6Msg(src, dst, type, code, rest, body), o);
}

/** An echo request (or reply, by `type`) with identifier `id` and sequence `seq`. */
export function echo6(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  id: number,
  seq: number,
  o: Ip6Opts = {},
  type: number = T6.ECHO,
): Uint8Array {
  return icmp6(src, dst, type, 0, (id << 16) | seq, bytes(24), o);
}

/** A link-layer address option (source or target) for `mac`. */
export function llOption(type: number, mac: Uint8Array): Uint8Array {
  const o = new Uint8Array(8);
  o[0] = type;
  o[1] = 1;
  o.set(mac, 2);
  return o;
}

const cat = (...parts: Uint8Array[]) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};

/** A router solicitation (hop limit 255), with a source link-layer option when `slla` is given. */
export function rs6(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number> = 'ff02::2',
  slla: Uint8Array | null = null,
  o: Ip6Opts = {},
): Uint8Array {
  const body = slla ? llOption(ND_OPT.SLLA, slla) : new Uint8Array(0);
  return icmp6(src, dst, T6.RS, 0, 0, body, { hop: 255, ...o });
}

/** A neighbor solicitation for `target` (hop limit 255), with a source link-layer option when given. */
export function ns6(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  target: string | ArrayLike<number>,
  slla: Uint8Array | null = null,
  o: Ip6Opts = {},
): Uint8Array {
  const body = cat(addrBytes(target), slla ? llOption(ND_OPT.SLLA, slla) : new Uint8Array(0));
  return icmp6(src, dst, T6.NS, 0, 0, body, { hop: 255, ...o });
}

/** A neighbor advertisement for `target` with flags (R 0x80, S 0x40, O 0x20) and a target link-layer option. */
export function na6(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  target: string | ArrayLike<number>,
  flags: number,
  tlla: Uint8Array,
): Uint8Array {
  const body = cat(addrBytes(target), llOption(ND_OPT.TLLA, tlla));
  return icmp6(src, dst, T6.NA, 0, flags << 24, body, { hop: 255 });
}

/** A router advertisement announcing `prefix`/64, as a rogue router in a VM would send it. */
export function ra6(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  prefix: string,
  slla: Uint8Array,
): Uint8Array {
  const pi = new Uint8Array(32);
  pi[0] = ND_OPT.PREFIX;
  pi[1] = 4;
  pi[2] = 64;
  pi[3] = 0xc0;
  view(pi).setUint32(4, 86400);
  view(pi).setUint32(8, 14400);
  pi.set(addrBytes(prefix), 16);
  const body = cat(new Uint8Array(8), llOption(ND_OPT.SLLA, slla), pi);
  // Cur hop limit 64, no flags, router lifetime 1800; reachable and retrans timers zero.
  return icmp6(src, dst, T6.RA, 0, (64 << 24) | 1800, body, { hop: 255 });
}

/** A redirect telling its receiver to reach `dest` through `target`. */
export function redirect6(
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  target: string | ArrayLike<number>,
  dest: string | ArrayLike<number>,
): Uint8Array {
  return icmp6(src, dst, T6.REDIRECT, 0, 0, cat(addrBytes(target), addrBytes(dest)), { hop: 255 });
}

/** A DHCPv6 client message: type, transaction id, and options as [code, data] pairs. */
export function dhcp6Msg(type: number, xid: number, opts: Array<[number, ArrayLike<number>]>): Uint8Array {
  const len = 4 + opts.reduce((n, [, d]) => n + 4 + d.length, 0);
  const m = new Uint8Array(len);
  const dv = view(m);
  dv.setUint32(0, ((type & 0xff) << 24) | (xid & 0xffffff));
  let at = 4;
  for (const [code, data] of opts) {
    dv.setUint16(at, code);
    dv.setUint16(at + 2, data.length);
    m.set(Array.from(data), at + 4);
    at += 4 + data.length;
  }
  return m;
}

/**
 * An upper-layer message `l4` of protocol `next` cut into fragments of at most `size` bytes of it each
 * (a multiple of 8 but the last), each a whole IPv6 packet with a fragment header of identification `id`.
 */
export function fragments6(
  next: number,
  src: string | ArrayLike<number>,
  dst: string | ArrayLike<number>,
  l4: Uint8Array,
  size: number,
  id: number,
  o: Ip6Opts = {},
): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < l4.length; at += size) {
    const end = Math.min(at + size, l4.length);
    out.push(ipv6(next, src, dst, l4.subarray(at, end), { ...o, ext: [fragment(at, end < l4.length, id)] }));
  }
  return out;
}

// ---- Frames ----

/** An Ethernet frame from `srcMac` to `dstMac` around an IPv6 packet. */
export function eth6(pkt: Uint8Array, srcMac: Uint8Array, dstMac: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + pkt.length);
  f.set(dstMac, 0);
  f.set(srcMac, 6);
  view(f).setUint16(12, ETHERTYPE_IPV6);
  f.set(pkt, 14);
  return f;
}

/** What the uplink's IPv6 capture socket reads: a virtio_net_hdr saying nothing, the Ethernet header, the packet. */
export function capture6(pkt: Uint8Array): Uint8Array {
  const f = new Uint8Array(VNET_HDR_LEN + 14 + pkt.length);
  f.set(UPLINK_MAC, VNET_HDR_LEN);
  f.set(ROUTER_MAC, VNET_HDR_LEN + 6);
  view(f).setUint16(VNET_HDR_LEN + 12, ETHERTYPE_IPV6);
  f.set(pkt, VNET_HDR_LEN + 14);
  return f;
}

export const bytes = (n: number, seed = 1) =>
  Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

// ---- Reading packets back ----

export interface Parsed6 {
  src: string;
  dst: string;
  srcBytes: Uint8Array;
  dstBytes: Uint8Array;
  hop: number;
  payloadLen: number;
  /** The upper-layer protocol after any extension headers, and its bytes (to the end of the payload). */
  proto: number;
  l4: Uint8Array;
  /** The fragment header's offset field and M flag, and identification, when there is one. */
  frag: { offset: number; more: boolean; id: number } | null;
  /** Transport ports, or for ICMPv6 its type and code; the echo identifier at `id`. */
  sport: number;
  dport: number;
  id: number;
}

/**
 * Reads the IPv6 packet at b[at], walking its extension headers. A `quote` (in an ICMPv6 error) may be
 * cut short of its payload length: its upper layer then ends with the bytes.
 */
export function parse6(b: Uint8Array, at: number, quote = false): Parsed6 {
  const dv = view(b);
  assert.equal(b[at] >>> 4, 6, 'an IPv6 packet');
  const payloadLen = dv.getUint16(at + 4);
  let end = at + 40 + payloadLen;
  if (quote) end = Math.min(end, b.length);
  assert.ok(end <= b.length, `payload length ${payloadLen} within the ${b.length - at} bytes`);
  let next = b[at + 6];
  let p = at + 40;
  let frag: Parsed6['frag'] = null;
  while (next === NH.HOP || next === NH.ROUTING || next === NH.DEST || next === NH.FRAGMENT) {
    if (next === NH.FRAGMENT) {
      const w = dv.getUint16(p + 2);
      frag = { offset: w & 0xfff8, more: (w & 1) === 1, id: dv.getUint32(p + 4) };
      next = b[p];
      p += 8;
      continue;
    }
    const len = (b[p + 1] + 1) * 8;
    next = b[p];
    p += len;
  }
  const l4 = b.subarray(p, end);
  const l4dv = view(l4);
  const icmp = next === NH.ICMP6;
  const later = frag !== null && frag.offset !== 0;
  return {
    src: addrText(b, at + 8),
    dst: addrText(b, at + 24),
    srcBytes: b.slice(at + 8, at + 24),
    dstBytes: b.slice(at + 24, at + 40),
    hop: b[at + 7],
    payloadLen,
    proto: next,
    l4,
    frag,
    sport: later || l4.length < 2 ? -1 : icmp ? l4[0] : l4dv.getUint16(0),
    dport: later || l4.length < 4 ? -1 : icmp ? l4[1] : l4dv.getUint16(2),
    id: !later && icmp && l4.length >= 6 ? l4dv.getUint16(4) : -1,
  };
}

/** Verifies from scratch the transport checksum of the unfragmented IPv6 packet at b[at]; returns it parsed. */
export function assertChecksums6(b: Uint8Array, at: number, why = ''): Parsed6 {
  const p = parse6(b, at);
  assert.equal(p.frag, null, `a whole packet ${why}`);
  assert.ok([NH.TCP, NH.UDP, NH.ICMP6].includes(p.proto as 6), `a checksummed protocol ${why}: ${p.proto}`);
  if (p.proto === NH.UDP) {
    assert.notEqual(view(p.l4).getUint16(6), 0, `a UDP checksum present ${why}`);
    assert.equal(view(p.l4).getUint16(4), p.l4.length, `the UDP length is the payload's ${why}`);
  }
  assert.equal(checksum6(p.srcBytes, p.dstBytes, p.proto, p.l4), 0, `transport checksum ${why}`);
  return p;
}

/** The upper-layer message of a train of fragments put back together (checked in order and complete). */
export function reassemble(pkts: Uint8Array[], at: number): { first: Parsed6; l4: Uint8Array } {
  const parts = pkts.map((b) => parse6(b, at));
  let expect = 0;
  for (const [i, p] of parts.entries()) {
    assert.ok(p.frag, `fragment ${i} has a fragment header`);
    assert.equal(p.frag.offset, expect, `fragment ${i} at its offset`);
    assert.equal(p.frag.more, i + 1 < parts.length, `fragment ${i}'s more flag`);
    assert.equal(p.frag.id, parts[0].frag!.id, `fragment ${i}'s identification`);
    assert.equal(p.src, parts[0].src);
    assert.equal(p.dst, parts[0].dst);
    expect += p.l4.length;
  }
  return { first: parts[0], l4: cat(...parts.map((p) => p.l4)) };
}

/** The options of an ND message whose options start at l4[from]: type, bytes (with type and length). */
export function ndOptions(l4: Uint8Array, from: number): Array<{ type: number; data: Uint8Array }> {
  const out: Array<{ type: number; data: Uint8Array }> = [];
  let at = from;
  while (at < l4.length) {
    assert.ok(at + 2 <= l4.length, 'an option header within the message');
    const len = l4[at + 1] * 8;
    assert.ok(len > 0 && at + len <= l4.length, `option ${l4[at]} of ${len} bytes within the message`);
    out.push({ type: l4[at], data: l4.subarray(at, at + len) });
    at += len;
  }
  return out;
}
