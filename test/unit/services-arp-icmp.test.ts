// The gateway's in-place answers: an ARP request turned into its reply, an echo request into its echo reply.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { answerArpInPlace } from '../../src/services/arp.js';
import { answerEchoInPlace } from '../../src/services/icmp.js';
import { checksum } from '../../src/wire/checksum.js';
import { IPV4 } from '../../src/wire/ipv4.js';
import { prng } from '../lib/prng.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));

const GW_MAC = hex('0200000000fe');

// who-has 192.168.64.1 tell 192.168.64.2, from 52:54:00:12:34:56.
const ARP_REQUEST = hex(
  'ffffffffffff 525400123456 0806 0001 0800 06 04 0001 525400123456 c0a84002 000000000000 c0a84001',
);
// 192.168.64.1 is-at 02:00:00:00:00:fe, to the VM.
const ARP_REPLY = hex(
  '525400123456 0200000000fe 0806 0001 0800 06 04 0002 0200000000fe c0a84001 525400123456 c0a84002',
);

// Linux-style ping 192.168.64.2 -> 192.168.64.1, id 0x0b7a seq 1, 56 bytes, TTL 64, IP id a1b2.
const PAYLOAD =
  '5f1a2b3c00000000 101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637';
const ECHO_REQUEST = hex(
  `0200000000fe 525400123456 0800 4500004c a1b24000 400197aa c0a84002 c0a84001 0800 a35b 0b7a 0001 ${PAYLOAD}`,
);
// Its reply; tcpdump -vv decodes both with no checksum complaint.
const ECHO_REPLY = hex(
  `525400123456 0200000000fe 0800 4500004c a1b24000 400197aa c0a84001 c0a84002 0000 ab5b 0b7a 0001 ${PAYLOAD}`,
);
// An echo request that is all zeros after the type: id 0, seq 0, 8 zero bytes; TTL 255.
const ZERO_ECHO = hex(
  '0200000000fe 525400123456 0800 45000024 00014000 ff017a83 c0a84002 c0a84001 0800 f7ff 0000 0000 0000000000000000',
);

function inJunk(frame: Uint8Array, off: number, extra = 24): { u8: Uint8Array; dv: DataView } {
  const u8 = new Uint8Array(off + frame.length + extra).fill(0xa5);
  u8.set(frame, off);
  return { u8, dv: new DataView(u8.buffer) };
}

test('answerArpInPlace turns the real request into the known reply, at an offset, touching nothing else', () => {
  const off = 17;
  const { u8, dv } = inJunk(ARP_REQUEST, off);
  assert.equal(answerArpInPlace(u8, dv, off, GW_MAC), 42);
  assert.deepEqual(u8.subarray(off, off + 42), ARP_REPLY);
  assert.ok(u8.subarray(0, off).every((b) => b === 0xa5));
  assert.ok(u8.subarray(off + 42).every((b) => b === 0xa5));
});

test('answerArpInPlace on a request padded to 60 bytes: a 42-byte reply, the padding left alone', () => {
  const padded = new Uint8Array(60);
  padded.set(ARP_REQUEST);
  padded.fill(0x5a, 42);
  const { u8, dv } = inJunk(padded, 0);
  assert.equal(answerArpInPlace(u8, dv, 0, GW_MAC), 42);
  assert.deepEqual(u8.subarray(0, 42), ARP_REPLY);
  assert.ok(u8.subarray(42, 60).every((b) => b === 0x5a));
});

test('answerArpInPlace answers a probe (sender 0.0.0.0) back to 0.0.0.0 at the VM MAC', () => {
  const probe = ARP_REQUEST.slice();
  probe.set([0, 0, 0, 0], 14 + 14); // SPA
  const { u8, dv } = inJunk(probe, 3);
  answerArpInPlace(u8, dv, 3, GW_MAC);
  const expected = ARP_REPLY.slice();
  expected.set([0, 0, 0, 0], 14 + 24); // TPA
  assert.deepEqual(u8.subarray(3, 45), expected);
});

test('answerArpInPlace answers for whatever address was asked, from the MAC given', () => {
  const req = ARP_REQUEST.slice();
  req.set(hex('0a0000fe'), 14 + 24);
  const { u8, dv } = inJunk(req, 0);
  answerArpInPlace(u8, dv, 0, hex('525400abcdef'));
  assert.deepEqual(u8.subarray(14 + 8, 14 + 18), hex('525400abcdef 0a0000fe')); // SHA, SPA
  assert.deepEqual(u8.subarray(6, 12), hex('525400abcdef'));
});

test('answerEchoInPlace turns the real ping into the known reply, at an offset, touching nothing else', () => {
  const off = 29;
  const { u8, dv } = inJunk(ECHO_REQUEST, off);
  const len = answerEchoInPlace(u8, dv, off, off + 14, off + 34, 76, GW_MAC);
  assert.equal(len, 90);
  assert.deepEqual(u8.subarray(off, off + 90), ECHO_REPLY);
  assert.equal(checksum(u8, off + 14, 20), 0);
  assert.equal(checksum(u8, off + 34, 56), 0);
  assert.ok(u8.subarray(0, off).every((b) => b === 0xa5));
  assert.ok(u8.subarray(off + 90).every((b) => b === 0xa5));
});

