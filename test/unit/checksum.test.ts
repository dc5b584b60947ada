// The Internet checksum (RFC 1071), its incremental update (RFC 1624) and the pseudo-header sum, against
// published examples and packets whose checksums tcpdump confirmed.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checksum,
  fold,
  pseudoHeader,
  sum,
  update16,
  update32,
  writeMacUpdating,
} from '../../src/wire/checksum.js';
import { prng } from '../lib/prng.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));

// The IPv4 header of the Wikipedia "IPv4 header checksum" example: 192.168.0.1 -> 192.168.0.199, UDP,
// total length 115, checksum 0xb861.
const WIKI_HEADER = hex('45000073 00004000 4011b861 c0a80001 c0a800c7');

// A DNS query for example.com A, 192.168.64.2:53123 -> 192.168.64.1:53 (UDP segment only; 37 bytes, odd).
// tcpdump -vv says "udp sum ok" for checksum 0x33ed.
const DNS_UDP = hex(
  'cf83 0035 0025 33ed 2b3c 0100 0001 0000 0000 0000 07 6578616d706c65 03 636f6d 00 0001 0001',
);
const VM_IP = 0xc0a84002;
const GW_IP = 0xc0a84001;

test('RFC 1071 section 3 example: words 0001 f203 f4f5 f6f7 sum to 2ddf0, fold to ddf2, checksum 220d', () => {
  const bytes = hex('00 01 f2 03 f4 f5 f6 f7');
  // sum() returns the partial sum with its carries already folded in: 2ddf0 is ddf2.
  assert.equal(fold(sum(bytes, 0, 8, 0)), 0x220d);
  assert.equal(sum(bytes, 0, 8, 0) % 0xffff, 0x2ddf0 % 0xffff);
  assert.equal(fold(0x2ddf0), 0x220d);
  assert.equal(checksum(bytes, 0, 8), 0x220d);
});

test('the RFC 1071 example read at an offset inside a junk-filled buffer', () => {
  const buf = new Uint8Array(40).fill(0xa5);
  buf.set(hex('00 01 f2 03 f4 f5 f6 f7'), 13);
  assert.equal(checksum(buf, 13, 8), 0x220d);
});

test('an odd length is padded with a zero byte (RFC 1071 4.1)', () => {
  // 0001 + f200 = f201 -> 0dfe; the 0xa5 after the last byte must not be read.
  const buf = Uint8Array.of(0x00, 0x01, 0xf2, 0xa5, 0xa5);
  assert.equal(checksum(buf, 0, 3), 0x0dfe);
  assert.equal(sum(buf, 0, 3, 0), 0xf201);
  assert.equal(checksum(buf, 0, 1), 0xffff); // one zero byte: sum 0, complement ffff
  assert.equal(checksum(buf, 0, 0), 0xffff); // nothing at all
});

test('a partial sum passed in is added before folding', () => {
  assert.equal(checksum(hex('00 01 f2 03'), 0, 4, 0xf4f5 + 0xf6f7), 0x220d);
});

test('fold handles carries of any size', () => {
  assert.equal(fold(0), 0xffff);
  assert.equal(fold(0xffff), 0);
  assert.equal(fold(0x10000), 0xfffe); // 1 after the end-around carry
  assert.equal(fold(0x1fffe), 0); // ffff
  assert.equal(fold(2 ** 32), 0xfffe); // 2^32 = 1 (mod ffff)
  assert.equal(fold(2 ** 40 + 5), 0xfefa); // 2^40 = 2^8 (mod ffff): 0105
  assert.equal(fold(2 ** 48 + 5), 0xfff9); // 2^48 = 1 (mod ffff): 0006
  assert.equal(fold(2 ** 52), 0xffef); // 2^52 = 2^4 (mod ffff)
});

test('64 KiB of 0xff: a long sum does not lose bits', () => {
  const ff = new Uint8Array(65534).fill(0xff);
  assert.equal(checksum(ff, 0, ff.length), 0);
  const mixed = new Uint8Array(65535).fill(0xff);
  mixed[65534] = 0x01; // ...ffff + 0100 = 0100 after folding -> feff
  assert.equal(checksum(mixed, 0, mixed.length), 0xfeff);
});

