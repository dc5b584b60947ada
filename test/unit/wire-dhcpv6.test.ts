// DHCPv6 messages: client messages laid out as dhcpcd, odhcp6c and systemd-networkd send them, every refusal
// of the parser, its limits, fuzzing, the writer's bound, DUID-LL and the DNS wire format of a domain.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Drop } from '../../src/stats/drops.js';
import { formatIpv6 } from '../../src/wire/addr.js';
import {
  DHCP6_HEADER_LEN,
  Dhcp6Message,
  Dhcp6Option,
  Dhcp6Status,
  Dhcp6Type,
  Dhcp6Writer,
  DUID_MAX_LEN,
  duidLl,
  encodeDomain,
  MAX_ADDRS,
  MAX_IAS,
  MAX_OPTIONS,
  parseDhcp6,
} from '../../src/wire/dhcpv6.js';
import { prng } from '../lib/prng.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g) ?? [], (h) => Number.parseInt(h, 16));
const be16 = (v: number) => [(v >>> 8) & 0xff, v & 0xff];
const be32 = (v: number) => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const opt = (code: number, data: number[] | Uint8Array = []) => [
  ...be16(code),
  ...be16(data.length),
  ...data,
];
const message = (type: number, xid: number, ...options: number[][]) =>
  Uint8Array.from([type, (xid >>> 16) & 0xff, (xid >>> 8) & 0xff, xid & 0xff, ...options.flat()]);

const MAC = hex('525400123456');
// DUID-LLT (RFC 8415 11.2): type 1, hardware type 1, seconds since 2000, the MAC; dhcpcd's default.
const DUID_LLT = [...hex('0001 0001 2b1c3d4e'), ...MAC];
const ia = (code: number, iaid: number, ...options: number[][]) =>
  opt(code, [
    ...be32(iaid),
    ...(code === Dhcp6Option.IA_TA ? [] : [0, 0, 0, 0, 0, 0, 0, 0]),
    ...options.flat(),
  ]);
const iaAddr = (addr: string, preferred = 0, valid = 0) =>
  opt(Dhcp6Option.IAADDR, [...hex(addr), ...be32(preferred), ...be32(valid)]);

// A Solicit as dhcpcd 10 lays it out: CLIENTID (DUID-LLT), ORO (DNS servers, domain list, SOL_MAX_RT),
// ELAPSED_TIME 0, IA_NA with the MAC's last four bytes as IAID, FQDN "vm" (flag S).
const DHCPCD_SOLICIT = hex(
  '01 4a1b2c' +
    '0001 000e 0001 0001 2b1c3d4e 525400123456' +
    '0006 0006 0017 0018 0052' +
    '0008 0002 0000' +
    '0003 000c 00123456 00000000 00000000' +
    '0027 0004 01 02766d',
);
// A Solicit as odhcp6c lays it out: CLIENTID (DUID-LL), ORO, ELAPSED_TIME, RECONF_ACCEPT, IA_NA IAID 1,
// IA_PD IAID 1 hinting a /56 with an IAPREFIX of ::.
const ODHCP6C_SOLICIT = hex(
  '01 00beef' +
    '0001 000a 0003 0001 525400123456' +
    '0006 0008 0017 0018 0052 0053' +
    '0008 0002 0064' +
    '0014 0000' +
    '0003 000c 00000001 00000000 00000000' +
    '0019 0029 00000001 00000000 00000000' +
    '001a 0019 00000000 00000000 38 00000000000000000000000000000000',
);
// A Solicit as systemd-networkd lays it out: ELAPSED_TIME, CLIENTID (DUID-EN), RAPID_COMMIT, IA_NA, ORO.
const NETWORKD_SOLICIT = hex(
  '01 123456' +
    '0008 0002 0000' +
    '0001 0012 0002 0000ab11 0102030405060708 090a0b0c' +
    '000e 0000' +
    '0003 000c 8a2b3c4d 00000000 00000000' +
    '0006 0004 0017 0018',
);

