// ARP (RFC 826): a real request read at an offset, the Ethernet/IPv4 check, and the builder.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ARP, ARP_LEN, ArpOp, emitArp, isEthernetIpv4, op, senderIp, targetIp } from '../../src/wire/arp.js';
import { EtherType, emitEthernet } from '../../src/wire/ethernet.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));

const VM_MAC = hex('525400123456');
const GW_MAC = hex('0200000000fe');
const VM_IP = 0xc0a84002; // 192.168.64.2
const GW_IP = 0xc0a84001; // 192.168.64.1

// "who-has 192.168.64.1 tell 192.168.64.2" as the VM sends it (tcpdump decodes it so).
const REQUEST_FRAME = hex(
  'ffffffffffff 525400123456 0806' + '0001 0800 06 04 0001 525400123456 c0a84002 000000000000 c0a84001',
);
// "192.168.64.1 is-at 02:00:00:00:00:fe", to the VM.
const REPLY_ARP = hex('0001 0800 06 04 0002 0200000000fe c0a84001 525400123456 c0a84002');

function inJunk(bytes: Uint8Array, off: number): { u8: Uint8Array; dv: DataView } {
  const u8 = new Uint8Array(off + bytes.length + 20).fill(0xa5);
  u8.set(bytes, off);
  return { u8, dv: new DataView(u8.buffer) };
}

test('field offsets and length', () => {
  assert.deepEqual(
    { ...ARP },
    { HTYPE: 0, PTYPE: 2, HLEN: 4, PLEN: 5, OPER: 6, SHA: 8, SPA: 14, THA: 18, TPA: 24 },
  );
  assert.equal(ARP_LEN, 28);
  assert.deepEqual({ ...ArpOp }, { REQUEST: 1, REPLY: 2 });
});

test('a real ARP request read at an offset inside a bigger buffer', () => {
  const off = 37;
  const { u8, dv } = inJunk(REQUEST_FRAME, off);
  const a = off + 14;
  assert.ok(isEthernetIpv4(dv, a, 28));
  assert.equal(op(dv, a), ArpOp.REQUEST);
  assert.equal(senderIp(dv, a), VM_IP);
  assert.equal(targetIp(dv, a), GW_IP);
  assert.deepEqual(u8.subarray(a + ARP.SHA, a + ARP.SHA + 6), VM_MAC);
});

test('addresses above 2^31 are read unsigned', () => {
  const p = REQUEST_FRAME.slice(14);
  p.set(hex('fe000001'), ARP.SPA);
  p.set(hex('ffffffff'), ARP.TPA);
  const dv = new DataView(p.buffer);
  assert.equal(senderIp(dv, 0), 0xfe000001);
  assert.equal(targetIp(dv, 0), 0xffffffff);
});

test('isEthernetIpv4 refuses short payloads and other hardware or protocol types', () => {
  const base = REQUEST_FRAME.slice(14);
  assert.ok(isEthernetIpv4(new DataView(base.buffer), 0, 28));
  assert.ok(isEthernetIpv4(new DataView(base.buffer), 0, 46)); // Ethernet padding after it is fine
  assert.ok(!isEthernetIpv4(new DataView(base.buffer), 0, 27));
  assert.ok(!isEthernetIpv4(new DataView(base.buffer), 0, 0));
  const bad: Array<[string, number, number[]]> = [
    ['htype 6 (IEEE 802)', ARP.HTYPE, [0x00, 0x06]],
    ['ptype IPv6', ARP.PTYPE, [0x86, 0xdd]],
    ['hlen 8', ARP.HLEN, [8]],
    ['plen 16', ARP.PLEN, [16]],
  ];
  for (const [name, at, bytes] of bad) {
    const p = base.slice();
    p.set(bytes, at);
    assert.ok(!isEthernetIpv4(new DataView(p.buffer), 0, 28), name);
  }
});

test('emitArp writes the known request into a junk-filled buffer', () => {
  const big = new Uint8Array(80).fill(0xa5);
  const bdv = new DataView(big.buffer);
  const end = emitArp(bdv, big, 11, ArpOp.REQUEST, VM_MAC, VM_IP, new Uint8Array(6), 0, GW_IP);
  assert.equal(end, 11 + 28);
  assert.deepEqual(big.subarray(11, 39), REQUEST_FRAME.subarray(14));
  assert.ok(big.subarray(0, 11).every((b) => b === 0xa5));
  assert.ok(big.subarray(39).every((b) => b === 0xa5));
});

test('emitArp writes a reply, reading the target MAC from an offset', () => {
  const big = new Uint8Array(60).fill(0xa5);
  const holder = hex('ffff 525400123456');
  emitArp(new DataView(big.buffer), big, 4, ArpOp.REPLY, GW_MAC, GW_IP, holder, 2, VM_IP);
  assert.deepEqual(big.subarray(4, 32), REPLY_ARP);
});

test('emitEthernet + emitArp build the whole request frame byte for byte', () => {
  const f = new Uint8Array(42).fill(0xa5);
  const a = emitEthernet(f, 0, hex('ffffffffffff'), 0, VM_MAC, EtherType.ARP);
  emitArp(new DataView(f.buffer), f, a, ArpOp.REQUEST, VM_MAC, VM_IP, new Uint8Array(6), 0, GW_IP);
  assert.deepEqual(f, REQUEST_FRAME);
});