test('the Wikipedia IPv4 header: checksum b861 with the field zeroed, 0 over the whole header', () => {
  assert.equal(checksum(WIKI_HEADER, 0, 20), 0);
  const zeroed = WIKI_HEADER.slice();
  zeroed[10] = 0;
  zeroed[11] = 0;
  assert.equal(checksum(zeroed, 0, 20), 0xb861);
  const inJunk = new Uint8Array(64).fill(0xa5);
  inJunk.set(zeroed, 31);
  assert.equal(checksum(inJunk, 31, 20), 0xb861);
});

test('pseudoHeader: the sum of addresses, protocol and length (RFC 768)', () => {
  // 10.0.0.1 -> 10.0.0.2, UDP, 10 bytes: 0a00+0001+0a00+0002+0011+000a = 141e
  assert.equal(pseudoHeader(0x0a000001, 0x0a000002, 17, 10), 0x141e);
  assert.equal(pseudoHeader(0xffffffff, 0xffffffff, 6, 0xffff), 4 * 0xffff + 6 + 0xffff);
});

test('pseudoHeader with a real UDP datagram: the DNS query checksums to 0, and to 33ed with the field zeroed', () => {
  const ph = pseudoHeader(VM_IP, GW_IP, 17, DNS_UDP.length);
  assert.equal(checksum(DNS_UDP, 0, DNS_UDP.length, ph), 0);
  const zeroed = DNS_UDP.slice();
  zeroed[6] = 0;
  zeroed[7] = 0;
  assert.equal(checksum(zeroed, 0, zeroed.length, ph), 0x33ed);
  // The wrong destination address must not verify.
  assert.notEqual(checksum(DNS_UDP, 0, DNS_UDP.length, pseudoHeader(VM_IP, GW_IP + 1, 17, 37)), 0);
});

test('update16 on the Wikipedia header: TTL 64 -> 63 gives the recomputed checksum', () => {
  const h = WIKI_HEADER.slice();
  const dv = new DataView(h.buffer);
  const old = dv.getUint16(8);
  h[8] = 63;
  const now = dv.getUint16(8);
  const updated = update16(0xb861, old, now);
  dv.setUint16(10, 0);
  assert.equal(updated, checksum(h, 0, 20));
  assert.equal(updated, 0xb961); // the TTL byte is the high byte of its word: +0100 in the sum, -0100 here
});

test('update32 on the Wikipedia header: rewriting the destination address (NAT)', () => {
  const h = WIKI_HEADER.slice();
  const dv = new DataView(h.buffer);
  const updated = update32(0xb861, 0xc0a800c7, 0x0a000005);
  dv.setUint32(16, 0x0a000005);
  dv.setUint16(10, 0);
  assert.equal(updated, checksum(h, 0, 20));
});

test('update16 corner cases with 0x0000 and 0xffff', () => {
  // A checksum of 0: data 0001 fffe sums to ffff. Changing 0001 -> 0002 gives sum 0001 -> fffe.
  assert.equal(checksum(hex('0001fffe'), 0, 4), 0);
  assert.equal(update16(0x0000, 0x0001, 0x0002), 0xfffe);
  assert.equal(checksum(hex('0002fffe'), 0, 4), 0xfffe);
  // A word going from +0 (0000) to -0 (ffff) leaves the ones'-complement sum alone.
  assert.equal(checksum(hex('12340000'), 0, 4), 0xedcb);
  assert.equal(checksum(hex('1234ffff'), 0, 4), 0xedcb);
  assert.equal(update16(0xedcb, 0x0000, 0xffff), 0xedcb);
  assert.equal(update16(0xedcb, 0xffff, 0x0000), 0xedcb);
  // All-zero data has checksum ffff; giving it a non-zero word agrees with the full computation.
  assert.equal(update16(0xffff, 0x0000, 0x1234), checksum(hex('12340000'), 0, 4));
  // Known limit of RFC 1624 eqn. 3, which callers must handle (services/icmp.ts does): when the data
  // becomes all zeros the update yields 0000 (-0) while the full computation gives ffff.
  assert.equal(update16(0xedcb, 0x1234, 0x0000), 0x0000);
  assert.equal(checksum(hex('00000000'), 0, 4), 0xffff);
});