function parsed(u8: Uint8Array, off = 0, len = u8.length - off): Dhcp6Message {
  const m = new Dhcp6Message();
  const r = parseDhcp6(u8, off, len, m);
  assert.equal(r, Drop.NONE, `refused with reason ${r}`);
  return m;
}

function refused(u8: Uint8Array, what: string, off = 0, len = u8.length - off): void {
  assert.equal(parseDhcp6(u8, off, len, new Dhcp6Message()), Drop.DHCP6_MALFORMED, what);
}

const addrOf = (m: Dhcp6Message, i: number) => formatIpv6(m.addrs, 4 * i);

test('codes are RFC 8415 (and RFC 3646) numbers', () => {
  assert.equal(DHCP6_HEADER_LEN, 4);
  assert.deepEqual(
    [Dhcp6Type.SOLICIT, Dhcp6Type.ADVERTISE, Dhcp6Type.REQUEST, Dhcp6Type.CONFIRM, Dhcp6Type.RENEW],
    [1, 2, 3, 4, 5],
  );
  assert.deepEqual(
    [Dhcp6Type.REBIND, Dhcp6Type.REPLY, Dhcp6Type.RELEASE, Dhcp6Type.DECLINE, Dhcp6Type.RECONFIGURE],
    [6, 7, 8, 9, 10],
  );
  assert.deepEqual([Dhcp6Type.INFORMATION_REQUEST, Dhcp6Type.RELAY_FORW, Dhcp6Type.RELAY_REPL], [11, 12, 13]);
  assert.deepEqual(
    [Dhcp6Option.CLIENTID, Dhcp6Option.SERVERID, Dhcp6Option.IA_NA, Dhcp6Option.IA_TA, Dhcp6Option.IAADDR],
    [1, 2, 3, 4, 5],
  );
  assert.deepEqual(
    [Dhcp6Option.ORO, Dhcp6Option.PREFERENCE, Dhcp6Option.STATUS_CODE, Dhcp6Option.RAPID_COMMIT],
    [6, 7, 13, 14],
  );
  assert.deepEqual(
    [
      Dhcp6Option.DNS_SERVERS,
      Dhcp6Option.DOMAIN_LIST,
      Dhcp6Option.IA_PD,
      Dhcp6Option.IAPREFIX,
      Dhcp6Option.INFORMATION_REFRESH_TIME,
    ],
    [23, 24, 25, 26, 32],
  );
  assert.deepEqual(
    [Dhcp6Status.SUCCESS, Dhcp6Status.NO_ADDRS_AVAIL, Dhcp6Status.NOT_ON_LINK, Dhcp6Status.NO_PREFIX_AVAIL],
    [0, 2, 4, 6],
  );
});

test('a dhcpcd Solicit: type, xid, the DUID in place, one IA_NA without addresses', () => {
  const m = parsed(DHCPCD_SOLICIT);
  assert.equal(m.type, Dhcp6Type.SOLICIT);
  assert.equal(m.xid, 0x4a1b2c);
  assert.deepEqual(
    DHCPCD_SOLICIT.subarray(m.clientId, m.clientId + m.clientIdLen),
    Uint8Array.from(DUID_LLT),
  );
  assert.equal(m.serverId, -1);
  assert.equal(m.rapidCommit, false);
  assert.equal(m.iaCount, 1);
  assert.equal(m.iaKind[0], Dhcp6Option.IA_NA);
  assert.equal(m.iaId[0], 0x00123456);
  assert.equal(m.iaAddrCount[0], 0);
  assert.equal(m.addrCount, 0);
  assert.equal(m.options, 5);
});

test('an odhcp6c Solicit: IA_NA and IA_PD, the IAPREFIX counted but not an address', () => {
  const m = parsed(ODHCP6C_SOLICIT);
  assert.equal(m.xid, 0x00beef);
  assert.equal(m.clientIdLen, 10);
  assert.deepEqual(ODHCP6C_SOLICIT.subarray(m.clientId, m.clientId + 10), duidLl(MAC));
  assert.equal(m.iaCount, 2);
  assert.deepEqual([m.iaKind[0], m.iaId[0]], [Dhcp6Option.IA_NA, 1]);
  assert.deepEqual([m.iaKind[1], m.iaId[1]], [Dhcp6Option.IA_PD, 1]);
  assert.equal(m.addrCount, 0);
  assert.equal(m.options, 7);
});

