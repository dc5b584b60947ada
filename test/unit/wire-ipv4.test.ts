// IPv4 header (RFC 791): accessors over known headers at an offset, validate's verdicts, the builder.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Drop } from '../../src/stats/drops.js';
import {
  dst,
  emitIpv4,
  headerLen,
  IPV4,
  IPV4_HEADER_LEN,
  IpProto,
  isFragment,
  proto,
  src,
  totalLen,
  ttl,
  validate,
} from '../../src/wire/ipv4.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));

// Wikipedia's header checksum example: 192.168.0.1 -> 192.168.0.199, UDP, 115 bytes, checksum b861.
const WIKI = hex('45000073 00004000 4011b861 c0a80001 c0a800c7');
// A Linux TCP SYN 192.168.64.2 -> 93.184.216.34 (id 3c1e, DF, TTL 64); tcpdump-checked.
const SYN_IP = hex('4500003c 3c1e4000 4006c818 c0a84002 5db8d822');
// An IGMPv3 report with the Router Alert option (IHL 6, TOS c0, TTL 1) and its 16-byte payload.
const IGMP_PACKET = hex(
  '46c00028 00004000 0102034f c0a84002 e0000016 94040000' + '2200f902 00000001 04000000 e00000fb',
);

/** `bytes` at `off` in a buffer filled with 0xa5, with `extra` junk bytes after it. */
function inJunk(bytes: Uint8Array, off: number, extra = 0): { u8: Uint8Array; dv: DataView } {
  const u8 = new Uint8Array(off + bytes.length + extra).fill(0xa5);
  u8.set(bytes, off);
  return { u8, dv: new DataView(u8.buffer) };
}

/** A copy of the Wikipedia header followed by its 95 payload bytes (all 0x00). */
function wikiPacket(): Uint8Array {
  const p = new Uint8Array(115);
  p.set(WIKI);
  return p;
}

test('field offsets, header length and protocol numbers', () => {
  assert.deepEqual(
    { ...IPV4 },
    { VER_IHL: 0, TOS: 1, LEN: 2, ID: 4, FRAG: 6, TTL: 8, PROTO: 9, CHECKSUM: 10, SRC: 12, DST: 16 },
  );
  assert.equal(IPV4_HEADER_LEN, 20);
  assert.deepEqual({ ...IpProto }, { ICMP: 1, TCP: 6, UDP: 17 });
});

test('the Wikipedia header read at an offset inside a bigger buffer', () => {
  const off = 29;
  const { dv } = inJunk(wikiPacket(), off, 7);
  assert.equal(headerLen(dv, off), 20);
  assert.equal(totalLen(dv, off), 115);
  assert.equal(proto(dv, off), IpProto.UDP);
  assert.equal(ttl(dv, off), 64);
  assert.equal(src(dv, off), 0xc0a80001);
  assert.equal(dst(dv, off), 0xc0a800c7);
  assert.equal(isFragment(dv, off), false); // DF only
});

test('the TCP SYN header: addresses above 2^31 read unsigned', () => {
  const { dv } = inJunk(SYN_IP, 3, 40);
  assert.equal(src(dv, 3), 0xc0a84002);
  assert.equal(dst(dv, 3), 0x5db8d822);
  assert.equal(proto(dv, 3), IpProto.TCP);
  assert.equal(totalLen(dv, 3), 60);
  assert.equal(dv.getUint16(3 + IPV4.ID), 0x3c1e);
});

test('a header with options: IHL 6 gives a 24-byte header', () => {
  const { u8, dv } = inJunk(IGMP_PACKET, 14);
  assert.equal(headerLen(dv, 14), 24);
  assert.equal(totalLen(dv, 14), 40);
  assert.equal(proto(dv, 14), 2);
  assert.equal(ttl(dv, 14), 1);
  assert.equal(dst(dv, 14), 0xe0000016);
  assert.equal(validate(dv, u8, 14, 40), Drop.NONE);
});

test('isFragment: MF or a non-zero offset, DF alone is not', () => {
  const cases: Array<[number, boolean]> = [
    [0x0000, false],
    [0x4000, false], // DF
    [0x2000, true], // MF, first fragment
    [0x00b9, true], // last fragment, offset 185*8
    [0x20b9, true], // middle fragment
    [0x4001, true], // DF with an offset (nonsense, but not the first piece)
    [0x8000, false], // the reserved bit only
  ];
  for (const [frag, expected] of cases) {
    const h = WIKI.slice();
    new DataView(h.buffer).setUint16(IPV4.FRAG, frag);
    assert.equal(isFragment(new DataView(h.buffer), 0), expected, frag.toString(16));
  }
});

test('validate: a good header is Drop.NONE, at an offset and with Ethernet padding after the datagram', () => {
  const { u8, dv } = inJunk(wikiPacket(), 14, 0);
  assert.equal(validate(dv, u8, 14, 115), Drop.NONE);
  const padded = inJunk(wikiPacket(), 14, 30);
  assert.equal(validate(padded.dv, padded.u8, 14, 145), Drop.NONE);
  const syn = inJunk(SYN_IP, 0, 40);
  assert.equal(validate(syn.dv, syn.u8, 0, 60), Drop.NONE);
});