/** Random data of `words` 16-bit words where about half the words are 0000 or ffff. */
function randomWords(rand: () => number, words: number): Uint8Array {
  const d = new Uint8Array(words * 2);
  const dv = new DataView(d.buffer);
  for (let i = 0; i < words; i++) dv.setUint16(i * 2, pick16(rand));
  return d;
}

function pick16(rand: () => number): number {
  const r = rand();
  if (r < 0.2) return 0x0000;
  if (r < 0.4) return 0xffff;
  if (r < 0.45) return 0x0001;
  if (r < 0.5) return 0xfffe;
  return Math.floor(rand() * 0x10000);
}

const isAllZero = (d: Uint8Array) => d.every((b) => b === 0);

test('update16 agrees with a full recomputation for 50000 random edits (seed 1624)', () => {
  const rand = prng(1624);
  let compared = 0;
  for (let n = 0; n < 50000; n++) {
    const words = 1 + Math.floor(rand() * 12);
    const d = randomWords(rand, words);
    const dv = new DataView(d.buffer);
    let check = checksum(d, 0, d.length);
    // Several edits in a row, each updating the previous result.
    const edits = 1 + Math.floor(rand() * 4);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(rand() * words) * 2;
      const old = dv.getUint16(at);
      const now = pick16(rand);
      dv.setUint16(at, now);
      check = update16(check, old, now);
      const full = checksum(d, 0, d.length);
      if (isAllZero(d)) {
        // The one case where eqn. 3 and the full sum differ in representation (see the corner-case test).
        assert.equal(check, 0x0000);
        check = full;
        continue;
      }
      assert.equal(check, full, `data ${Buffer.from(d).toString('hex')} edit ${old} -> ${now} at ${at}`);
      compared++;
    }
  }
  assert.ok(compared > 100000);
});

test('update32 agrees with a full recomputation for 50000 random 32-bit edits (seed 3022)', () => {
  const rand = prng(3022);
  for (let n = 0; n < 50000; n++) {
    const words = 2 + 2 * Math.floor(rand() * 6);
    const d = randomWords(rand, words);
    d[0] |= 0x40; // keep the data non-zero so the full sum and eqn. 3 use the same representation
    const dv = new DataView(d.buffer);
    const before = checksum(d, 0, d.length);
    const at = 4 * Math.floor(rand() * (words / 2));
    const old = dv.getUint32(at);
    const r = rand();
    const now = r < 0.1 ? 0 : r < 0.2 ? 0xffffffff : r < 0.3 ? old ^ 0xffff : Math.floor(rand() * 2 ** 32);
    dv.setUint32(at, now);
    if (at === 0) d[0] |= 0x40;
    const now2 = dv.getUint32(at);
    assert.equal(update32(before, old, now2), checksum(d, 0, d.length));
  }
});

test('a header fixed up with update16 still validates: checksum over it is 0', () => {
  const rand = prng(791);
  for (let n = 0; n < 5000; n++) {
    const h = WIKI_HEADER.slice();
    const dv = new DataView(h.buffer);
    const at = 2 * Math.floor(rand() * 10);
    if (at === 10) continue; // the checksum field itself
    const old = dv.getUint16(at);
    const now = pick16(rand);
    dv.setUint16(at, now);
    dv.setUint16(10, update16(dv.getUint16(10), old, now));
    assert.equal(checksum(h, 0, 20), 0);
  }
});

test('writeMacUpdating agrees with a full recomputation at every alignment, 20000 random MACs (seed 2132)', () => {
  const rand = prng(2132);
  const byte = () => Math.floor(rand() * 256);
  for (let i = 0; i < 20000; i++) {
    const len = 40 + Math.floor(rand() * 60);
    const base = Math.floor(rand() * 3);
    const data = new Uint8Array(base + len + 2);
    for (let j = 0; j < data.length; j++) data[j] = byte();
    const at = base + Math.floor(rand() * (len - 6));
    const mac = Uint8Array.from({ length: 6 }, byte);
    const before = checksum(data, base, len);
    const after = writeMacUpdating(data, at, mac, base, before);
    assert.deepEqual([...data.subarray(at, at + 6)], [...mac]);
    // 0x0000 and 0xffff are the same one's complement number; either is right.
    const full = checksum(data, base, len);
    assert.ok(after === full || after + full === 0xffff, `at ${at - base}: ${after} vs ${full}`);
  }
});