test('a systemd-networkd Solicit: Rapid Commit, a DUID-EN, an IAID with its top bit set', () => {
  const m = parsed(NETWORKD_SOLICIT);
  assert.equal(m.rapidCommit, true);
  assert.equal(m.clientIdLen, 18);
  assert.equal(m.iaId[0], 0x8a2b3c4d);
});

test('a Request: the server id and every IAADDR of every IA, in order, at a non-zero offset', () => {
  const req = message(
    Dhcp6Type.REQUEST,
    0xfffffe,
    opt(Dhcp6Option.CLIENTID, DUID_LLT),
    opt(Dhcp6Option.SERVERID, duidLl(hex('0200000000fe'))),
    ia(Dhcp6Option.IA_NA, 7, iaAddr('fd00000100020005000000d600000007', 3600, 7200)),
    ia(
      Dhcp6Option.IA_TA,
      9,
      iaAddr('20010db8000000000000000000000001'),
      iaAddr('20010db8000000000000000000000002'),
    ),
    opt(Dhcp6Option.ELAPSED_TIME, [0, 0]),
  );
  const slab = new Uint8Array(req.length + 60).fill(0xee);
  slab.set(req, 50);
  const m = parsed(slab, 50, req.length);
  assert.equal(m.type, Dhcp6Type.REQUEST);
  assert.equal(m.xid, 0xfffffe);
  assert.deepEqual(slab.subarray(m.serverId, m.serverId + m.serverIdLen), duidLl(hex('0200000000fe')));
  assert.equal(m.iaCount, 2);
  assert.deepEqual(
    [m.iaKind[1], m.iaId[1], m.iaFirstAddr[1], m.iaAddrCount[1]],
    [Dhcp6Option.IA_TA, 9, 1, 2],
  );
  assert.deepEqual([m.iaFirstAddr[0], m.iaAddrCount[0]], [0, 1]);
  assert.deepEqual(
    [0, 1, 2].map((i) => addrOf(m, i)),
    ['fd00:1:2:5:0:d6:0:7', '2001:db8::1', '2001:db8::2'],
  );
});

test('one Dhcp6Message is refilled by every parse: nothing of the last message survives', () => {
  const m = new Dhcp6Message();
  assert.equal(parseDhcp6(ODHCP6C_SOLICIT, 0, ODHCP6C_SOLICIT.length, m), Drop.NONE);
  assert.equal(parseDhcp6(NETWORKD_SOLICIT, 0, NETWORKD_SOLICIT.length, m), Drop.NONE);
  const info = message(Dhcp6Type.INFORMATION_REQUEST, 1, opt(Dhcp6Option.ELAPSED_TIME, [0, 0]));
  assert.equal(parseDhcp6(info, 0, info.length, m), Drop.NONE);
  assert.deepEqual(
    [m.type, m.clientId, m.serverId, m.rapidCommit, m.iaCount, m.addrCount, m.options],
    [11, -1, -1, false, 0, 0, 1],
  );
  // A refused message leaves no half-parsed state claiming to be valid either.
  assert.equal(parseDhcp6(info, 0, 2, m), Drop.DHCP6_MALFORMED);
  assert.deepEqual([m.type, m.iaCount], [0, 0]);
});

test('a header alone is a message without options', () => {
  const m = parsed(hex('0b 000001'));
  assert.deepEqual([m.type, m.xid, m.options], [11, 1, 0]);
});

