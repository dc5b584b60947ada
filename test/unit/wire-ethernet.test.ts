// Ethernet II header: accessors over a known frame at an offset, MAC helpers, and the header builder.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ETH,
  ETH_HEADER_LEN,
  EtherType,
  emitEthernet,
  etherType,
  isBroadcastMac,
  isGroupMac,
  macKey,
  sameMac,
  writeMac,
} from '../../src/wire/ethernet.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));

// A DNS query from a VM (52:54:00:12:34:56) to the gateway (02:00:00:00:00:fe); tcpdump-checked.
const DNS_FRAME = hex(
  '0200000000fe 525400123456 0800' +
    '45000039 00004000 40113960 c0a84002 c0a84001' +
    'cf83 0035 0025 33ed 2b3c01000001000000000000076578616d706c6503636f6d0000010001',
);
// An ARP request from the VM, broadcast.
const ARP_FRAME = hex(
  'ffffffffffff 525400123456 0806 0001 0800 06 04 0001 525400123456 c0a84002 000000000000 c0a84001',
);

/** `frame` copied at `off` into a buffer filled with 0xa5. */
function inJunk(frame: Uint8Array, off: number, extra = 16): { u8: Uint8Array; dv: DataView } {
  const u8 = new Uint8Array(off + frame.length + extra).fill(0xa5);
  u8.set(frame, off);
  return { u8, dv: new DataView(u8.buffer) };
}

test('field offsets and header length', () => {
  assert.deepEqual({ ...ETH }, { DST: 0, SRC: 6, TYPE: 12 });
  assert.equal(ETH_HEADER_LEN, 14);
  assert.equal(EtherType.IPV4, 0x0800);
  assert.equal(EtherType.ARP, 0x0806);
  assert.equal(EtherType.VLAN, 0x8100);
  assert.equal(EtherType.IPV6, 0x86dd);
});

test('etherType and the MACs of a known frame read at an offset inside a bigger buffer', () => {
  const off = 23;
  const { u8, dv } = inJunk(DNS_FRAME, off);
  assert.equal(etherType(dv, off), 0x0800);
  assert.equal(macKey(u8, off + ETH.DST), 0x0200000000fe);
  assert.equal(macKey(u8, off + ETH.SRC), 0x525400123456);
  const arp = inJunk(ARP_FRAME, 5);
  assert.equal(etherType(arp.dv, 5), EtherType.ARP);
  assert.ok(isBroadcastMac(arp.u8, 5 + ETH.DST));
  assert.ok(!isBroadcastMac(arp.u8, 5 + ETH.SRC));
});

test('macKey: 48 bits exactly, every byte counts', () => {
  assert.equal(macKey(hex('000000000000'), 0), 0);
  assert.equal(macKey(hex('ffffffffffff'), 0), 281474976710655);
  assert.equal(macKey(hex('800000000000'), 0), 2 ** 47);
  assert.equal(macKey(hex('000000000001'), 0), 1);
  const base = hex('525400123456');
  const keys = new Set<number>([macKey(base, 0)]);
  for (let i = 0; i < 6; i++) {
    for (const bit of [0x01, 0x80]) {
      const m = base.slice();
      m[i] ^= bit;
      keys.add(macKey(m, 0));
    }
  }
  assert.equal(keys.size, 13);
});

test('sameMac: every byte counts, at any offset on either side', () => {
  const buf = hex('aa 52 54 00 12 34 56 bb');
  const mac = hex('ff 52 54 00 12 34 56');
  assert.equal(sameMac(buf, 1, mac, 1), true);
  assert.equal(sameMac(buf, 1, mac.subarray(1)), true);
  for (let i = 0; i < 6; i++) {
    const other = Uint8Array.from(mac.subarray(1));
    other[i] ^= 0x01;
    assert.equal(sameMac(buf, 1, other), false, `byte ${i}`);
  }
  assert.equal(sameMac(buf, 0, mac, 1), false);
});

test('isGroupMac: the I/G bit of the first byte', () => {
  const cases: Array<[string, boolean]> = [
    ['ffffffffffff', true],
    ['01005e0000fb', true], // IPv4 multicast (mDNS)
    ['333300000001', true], // IPv6 multicast
    ['0180c200000e', true], // LLDP
    ['525400123456', false],
    ['020000000000', false], // locally administered unicast
    ['fe0000000000', false],
  ];
  for (const [m, group] of cases) {
    const { u8 } = inJunk(hex(m), 3);
    assert.equal(isGroupMac(u8, 3), group, m);
  }
});

test('isBroadcastMac: all six bytes ff and nothing else', () => {
  assert.ok(isBroadcastMac(hex('ffffffffffff'), 0));
  for (let i = 0; i < 6; i++) {
    const m = hex('ffffffffffff');
    m[i] = 0xfe;
    assert.ok(!isBroadcastMac(m, 0), `byte ${i}`);
  }
  assert.ok(!isBroadcastMac(hex('01005e0000fb'), 0));
  // Only the six bytes at the offset are read.
  const u8 = new Uint8Array(20).fill(0x00);
  u8.fill(0xff, 7, 13);
  assert.ok(isBroadcastMac(u8, 7));
  assert.ok(!isBroadcastMac(u8, 6));
  assert.ok(!isBroadcastMac(u8, 8));
});

test('writeMac copies six bytes from an offset and nothing else', () => {
  const u8 = new Uint8Array(12).fill(0xa5);
  writeMac(u8, 3, hex('00 11 22 33 44 55 66 77'), 2);
  assert.deepEqual(u8, hex('a5a5a5 223344556677 a5a5a5'));
});

test('emitEthernet into a junk-filled buffer writes the known header and returns the payload offset', () => {
  const u8 = new Uint8Array(64).fill(0xa5);
  const dstHolder = hex('aabbcc 0200000000fe');
  const at = emitEthernet(u8, 9, dstHolder, 3, hex('525400123456'), EtherType.IPV4);
  assert.equal(at, 9 + 14);
  assert.deepEqual(u8.subarray(9, 23), DNS_FRAME.subarray(0, 14));
  assert.ok(u8.subarray(0, 9).every((b) => b === 0xa5));
  assert.ok(u8.subarray(23).every((b) => b === 0xa5));
});

test('emitEthernet writes the ARP request header, and any EtherType value unchanged', () => {
  const u8 = new Uint8Array(14).fill(0xa5);
  emitEthernet(u8, 0, hex('ffffffffffff'), 0, hex('525400123456'), EtherType.ARP);
  assert.deepEqual(u8, ARP_FRAME.subarray(0, 14));
  emitEthernet(u8, 0, hex('ffffffffffff'), 0, hex('525400123456'), 0xabcd);
  assert.equal(etherType(new DataView(u8.buffer), 0), 0xabcd);
});
