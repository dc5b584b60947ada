// ICMPv4 (RFC 792): a Linux ping echo request and an error message read at an offset.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checksum } from '../../src/wire/checksum.js';
import { echoId, ICMP, ICMP_HEADER_LEN, IcmpType, icmpCode, icmpType } from '../../src/wire/icmp.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));

// "ICMP echo request, id 2938, seq 1, length 56" from 192.168.64.2 to 192.168.64.1, as Linux ping sends
// it (8 bytes of timestamp, then 10 11 12 ... 37); tcpdump reports no checksum error.
const ECHO_FRAME = hex(
  '0200000000fe 525400123456 0800' +
    '4500004c a1b24000 400197aa c0a84002 c0a84001' +
    '0800 a35b 0b7a 0001 5f1a2b3c00000000' +
    '101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637',
);

// Port unreachable (type 3 code 3) quoting a UDP datagram's IP header and first 8 bytes.
const UNREACH = hex(
  '0303 0000 00000000' + '45000039 00004000 40113960 c0a84002 c0a84001' + 'cf83 0035 0025 33ed',
);

test('field offsets, header length and types', () => {
  assert.deepEqual({ ...ICMP }, { TYPE: 0, CODE: 1, CHECKSUM: 2, ID: 4, SEQ: 6 });
  assert.equal(ICMP_HEADER_LEN, 8);
  assert.deepEqual(
    { ...IcmpType },
    { ECHO_REPLY: 0, DEST_UNREACHABLE: 3, ECHO_REQUEST: 8, TIME_EXCEEDED: 11 },
  );
});

test('the ping request read at an offset inside a bigger buffer', () => {
  const off = 19;
  const u8 = new Uint8Array(off + ECHO_FRAME.length + 13).fill(0xa5);
  u8.set(ECHO_FRAME, off);
  const dv = new DataView(u8.buffer);
  const icmp = off + 14 + 20;
  assert.equal(icmpType(dv, icmp), IcmpType.ECHO_REQUEST);
  assert.equal(icmpCode(dv, icmp), 0);
  assert.equal(echoId(dv, icmp), 0x0b7a);
  assert.equal(dv.getUint16(icmp + ICMP.SEQ), 1);
  assert.equal(dv.getUint16(icmp + ICMP.CHECKSUM), 0xa35b);
  assert.equal(checksum(u8, icmp, 56), 0); // the checksum covers the whole 56-byte message
});

test('an error message: type and code read, unknown values pass through as numbers', () => {
  const u8 = new Uint8Array(7 + UNREACH.length).fill(0xa5);
  u8.set(UNREACH, 7);
  const dv = new DataView(u8.buffer);
  assert.equal(icmpType(dv, 7), IcmpType.DEST_UNREACHABLE);
  assert.equal(icmpCode(dv, 7), 3);
  u8[7] = 42; // extended echo request (RFC 8335)
  u8[8] = 0xff;
  assert.equal(icmpType(dv, 7), 42);
  assert.equal(icmpCode(dv, 7), 255);
});

test('echoId reads the full 16 bits', () => {
  const m = hex('0800 0000 ffff 8000');
  assert.equal(echoId(new DataView(m.buffer), 0), 0xffff);
});
