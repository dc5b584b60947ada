// IPv6 addresses in configuration: parseIpv6 (RFC 4291 text forms), formatIpv6 (RFC 5952), parseCidr6 and
// maskWord6, with edge cases and random round trips checked against Node's own URL parser.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatIpv6, maskWord6, parseCidr6, parseIpv6 } from '../../src/wire/addr.js';
import { prng } from '../lib/prng.js';

/** The words of `s` as plain hex, for readable failures. */
function words(s: string): string[] | null {
  const w = parseIpv6(s);
  return w && Array.from(w, (x) => x.toString(16).padStart(8, '0'));
}

test('parseIpv6 reads every RFC 4291 text form', () => {
  const cases: Array<[string, string[]]> = [
    ['2001:db8:0:0:8:800:200c:417a', ['20010db8', '00000000', '00080800', '200c417a']],
    ['2001:DB8::8:800:200C:417A', ['20010db8', '00000000', '00080800', '200c417a']],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', ['20010db8', '00000000', '00000000', '00000001']],
    ['::', ['00000000', '00000000', '00000000', '00000000']],
    ['::1', ['00000000', '00000000', '00000000', '00000001']],
    ['1::', ['00010000', '00000000', '00000000', '00000000']],
    ['fe80::1', ['fe800000', '00000000', '00000000', '00000001']],
    ['ff02::1:ff00:1', ['ff020000', '00000000', '00000001', 'ff000001']],
    // `::` may stand for a single zero group when parsing, though RFC 5952 never prints it so.
    ['1:2:3:4:5:6::8', ['00010002', '00030004', '00050006', '00000008']],
    ['1:2:3:4:5:6:7::', ['00010002', '00030004', '00050006', '00070000']],
    ['::2:3:4:5:6:7:8', ['00000002', '00030004', '00050006', '00070008']],
    ['::ffff:1.2.3.4', ['00000000', '00000000', '0000ffff', '01020304']],
    ['::FFFF:192.0.2.128', ['00000000', '00000000', '0000ffff', 'c0000280']],
    ['64:ff9b::1.2.3.4', ['0064ff9b', '00000000', '00000000', '01020304']],
    ['::1.2.3.4', ['00000000', '00000000', '00000000', '01020304']],
    ['1:2:3:4:5:6:1.2.3.4', ['00010002', '00030004', '00050006', '01020304']],
    ['ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255', ['ffffffff', 'ffffffff', 'ffffffff', 'ffffffff']],
  ];
  for (const [s, w] of cases) assert.deepEqual(words(s), w, s);
});

test('parseIpv6 rejects zone ids, prefixes and every malformed form', () => {
  for (const s of [
    '',
    ':',
    ':::',
    '1:::2',
    '1::2::3',
    ':1::2',
    '1::2:',
    ':1:2:3:4:5:6:7:8',
    '1:2:3:4:5:6:7:8:',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7:8::',
    '::1:2:3:4:5:6:7:8',
    '1:2:3:4::5:6:7:8',
    '12345::',
    '::g',
    'fe80::1%eth0',
    'fe80::1%1',
    '2001:db8::/32',
    '[::1]',
    ' ::1',
    '::1 ',
    '1.2.3.4',
    '::1.2.3',
    '::1.2.3.256',
    '::01.2.3.4',
    '::1.2.3.4:5',
    '1.2.3.4::',
    '1:2:3:4:5:6:7:1.2.3.4',
    '1:2:3:4:5:6:7:8:1.2.3.4',
    '::ffff:1.2.3.4.5',
    '0x1::',
    '+1::',
  ])
    assert.equal(parseIpv6(s), null, JSON.stringify(s));
});