test('a truncated header, option header or option body is DHCP6_MALFORMED', () => {
  for (let len = 0; len < 4; len++) refused(DHCPCD_SOLICIT, `header of ${len} bytes`, 0, len);
  // Every cut inside the options that does not fall between two options.
  const ends = new Set([4, 22, 32, 38, 54, 62]);
  for (let len = 4; len < DHCPCD_SOLICIT.length; len++) {
    const r = parseDhcp6(DHCPCD_SOLICIT, 0, len, new Dhcp6Message());
    assert.equal(r, ends.has(len) ? Drop.NONE : Drop.DHCP6_MALFORMED, `cut at ${len}`);
  }
  refused(message(1, 0, [0, 1, 0]), 'three bytes of option header');
  refused(
    message(1, 0, [...opt(Dhcp6Option.CLIENTID, DUID_LLT), ...be16(8), 0xff, 0xff, 0, 0]),
    'length 65535',
  );
  // A range past the end of the array itself.
  refused(DHCPCD_SOLICIT, 'len past the array', 10, DHCPCD_SOLICIT.length);
  refused(DHCPCD_SOLICIT, 'negative offset', -1, 10);
});

test('an option overrunning its IA is DHCP6_MALFORMED even when the message goes on', () => {
  const inner = iaAddr('fd00000100020005000000d600000007');
  const ia1 = [...be16(Dhcp6Option.IA_NA), ...be16(12 + 20), ...be32(1), ...new Array(8).fill(0), ...inner];
  refused(
    message(Dhcp6Type.REQUEST, 0, opt(Dhcp6Option.CLIENTID, DUID_LLT), ia1, new Array(40).fill(0)),
    'IAADDR past its IA',
  );
});

test('a repeated, short or oversized client or server id is DHCP6_MALFORMED', () => {
  const cid = opt(Dhcp6Option.CLIENTID, DUID_LLT);
  refused(message(1, 0, cid, cid), 'two client ids');
  refused(message(3, 0, cid, opt(2, DUID_LLT), opt(2, DUID_LLT)), 'two server ids');
  for (const len of [0, 1, 2, DUID_MAX_LEN + 1, 1000]) {
    const duid = new Array(len).fill(7);
    refused(message(1, 0, opt(Dhcp6Option.CLIENTID, duid)), `client id of ${len}`);
    refused(message(11, 0, opt(Dhcp6Option.SERVERID, duid)), `server id of ${len}`);
  }
  parsed(message(1, 0, opt(Dhcp6Option.CLIENTID, new Array(DUID_MAX_LEN).fill(7))));
  parsed(message(1, 0, opt(Dhcp6Option.CLIENTID, [0, 4, 1])));
});

test('a short IA_NA, IA_TA, IA_PD, IAADDR or IAPREFIX is DHCP6_MALFORMED', () => {
  refused(message(1, 0, opt(Dhcp6Option.IA_NA, new Array(11).fill(0))), 'IA_NA of 11');
  refused(message(1, 0, opt(Dhcp6Option.IA_PD, new Array(11).fill(0))), 'IA_PD of 11');
  refused(message(1, 0, opt(Dhcp6Option.IA_TA, [0, 0, 1])), 'IA_TA of 3');
  refused(
    message(3, 0, ia(Dhcp6Option.IA_NA, 1, opt(Dhcp6Option.IAADDR, new Array(23).fill(0)))),
    'IAADDR of 23',
  );
  refused(
    message(1, 0, ia(Dhcp6Option.IA_PD, 1, opt(Dhcp6Option.IAPREFIX, new Array(24).fill(0)))),
    'IAPREFIX 24',
  );
  // Outside the IA they belong in, the same options are not looked at.
  parsed(
    message(1, 0, opt(Dhcp6Option.IAADDR, [1]), ia(Dhcp6Option.IA_NA, 1, opt(Dhcp6Option.IAPREFIX, [1]))),
  );
  const m = parsed(message(1, 0, ia(Dhcp6Option.IA_PD, 1, opt(Dhcp6Option.IAADDR, new Array(24).fill(1)))));
  assert.equal(m.addrCount, 0, 'an IAADDR inside an IA_PD is not an address');
});