test('validate: fewer than 20 bytes is IP_TRUNCATED', () => {
  for (const avail of [0, 1, 19]) {
    const { u8, dv } = inJunk(WIKI.subarray(0, avail), 6, 40);
    assert.equal(validate(dv, u8, 6, avail), Drop.IP_TRUNCATED, String(avail));
  }
});

test('validate: a version other than 4 is IP_BAD_VERSION', () => {
  for (const vihl of [0x65, 0x05, 0xf5, 0x35]) {
    const p = wikiPacket();
    p[0] = vihl;
    const { u8, dv } = inJunk(p, 2);
    assert.equal(validate(dv, u8, 2, 115), Drop.IP_BAD_VERSION, vihl.toString(16));
  }
});

test('validate: IHL below 5 or beyond the frame is IP_BAD_IHL', () => {
  for (const vihl of [0x40, 0x44]) {
    const p = wikiPacket();
    p[0] = vihl;
    const { u8, dv } = inJunk(p, 2);
    assert.equal(validate(dv, u8, 2, 115), Drop.IP_BAD_IHL, vihl.toString(16));
  }
  // IHL 15 (60 bytes) with only 40 bytes in the frame.
  const p = WIKI.slice();
  p[0] = 0x4f;
  const { u8, dv } = inJunk(p, 2, 20);
  assert.equal(validate(dv, u8, 2, 40), Drop.IP_BAD_IHL);
});

test('validate: a total length past the frame, or shorter than the header, is IP_BAD_LENGTH', () => {
  // 115 bytes claimed, 114 available (the junk after it must not count).
  const { u8, dv } = inJunk(wikiPacket().subarray(0, 114), 10, 50);
  assert.equal(validate(dv, u8, 10, 114), Drop.IP_BAD_LENGTH);
  const big = wikiPacket();
  new DataView(big.buffer).setUint16(IPV4.LEN, 0xffff);
  const b = inJunk(big, 0);
  assert.equal(validate(b.dv, b.u8, 0, 115), Drop.IP_BAD_LENGTH);
  const small = wikiPacket();
  new DataView(small.buffer).setUint16(IPV4.LEN, 19);
  const s = inJunk(small, 0);
  assert.equal(validate(s.dv, s.u8, 0, 115), Drop.IP_BAD_LENGTH);
  // IHL 6 but total length 20.
  const opt = IGMP_PACKET.slice();
  new DataView(opt.buffer).setUint16(IPV4.LEN, 20);
  const o = inJunk(opt, 0);
  assert.equal(validate(o.dv, o.u8, 0, 40), Drop.IP_BAD_LENGTH);
});

test('validate: any corrupted header byte is IP_BAD_CHECKSUM; the payload is not covered', () => {
  for (const at of [1, 4, 5, 8, 9, 10, 11, 12, 15, 16, 19]) {
    const p = wikiPacket();
    p[at] ^= 0x01;
    const { u8, dv } = inJunk(p, 5);
    assert.equal(validate(dv, u8, 5, 115), Drop.IP_BAD_CHECKSUM, `byte ${at}`);
  }
  const opt = IGMP_PACKET.slice();
  opt[22] ^= 0x80; // inside the Router Alert option
  const o = inJunk(opt, 0);
  assert.equal(validate(o.dv, o.u8, 0, 40), Drop.IP_BAD_CHECKSUM);
  const payload = wikiPacket();
  payload[60] = 0x77;
  const pl = inJunk(payload, 0);
  assert.equal(validate(pl.dv, pl.u8, 0, 115), Drop.NONE);
});

test('emitIpv4 writes the Wikipedia header into a junk-filled buffer, checksum b861 included', () => {
  const u8 = new Uint8Array(80).fill(0xa5);
  const dv = new DataView(u8.buffer);
  const at = emitIpv4(dv, u8, 17, IpProto.UDP, 0xc0a80001, 0xc0a800c7, 95, 64);
  assert.equal(at, 37);
  assert.deepEqual(u8.subarray(17, 37), WIKI);
  assert.ok(u8.subarray(0, 17).every((b) => b === 0xa5));
  assert.ok(u8.subarray(37).every((b) => b === 0xa5));
});

test('emitIpv4 writes the DNS query header (UDP, 37 bytes of payload)', () => {
  const u8 = new Uint8Array(20).fill(0xa5);
  emitIpv4(new DataView(u8.buffer), u8, 0, IpProto.UDP, 0xc0a84002, 0xc0a84001, 37, 64);
  assert.deepEqual(u8, hex('45000039 00004000 40113960 c0a84002 c0a84001'));
});

test('emitIpv4 then validate round trip for other protocols and TTLs', () => {
  for (const [p, t, len] of [
    [IpProto.ICMP, 255, 0],
    [IpProto.TCP, 1, 1460],
    [47, 128, 3],
  ] as const) {
    const u8 = new Uint8Array(20 + len).fill(0xa5);
    const dv = new DataView(u8.buffer);
    emitIpv4(dv, u8, 0, p, 0x0a000001, 0xffffffff, len, t);
    assert.equal(validate(dv, u8, 0, 20 + len), Drop.NONE);
    assert.equal(proto(dv, 0), p);
    assert.equal(ttl(dv, 0), t);
    assert.equal(dst(dv, 0), 0xffffffff);
    assert.equal(totalLen(dv, 0), 20 + len);
  }
});