test('answerEchoInPlace sets TTL 64 and keeps the IPv4 checksum right whatever the request TTL', () => {
  for (const ttlIn of [1, 63, 64, 65, 128, 255]) {
    const req = ECHO_REQUEST.slice();
    const rdv = new DataView(req.buffer);
    req[14 + IPV4.TTL] = ttlIn;
    rdv.setUint16(14 + IPV4.CHECKSUM, 0);
    rdv.setUint16(14 + IPV4.CHECKSUM, checksum(req, 14, 20));
    const { u8, dv } = inJunk(req, 0);
    answerEchoInPlace(u8, dv, 0, 14, 34, 76, GW_MAC);
    assert.equal(u8[14 + IPV4.TTL], 64, `ttl ${ttlIn}`);
    assert.equal(checksum(u8, 14, 20), 0, `IPv4 checksum after ttl ${ttlIn}`);
    assert.equal(checksum(u8, 34, 56), 0, `ICMP checksum after ttl ${ttlIn}`);
    assert.deepEqual(u8.subarray(34 + 4, 90), ECHO_REPLY.subarray(34 + 4)); // id, seq, payload unchanged
  }
});

test('an all-zero echo: the reply checksum is ffff (not 0000) and verifies', () => {
  const { u8, dv } = inJunk(ZERO_ECHO, 5);
  assert.equal(checksum(u8, 5 + 34, 16), 0); // the request is valid
  assert.equal(answerEchoInPlace(u8, dv, 5, 5 + 14, 5 + 34, 36, GW_MAC), 50);
  assert.deepEqual(u8.subarray(5 + 34, 5 + 50), hex('0000 ffff 0000 0000 0000000000000000'));
  assert.equal(checksum(u8, 5 + 34, 16), 0);
  assert.equal(checksum(u8, 5 + 14, 20), 0);
  assert.equal(u8[5 + 14 + IPV4.TTL], 64);
  assert.equal(dv.getUint32(5 + 14 + IPV4.SRC), 0xc0a84001);
  assert.equal(dv.getUint32(5 + 14 + IPV4.DST), 0xc0a84002);
});

test('an echo request carried in a header with options (IHL 6)', () => {
  // 24-byte header with a 4-byte NOP/EOL option; checksum filled with the full computation.
  const f = new Uint8Array(14 + 24 + 8 + 4);
  f.set(ECHO_REQUEST.subarray(0, 14));
  const dv0 = new DataView(f.buffer);
  f.set(hex('46000030 12344000 40010000 c0a84002 c0a84001 01010100'), 14);
  dv0.setUint16(14 + IPV4.CHECKSUM, checksum(f, 14, 24));
  f.set(hex('0800 0000 4242 0007 deadbeef'), 38);
  dv0.setUint16(38 + 2, checksum(f, 38, 12));
  const { u8, dv } = inJunk(f, 0);
  assert.equal(answerEchoInPlace(u8, dv, 0, 14, 38, 48, GW_MAC), 62);
  assert.equal(u8[38], 0);
  assert.equal(checksum(u8, 14, 24), 0);
  assert.equal(checksum(u8, 38, 12), 0);
  assert.deepEqual(u8.subarray(14 + 20, 14 + 24), hex('01010100')); // options kept
});

test('random echo requests: every reply verifies with a full checksum (seed 792)', () => {
  const rand = prng(792);
  for (let n = 0; n < 5000; n++) {
    const payloadLen = Math.floor(rand() * 120);
    const icmpLen = 8 + payloadLen;
    const f = new Uint8Array(14 + 20 + icmpLen);
    const dv0 = new DataView(f.buffer);
    f.set(ECHO_REQUEST.subarray(0, 14));
    const zeros = rand() < 0.1; // now and then an all-zero message, the update's corner case
    dv0.setUint16(14, 0x4500);
    dv0.setUint16(14 + 2, 20 + icmpLen);
    dv0.setUint16(14 + 4, Math.floor(rand() * 0x10000));
    dv0.setUint16(14 + 6, 0x4000);
    f[14 + 8] = Math.floor(rand() * 256);
    f[14 + 9] = 1;
    dv0.setUint32(14 + 12, Math.floor(rand() * 2 ** 32));
    dv0.setUint32(14 + 16, 0xc0a84001);
    dv0.setUint16(14 + 10, checksum(f, 14, 20));
    f[34] = 8;
    if (!zeros) {
      for (let i = 34 + 4; i < f.length; i++) f[i] = rand() < 0.3 ? 0 : Math.floor(rand() * 256);
    }
    dv0.setUint16(36, checksum(f, 34, icmpLen));
    const off = Math.floor(rand() * 64);
    const { u8, dv } = inJunk(f, off, 8);
    const len = answerEchoInPlace(u8, dv, off, off + 14, off + 34, 20 + icmpLen, GW_MAC);
    assert.equal(len, f.length);
    assert.equal(u8[off + 34], 0);
    assert.equal(checksum(u8, off + 14, 20), 0, `IPv4 checksum, case ${n}`);
    assert.equal(checksum(u8, off + 34, icmpLen), 0, `ICMP checksum, case ${n}`);
    assert.deepEqual(u8.subarray(off, off + 6), f.subarray(6, 12));
    assert.deepEqual(u8.subarray(off + 6, off + 12), GW_MAC);
    assert.equal(dv.getUint32(off + 14 + IPV4.DST), dv0.getUint32(14 + IPV4.SRC));
    assert.deepEqual(u8.subarray(off + 38, off + f.length), f.subarray(38));
    assert.ok(u8.subarray(off + f.length).every((b) => b === 0xa5));
  }
});