test(`MAX_OPTIONS (${MAX_OPTIONS}) options, nested ones counted, parse; one more is DHCP6_MALFORMED`, () => {
  const elapsed = opt(Dhcp6Option.ELAPSED_TIME, [0, 0]);
  parsed(message(1, 0, ...new Array(MAX_OPTIONS).fill(elapsed)));
  refused(message(1, 0, ...new Array(MAX_OPTIONS + 1).fill(elapsed)), 'one too many');
  const nested = ia(Dhcp6Option.IA_NA, 1, ...new Array(MAX_OPTIONS - 1).fill(elapsed));
  assert.equal(parsed(message(1, 0, nested)).options, MAX_OPTIONS);
  refused(message(1, 0, nested, elapsed), 'one too many with nesting');
  // Thousands of empty options in 64 KiB are refused at the 65th.
  refused(message(1, 0, ...new Array(16000).fill(opt(0xff00))), '16000 options');
});

test(`MAX_IAS (${MAX_IAS}) IAs and MAX_ADDRS (${MAX_ADDRS}) addresses parse; one more is DHCP6_MALFORMED`, () => {
  const ias = (n: number) => Array.from({ length: n }, (_, i) => ia(Dhcp6Option.IA_NA, i));
  assert.equal(parsed(message(1, 0, ...ias(MAX_IAS))).iaCount, MAX_IAS);
  refused(message(1, 0, ...ias(MAX_IAS + 1)), 'one IA too many');
  const addrs = (n: number) =>
    Array.from({ length: n }, (_, i) =>
      iaAddr(`fd00000100020005000000000000${i.toString(16).padStart(4, '0')}`),
    );
  const m = parsed(message(3, 0, ia(Dhcp6Option.IA_NA, 1, ...addrs(MAX_ADDRS))));
  assert.equal(m.addrCount, MAX_ADDRS);
  assert.equal(addrOf(m, MAX_ADDRS - 1), `fd00:1:2:5::${(MAX_ADDRS - 1).toString(16)}`);
  refused(message(3, 0, ia(Dhcp6Option.IA_NA, 1, ...addrs(MAX_ADDRS + 1))), 'one address too many');
});

test('random bytes and mutated client messages never throw and are parsed or DHCP6_MALFORMED', () => {
  const rand = prng(8415);
  const m = new Dhcp6Message();
  const bases = [DHCPCD_SOLICIT, ODHCP6C_SOLICIT, NETWORKD_SOLICIT];
  const tally = [0, 0];
  for (let n = 0; n < 20000; n++) {
    let u8: Uint8Array;
    if (n % 2 === 0) {
      u8 = new Uint8Array(Math.floor(rand() * 300));
      for (let i = 0; i < u8.length; i++) u8[i] = Math.floor(rand() * 256);
    } else {
      u8 = bases[n % 3].slice();
      for (let e = 1 + Math.floor(rand() * 4); e > 0; e--)
        u8[Math.floor(rand() * u8.length)] = Math.floor(rand() * 256);
      u8 = u8.subarray(0, Math.floor(rand() * (u8.length + 1)));
    }
    const r = parseDhcp6(u8, 0, u8.length, m);
    assert.ok(r === Drop.NONE || r === Drop.DHCP6_MALFORMED, `reason ${r}`);
    tally[r === Drop.NONE ? 0 : 1]++;
    if (r === Drop.NONE) {
      assert.ok(m.options <= MAX_OPTIONS && m.iaCount <= MAX_IAS && m.addrCount <= MAX_ADDRS);
      if (m.clientId >= 0) assert.ok(m.clientId + m.clientIdLen <= u8.length);
    }
  }
  // Both outcomes are exercised, so the loop tests something.
  assert.ok(tally[0] > 500 && tally[1] > 500, `tally ${tally}`);
});

test('duidLl: type 3, hardware type 1, the MAC', () => {
  assert.deepEqual(duidLl(hex('0200000000fe')), hex('0003 0001 0200000000fe'));
});

