// UDP (RFC 768): a real DNS query read at an offset, checksum verification, and the builder.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EtherType, emitEthernet } from '../../src/wire/ethernet.js';
import { emitIpv4, IpProto } from '../../src/wire/ipv4.js';
import { checksumOk, dstPort, emitUdp, srcPort, UDP, UDP_HEADER_LEN, udpLen } from '../../src/wire/udp.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));

const VM_MAC = hex('525400123456');
const GW_MAC = hex('0200000000fe');
const VM_IP = 0xc0a84002;
const GW_IP = 0xc0a84001;

// "A? example.com." from 192.168.64.2:53123 to 192.168.64.1:53; tcpdump -vv: "udp sum ok".
const DNS_PAYLOAD = hex('2b3c 0100 0001 0000 0000 0000 07 6578616d706c65 03 636f6d 00 0001 0001');
const DNS_UDP = hex(`cf83 0035 0025 33ed ${Buffer.from(DNS_PAYLOAD).toString('hex')}`);
const DNS_FRAME = hex(
  `0200000000fe 525400123456 0800 45000039 00004000 40113960 c0a84002 c0a84001 ${Buffer.from(DNS_UDP).toString('hex')}`,
);

function inJunk(bytes: Uint8Array, off: number, extra = 9): { u8: Uint8Array; dv: DataView } {
  const u8 = new Uint8Array(off + bytes.length + extra).fill(0xa5);
  u8.set(bytes, off);
  return { u8, dv: new DataView(u8.buffer) };
}

test('field offsets and header length', () => {
  assert.deepEqual({ ...UDP }, { SRC_PORT: 0, DST_PORT: 2, LEN: 4, CHECKSUM: 6 });
  assert.equal(UDP_HEADER_LEN, 8);
  assert.equal(DNS_FRAME.length, 71);
});

test('the DNS query read at an offset inside a bigger buffer', () => {
  const { dv } = inJunk(DNS_FRAME, 40);
  const udp = 40 + 14 + 20;
  assert.equal(srcPort(dv, udp), 53123);
  assert.equal(dstPort(dv, udp), 53);
  assert.equal(udpLen(dv, udp), 37);
  assert.equal(dv.getUint16(udp + UDP.CHECKSUM), 0x33ed);
});

test('checksumOk: the real datagram verifies, with an odd length and junk right after it', () => {
  const { u8, dv } = inJunk(DNS_UDP, 21);
  assert.ok(checksumOk(dv, u8, 21, 37, VM_IP, GW_IP));
});

test('checksumOk: a changed payload byte, address, or length fails', () => {
  for (const at of [8, 20, 36]) {
    const p = DNS_UDP.slice();
    p[at] ^= 0x20;
    const { u8, dv } = inJunk(p, 0);
    assert.ok(!checksumOk(dv, u8, 0, 37, VM_IP, GW_IP), `byte ${at}`);
  }
  const { u8, dv } = inJunk(DNS_UDP, 0);
  assert.ok(!checksumOk(dv, u8, 0, 37, VM_IP, GW_IP + 1));
  assert.ok(!checksumOk(dv, u8, 0, 37, 0, GW_IP));
  assert.ok(!checksumOk(dv, u8, 0, 36, VM_IP, GW_IP));
});

test('checksumOk: a zero checksum means none was computed and is accepted (RFC 768)', () => {
  const p = DNS_UDP.slice();
  p[6] = 0;
  p[7] = 0;
  p[20] ^= 0xff;
  const { u8, dv } = inJunk(p, 3);
  assert.ok(checksumOk(dv, u8, 3, 37, 1, 2));
});

test('emitUdp writes the known DNS datagram into a junk-filled buffer around its payload', () => {
  const off = 13;
  const u8 = new Uint8Array(off + 37 + 11).fill(0xa5);
  const dv = new DataView(u8.buffer);
  u8.set(DNS_PAYLOAD, off + 8);
  const at = emitUdp(dv, u8, off, VM_IP, GW_IP, 53123, 53, DNS_PAYLOAD.length);
  assert.equal(at, off + 8);
  assert.deepEqual(u8.subarray(off, off + 37), DNS_UDP);
  assert.ok(u8.subarray(0, off).every((b) => b === 0xa5));
  assert.ok(u8.subarray(off + 37).every((b) => b === 0xa5));
});

test('emitEthernet + emitUdp + emitIpv4 build the whole DNS frame byte for byte', () => {
  const f = new Uint8Array(71).fill(0xa5);
  const dv = new DataView(f.buffer);
  const ip = emitEthernet(f, 0, GW_MAC, 0, VM_MAC, EtherType.IPV4);
  const udp = ip + 20;
  f.set(DNS_PAYLOAD, udp + 8);
  emitUdp(dv, f, udp, VM_IP, GW_IP, 53123, 53, DNS_PAYLOAD.length);
  emitIpv4(dv, f, ip, IpProto.UDP, VM_IP, GW_IP, 37, 64);
  assert.deepEqual(f, DNS_FRAME);
});

test('emitUdp sends a computed checksum of 0 as ffff (RFC 768), and that verifies', () => {
  // 10.0.0.1:1000 -> 10.0.0.2:2000 with payload e01f sums to ffff: the checksum is 0, sent as ffff.
  const u8 = new Uint8Array(10).fill(0xa5);
  u8.set([0xe0, 0x1f], 8);
  const dv = new DataView(u8.buffer);
  emitUdp(dv, u8, 0, 0x0a000001, 0x0a000002, 1000, 2000, 2);
  assert.deepEqual(u8, hex('03e8 07d0 000a ffff e01f'));
  assert.ok(checksumOk(dv, u8, 0, 10, 0x0a000001, 0x0a000002));
});

test('emitUdp with no payload', () => {
  const u8 = new Uint8Array(8).fill(0xa5);
  emitUdp(new DataView(u8.buffer), u8, 0, 0x0a000001, 0x0a000002, 68, 67, 0);
  // 0a00+0001+0a00+0002+0011+0008 + 0044+0043+0008 = 14ab -> eb54
  assert.deepEqual(u8, hex('0044 0043 0008 eb54'));
});