test('formatIpv6 follows RFC 5952', () => {
  const cases: Array<[string, string]> = [
    ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'], // 4.1 and 4.3: no leading zeros, lower case
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // 4.2.3: the leftmost of equal runs
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // 4.2.3: the longest run
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // 4.2.2: a single zero group stays
    ['2001:db8::1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['0:1:0:1:0:1:0:1', '0:1:0:1:0:1:0:1'],
    ['fe80:0:0:0:0:0:0:1', 'fe80::1'],
    ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    ['::ffff:c000:280', '::ffff:192.0.2.128'], // section 5: an IPv4-mapped address is printed dotted
    ['::ffff:0:0', '::ffff:0.0.0.0'],
    ['64:ff9b::102:304', '64:ff9b::102:304'],
    ['::102:304', '::102:304'],
  ];
  for (const [s, text] of cases) assert.equal(formatIpv6(parseIpv6(s)!), text, s);
});

test('formatIpv6 reads words at an offset, signed as the hot path passes them', () => {
  const w = [7, 0x20010db8 | 0, 0, 0, 0xffffffff | 0];
  assert.equal(formatIpv6(w, 1), '2001:db8::ffff:ffff');
  assert.equal(formatIpv6(Int32Array.from(w), 1), '2001:db8::ffff:ffff');
});

test('random addresses round-trip and print as the WHATWG URL parser does (seed 5952)', () => {
  const rnd = prng(5952);
  // Mostly zero groups, so that runs of every length and position come up.
  const group = () => (rnd() < 0.5 ? 0 : rnd() < 0.5 ? 1 : Math.floor(rnd() * 0x10000));
  for (let n = 0; n < 5000; n++) {
    const w = new Uint32Array(4);
    for (let i = 0; i < 4; i++) w[i] = (group() << 16) | group();
    if (w[0] === 0 && w[1] === 0 && w[2] === 0xffff) continue;
    const text = formatIpv6(w);
    assert.deepEqual(parseIpv6(text), w, text);
    assert.equal(`[${text}]`, new URL(`http://[${text}]/`).hostname, text);
    const full = Array.from(w, (x) => `${(x >>> 16).toString(16)}:${(x & 0xffff).toString(16)}`).join(':');
    assert.deepEqual(parseIpv6(full.toUpperCase()), w, full);
  }
});

test('parseCidr6: a bare address is /128, prefixes 0..128, host bits kept', () => {
  const c = parseCidr6('2001:db8::1/32')!;
  assert.equal(c.prefix, 32);
  assert.equal(formatIpv6(c.addr), '2001:db8::1');
  assert.equal(parseCidr6('fd12::1')!.prefix, 128);
  assert.equal(parseCidr6('::/0')!.prefix, 0);
  assert.equal(parseCidr6('::/128')!.prefix, 128);
  assert.equal(parseCidr6('::ffff:1.2.3.4/96')!.prefix, 96);
  for (const s of [
    '::/129',
    '::/',
    '::/-1',
    '::/1/2',
    '::/0x10',
    '::/ 8',
    '::/1000',
    '/64',
    'fe80::1%eth0/64',
    '10.0.0.0/8',
  ])
    assert.equal(parseCidr6(s), null, s);
});

test('maskWord6 masks each word of a prefix', () => {
  const mask = (p: number) => [0, 1, 2, 3].map((i) => maskWord6(p, i).toString(16));
  assert.deepEqual(mask(0), ['0', '0', '0', '0']);
  assert.deepEqual(mask(1), ['80000000', '0', '0', '0']);
  assert.deepEqual(mask(32), ['ffffffff', '0', '0', '0']);
  assert.deepEqual(mask(48), ['ffffffff', 'ffff0000', '0', '0']);
  assert.deepEqual(mask(64), ['ffffffff', 'ffffffff', '0', '0']);
  assert.deepEqual(mask(127), ['ffffffff', 'ffffffff', 'ffffffff', 'fffffffe']);
  assert.deepEqual(mask(128), ['ffffffff', 'ffffffff', 'ffffffff', 'ffffffff']);
  for (let p = 0; p <= 128; p++) {
    let bits = 0;
    for (let i = 0; i < 4; i++) bits += maskWord6(p, i).toString(2).replace(/0/g, '').length;
    assert.equal(bits, p, `/${p}`);
  }
});