test('encodeDomain: length-prefixed labels and a zero; invalid names are null', () => {
  assert.deepEqual(encodeDomain('example.com'), hex('07 6578616d706c65 03 636f6d 00'));
  assert.deepEqual(encodeDomain('vm.internal.'), hex('02 766d 08 696e7465726e616c 00'));
  assert.deepEqual(encodeDomain('lan'), hex('03 6c616e 00'));
  assert.deepEqual(encodeDomain('a'.repeat(63)), Uint8Array.from([63, ...new Array(63).fill(0x61), 0]));
  for (const bad of ['', '.', '..', 'a..b', '.a', 'a'.repeat(64), `${'a'.repeat(60)}.`.repeat(5)]) {
    assert.equal(encodeDomain(bad), null, JSON.stringify(bad));
  }
  // 253 characters is the longest name: 255 bytes on the wire.
  const longest = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
  assert.equal(encodeDomain(longest)?.length, 255);
  assert.equal(encodeDomain(`${longest}e`), null);
});

test('Dhcp6Writer: header, nested lengths patched at close, big-endian fields', () => {
  const u8 = new Uint8Array(200).fill(0xee);
  const w = new Dhcp6Writer();
  w.begin(u8, 10, 200, Dhcp6Type.REPLY, 0xabcdef);
  w.bytes(Dhcp6Option.SERVERID, hex('0003 0001 0200000000fe'), 0, 10);
  const hdr = w.ia(Dhcp6Option.IA_NA, 0x01020304, 1800, 2880);
  w.iaAddr(0xfd000001 | 0, 0x00020005, 0xd6, 0x01020304, 3600, 0xffffffff);
  w.status(Dhcp6Status.SUCCESS);
  w.close(hdr);
  const tah = w.ia(Dhcp6Option.IA_TA, 5, 99, 99);
  w.close(tah);
  w.empty(Dhcp6Option.RAPID_COMMIT);
  w.u8Option(Dhcp6Option.PREFERENCE, 255);
  w.u32Option(Dhcp6Option.INFORMATION_REFRESH_TIME, 600);
  w.addresses(Dhcp6Option.DNS_SERVERS, [0x20010db8, 0, 0, 0x35, 1, 2, 3, 4, 9, 9, 9, 9], 2);
  const n = w.length();
  const expected = hex(
    '07 abcdef' +
      '0002 000a 0003 0001 0200000000fe' +
      '0003 002e 01020304 00000708 00000b40' +
      '0005 0018 fd000001 00020005 000000d6 01020304 00000e10 ffffffff' +
      '000d 0002 0000' +
      '0004 0004 00000005' +
      '000e 0000' +
      '0007 0001 ff' +
      '0020 0004 00000258' +
      '0017 0020 20010db8 00000000 00000000 00000035 00000001 00000002 00000003 00000004',
  );
  assert.equal(n, expected.length);
  assert.deepEqual(u8.subarray(10, 10 + n), expected);
  assert.ok(u8.subarray(0, 10).every((b) => b === 0xee) && u8.subarray(10 + n).every((b) => b === 0xee));
});

test('Dhcp6Writer: a write past the bound is not made, and length() is -1 from then on', () => {
  for (let end = 0; end < 60; end++) {
    const u8 = new Uint8Array(64).fill(0xee);
    const w = new Dhcp6Writer();
    w.begin(u8, 0, end, Dhcp6Type.REPLY, 1);
    w.bytes(Dhcp6Option.SERVERID, hex('0003 0001 0200000000fe'), 0, 10);
    const hdr = w.ia(Dhcp6Option.IA_NA, 1, 2, 3);
    w.status(0);
    w.close(hdr);
    w.u32Option(Dhcp6Option.INFORMATION_REFRESH_TIME, 600);
    assert.equal(w.length(), end >= 48 ? 48 : -1, `end ${end}`);
    assert.ok(
      u8.subarray(end).every((b) => b === 0xee),
      `wrote past ${end}`,
    );
  }
  // The array's own end is a bound too.
  const w = new Dhcp6Writer();
  const small = new Uint8Array(8);
  w.begin(small, 4, 1000, Dhcp6Type.REPLY, 1);
  w.empty(Dhcp6Option.RAPID_COMMIT);
  assert.equal(w.length(), -1);
});
