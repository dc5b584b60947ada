// DHCP messages: real client DISCOVERs, every refusal reason of the decoder, option overload and long
// options (RFC 2131 4.1, RFC 3396), fuzzing, the encoder, and option 121 (RFC 3442).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Drop } from '../../src/stats/drops.js';
import {
  BOOTP,
  BOOTP_MIN_LEN,
  BROADCAST_FLAG,
  classlessRoutes,
  type DhcpMessage,
  DhcpOp,
  DhcpOption,
  type DhcpParse,
  type DhcpReply,
  DhcpType,
  dhcpReplyLen,
  emitDhcp,
  MAX_OPTIONS,
  optionAddr,
  parseDhcp,
  u32Option,
} from '../../src/wire/dhcp.js';
import { checksumOk } from '../../src/wire/udp.js';
import { prng } from '../lib/prng.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));
const z = (n: number) => '00'.repeat(n);
const text = (b: Uint8Array | undefined) => (b ? new TextDecoder().decode(b) : undefined);

// A DHCPDISCOVER captured from busybox udhcpc 1.35.0 on a veth (tcpdump: "udp sum ok"): options 53, 57
// (576), 55 (1 3 6 12 15 28 42), 60 "udhcp 1.35.0", 61 (01 + MAC), end, then padding to 300 bytes.
const UDHCPC_DISCOVER = hex(
  'ffffffffffff 525400123456 0800 45000148 00000000 401179a6 00000000 ffffffff 0044 0043 0134 0c07' +
    `01010600 db2e0e5e 0000 0000 00000000 00000000 00000000 00000000 525400123456 ${z(10)} ${z(64)} ${z(128)}` +
    '63825363 350101 39020240 3707 0103060c0f1c2a 3c0c 756468637020312e33352e30 3d07 01525400123456 ff' +
    z(20),
);
// A DHCPDISCOVER captured from ISC dhclient (Debian), hostname "vm"; its parameter list asks for 121.
const DHCLIENT_DISCOVER = hex(
  'ffffffffffff 525400123456 0800 45100148 00000000 80113996 00000000 ffffffff 0044 0043 0134 8ee2' +
    `01010600 559c4828 0000 0000 00000000 00000000 00000000 00000000 525400123456 ${z(10)} ${z(64)} ${z(128)}` +
    '63825363 350101 0c02766d 370d 011c02030f06770c2c2f1a792a ff' +
    z(37),
);
const DHCP_AT = 14 + 20 + 8;
const VM_MAC = hex('525400123456');

/** Asserts a refusal with exactly `reason`, naming both in the message. */
function refused(r: DhcpParse, reason: number, what: string): void {
  assert.equal(r.ok, false, `${what}: parsed, expected reason ${reason}`);
  if (!r.ok) assert.equal(r.reason, reason, what);
}

function parsed(r: DhcpParse, what = ''): DhcpMessage {
  if (!r.ok) assert.fail(`${what}: refused with reason ${r.reason}`);
  return r.msg;
}

interface Shape {
  op?: number;
  htype?: number;
  hlen?: number;
  cookie?: number;
  sname?: number[];
  file?: number[];
}

/** A BOOTREQUEST from VM_MAC whose options area holds exactly `options` (no END, no padding added). */
function bootp(options: number[], shape: Shape = {}): Uint8Array {
  const m = new Uint8Array(BOOTP.OPTIONS + options.length);
  const dv = new DataView(m.buffer);
  m[BOOTP.OP] = shape.op ?? DhcpOp.BOOTREQUEST;
  m[BOOTP.HTYPE] = shape.htype ?? 1;
  m[BOOTP.HLEN] = shape.hlen ?? 6;
  dv.setUint32(BOOTP.XID, 0x12345678);
  m.set(VM_MAC, BOOTP.CHADDR);
  if (shape.sname) m.set(shape.sname, BOOTP.SNAME);
  if (shape.file) m.set(shape.file, BOOTP.FILE);
  dv.setUint32(BOOTP.COOKIE, shape.cookie ?? 0x63825363);
  m.set(options, BOOTP.OPTIONS);
  return m;
}

const parse = (m: Uint8Array, op?: number) => parseDhcp(m, 0, m.length, op);
const TYPE_DISCOVER = [DhcpOption.MESSAGE_TYPE, 1, DhcpType.DISCOVER];

test('layout constants (RFC 2131 figure 1)', () => {
  assert.deepEqual(
    { ...BOOTP },
    {
      OP: 0,
      HTYPE: 1,
      HLEN: 2,
      HOPS: 3,
      XID: 4,
      SECS: 8,
      FLAGS: 10,
      CIADDR: 12,
      YIADDR: 16,
      SIADDR: 20,
      GIADDR: 24,
      CHADDR: 28,
      SNAME: 44,
      FILE: 108,
      COOKIE: 236,
      OPTIONS: 240,
    },
  );
  assert.equal(BOOTP_MIN_LEN, 300);
  assert.equal(MAX_OPTIONS, 512);
  assert.equal(BROADCAST_FLAG, 0x8000);
});

test('the udhcpc DISCOVER fixture is intact: its UDP checksum verifies', () => {
  assert.equal(UDHCPC_DISCOVER.length, 342);
  assert.equal(DHCLIENT_DISCOVER.length, 342);
  for (const f of [UDHCPC_DISCOVER, DHCLIENT_DISCOVER]) {
    assert.ok(checksumOk(new DataView(f.buffer), f, 34, 308, 0, 0xffffffff));
  }
});

test('a real udhcpc DISCOVER parses, read at its offset inside the frame', () => {
  const msg = parsed(parseDhcp(UDHCPC_DISCOVER, DHCP_AT, 300));
  assert.equal(msg.op, DhcpOp.BOOTREQUEST);
  assert.equal(msg.type, DhcpType.DISCOVER);
  assert.equal(msg.xid, 0xdb2e0e5e);
  assert.equal(msg.secs, 0);
  assert.equal(msg.flags, 0);
  assert.equal(msg.ciaddr, 0);
  assert.equal(msg.yiaddr, 0);
  assert.equal(msg.siaddr, 0);
  assert.equal(msg.giaddr, 0);
  assert.deepEqual(msg.chaddr, hex(`525400123456 ${z(10)}`));
  assert.deepEqual(
    [...msg.options.keys()].sort((a, b) => a - b),
    [53, 55, 57, 60, 61],
  );
  assert.deepEqual(msg.options.get(DhcpOption.MAX_SIZE), hex('0240'));
  assert.deepEqual(msg.options.get(DhcpOption.PARAM_REQUEST), hex('0103060c0f1c2a'));
  assert.equal(text(msg.options.get(60)), 'udhcp 1.35.0');
  assert.deepEqual(msg.options.get(DhcpOption.CLIENT_ID), hex('01525400123456'));
});

test('a real dhclient DISCOVER parses from a view with a non-zero byteOffset', () => {
  const slab = new Uint8Array(1000).fill(0xa5);
  slab.set(DHCLIENT_DISCOVER, 300);
  const view = slab.subarray(100, 900); // byteOffset 100: the message is at view offset 200 + 42
  const msg = parsed(parseDhcp(view, 200 + DHCP_AT, 300));
  assert.equal(msg.xid, 0x559c4828);
  assert.equal(msg.type, DhcpType.DISCOVER);
  assert.equal(text(msg.options.get(DhcpOption.HOSTNAME)), 'vm');
  assert.ok(msg.options.get(DhcpOption.PARAM_REQUEST)!.includes(DhcpOption.CLASSLESS_ROUTES));
  // The result is a copy: changing the slab afterwards changes nothing.
  slab.fill(0);
  assert.equal(text(msg.options.get(DhcpOption.HOSTNAME)), 'vm');
  assert.deepEqual(msg.chaddr.subarray(0, 6), VM_MAC);
});

test('fixed fields are read from their places', () => {
  const m = bootp([...TYPE_DISCOVER, 255]);
  const dv = new DataView(m.buffer);
  dv.setUint16(BOOTP.SECS, 0xfffe);
  dv.setUint16(BOOTP.FLAGS, 0x8000);
  dv.setUint32(BOOTP.CIADDR, 0xc0a84002);
  dv.setUint32(BOOTP.YIADDR, 0xc0a84003);
  dv.setUint32(BOOTP.SIADDR, 0xc0a84004);
  dv.setUint32(BOOTP.GIADDR, 0xfffffffe);
  const msg = parsed(parse(m));
  assert.equal(msg.secs, 0xfffe);
  assert.equal(msg.flags, 0x8000);
  assert.equal(msg.ciaddr, 0xc0a84002);
  assert.equal(msg.yiaddr, 0xc0a84003);
  assert.equal(msg.siaddr, 0xc0a84004);
  assert.equal(msg.giaddr, 0xfffffffe);
  assert.equal(msg.xid, 0x12345678);
});

test('shorter than 240 bytes is DHCP_TRUNCATED', () => {
  for (const len of [0, 1, 100, 236, 239]) {
    refused(parseDhcp(UDHCPC_DISCOVER, DHCP_AT, len), Drop.DHCP_TRUNCATED, `len ${len}`);
  }
  // Exactly 240 bytes is a whole message without options.
  refused(parseDhcp(UDHCPC_DISCOVER, DHCP_AT, 240), Drop.DHCP_NO_TYPE, 'len 240');
});

test('not a BOOTREQUEST is DHCP_BAD_OP; a request read as a reply too', () => {
  for (const op of [0, 2, 3, 255]) refused(parse(bootp(TYPE_DISCOVER, { op })), Drop.DHCP_BAD_OP, `op ${op}`);
  refused(parse(bootp(TYPE_DISCOVER), DhcpOp.BOOTREPLY), Drop.DHCP_BAD_OP, 'request as reply');
  parsed(parse(bootp(TYPE_DISCOVER, { op: 2 }), DhcpOp.BOOTREPLY), 'reply as reply');
});

test('a hardware type other than Ethernet, or a length other than 6, is DHCP_BAD_HW', () => {
  refused(parse(bootp(TYPE_DISCOVER, { htype: 6 })), Drop.DHCP_BAD_HW, 'htype 6 (IEEE 802)');
  refused(parse(bootp(TYPE_DISCOVER, { htype: 0 })), Drop.DHCP_BAD_HW, 'htype 0');
  refused(parse(bootp(TYPE_DISCOVER, { hlen: 16 })), Drop.DHCP_BAD_HW, 'hlen 16');
  refused(parse(bootp(TYPE_DISCOVER, { hlen: 0 })), Drop.DHCP_BAD_HW, 'hlen 0');
});

test('a wrong magic cookie (or plain BOOTP without one) is DHCP_BAD_COOKIE', () => {
  for (const cookie of [0, 0x63825364, 0x63538263, 0xffffffff]) {
    refused(parse(bootp(TYPE_DISCOVER, { cookie })), Drop.DHCP_BAD_COOKIE, cookie.toString(16));
  }
});

test('an option running past the end of the message is DHCP_OPTION_OVERRUN', () => {
  refused(parse(bootp([...TYPE_DISCOVER, 12, 10, 0x61, 0x62])), Drop.DHCP_OPTION_OVERRUN, 'hostname');
  refused(parse(bootp([53, 2, 1])), Drop.DHCP_OPTION_OVERRUN, 'type');
  refused(parse(bootp([...TYPE_DISCOVER, 224, 255])), Drop.DHCP_OPTION_OVERRUN, 'length 255, no data');
  // The message is shorter than the buffer: bytes after `len` must not be read as option data.
  const m = bootp([...TYPE_DISCOVER, 12, 4, 0x61, 0x62, 0x63, 0x64, 255]);
  refused(parseDhcp(m, 0, m.length - 2), Drop.DHCP_OPTION_OVERRUN, 'within len');
});

test('an option code as the very last byte, its length missing, is DHCP_OPTION_OVERRUN', () => {
  refused(parse(bootp([...TYPE_DISCOVER, 12])), Drop.DHCP_OPTION_OVERRUN, 'code 12 last');
  refused(parse(bootp([53])), Drop.DHCP_OPTION_OVERRUN, 'code 53 alone');
  // PAD and END need no length byte.
  parsed(parse(bootp([...TYPE_DISCOVER, 0])), 'PAD last');
  parsed(parse(bootp([...TYPE_DISCOVER, 255])), 'END last');
});

test('options after END are ignored, and a message without END ends at its length', () => {
  const msg = parsed(parse(bootp([...TYPE_DISCOVER, 255, 12, 200, 1])));
  assert.equal(msg.options.has(DhcpOption.HOSTNAME), false);
  parsed(parse(bootp(TYPE_DISCOVER)), 'no END');
  parsed(parse(bootp([0, 0, 0, ...TYPE_DISCOVER, 0, 0])), 'PADs around');
});

test('option overload 52 with a bad value or length is DHCP_BAD_OVERLOAD', () => {
  const cases: Array<[string, number[]]> = [
    ['value 0', [52, 1, 0]],
    ['value 4', [52, 1, 4]],
    ['value 255', [52, 1, 255]],
    ['length 0', [52, 0]],
    ['length 2', [52, 2, 1, 1]],
    ['given twice', [52, 1, 1, 52, 1, 1]],
  ];
  for (const [name, opt] of cases) {
    refused(parse(bootp([...TYPE_DISCOVER, ...opt, 255])), Drop.DHCP_BAD_OVERLOAD, name);
  }
  // 52 once more inside the overloaded `file`.
  refused(
    parse(bootp([52, 1, 1, 255], { file: [52, 1, 1, ...TYPE_DISCOVER, 255] })),
    Drop.DHCP_BAD_OVERLOAD,
    '52 repeated in file',
  );
});

test('overloaded options overrunning the file or sname field are DHCP_OPTION_OVERRUN', () => {
  // A 200-byte option starting in `file` (128 bytes) would run into the cookie.
  refused(
    parse(bootp([...TYPE_DISCOVER, 52, 1, 1, 255], { file: [12, 200, 0x61] })),
    Drop.DHCP_OPTION_OVERRUN,
    'long option in file',
  );
  // An option ending 1 byte past the field.
  const file = new Array(128).fill(0);
  file[120] = 12;
  file[121] = 7; // 122 + 7 = 129 > 128
  refused(
    parse(bootp([...TYPE_DISCOVER, 52, 1, 1, 255], { file })),
    Drop.DHCP_OPTION_OVERRUN,
    'one past file',
  );
  // A code in the field's last byte, its length byte outside.
  const last = new Array(128).fill(0);
  last[127] = 12;
  refused(
    parse(bootp([...TYPE_DISCOVER, 52, 1, 1, 255], { file: last })),
    Drop.DHCP_OPTION_OVERRUN,
    'length outside file',
  );
  const sname = new Array(64).fill(0);
  sname[60] = 12;
  sname[61] = 3;
  refused(
    parse(bootp([...TYPE_DISCOVER, 52, 1, 2, 255], { sname })),
    Drop.DHCP_OPTION_OVERRUN,
    'one past sname',
  );
  // An option ending exactly at the end of the field is fine.
  const exact = new Array(128).fill(0);
  exact[120] = 12;
  exact[121] = 6;
  exact.fill(0x61, 122);
  const msg = parsed(parse(bootp([...TYPE_DISCOVER, 52, 1, 1, 255], { file: exact })), 'exact fit');
  assert.equal(text(msg.options.get(DhcpOption.HOSTNAME)), 'aaaaaa');
});

test('a valid overload: options continue in file and sname, concatenated options, file, sname (RFC 3396)', () => {
  const m = bootp([52, 1, 3, 12, 2, 0x61, 0x62, 255], {
    file: [...TYPE_DISCOVER, 12, 2, 0x63, 0x64, 50, 4, 192, 168, 64, 9, 255],
    sname: [12, 2, 0x65, 0x66, 55, 2, 1, 121, 255],
  });
  const msg = parsed(parse(m));
  assert.equal(msg.type, DhcpType.DISCOVER); // found only in `file`
  assert.equal(text(msg.options.get(DhcpOption.HOSTNAME)), 'abcdef');
  assert.equal(optionAddr(msg, DhcpOption.REQUESTED_IP), 0xc0a84009);
  assert.deepEqual(msg.options.get(DhcpOption.PARAM_REQUEST), Uint8Array.of(1, 121));
  assert.deepEqual(msg.options.get(DhcpOption.OVERLOAD), Uint8Array.of(3));
});

test('overload 1 reads only file, overload 2 only sname', () => {
  const fileOnly = bootp([52, 1, 1, 255], { file: [...TYPE_DISCOVER, 255], sname: [12, 60, 1] });
  assert.equal(parsed(parse(fileOnly)).type, DhcpType.DISCOVER);
  const snameOnly = bootp([52, 1, 2, 255], { sname: [...TYPE_DISCOVER, 255], file: [12, 200, 1] });
  assert.equal(parsed(parse(snameOnly)).type, DhcpType.DISCOVER);
  // Without option 52 neither field is read, even when it holds option-like bytes.
  refused(parse(bootp([255], { file: [...TYPE_DISCOVER, 255] })), Drop.DHCP_NO_TYPE, 'no 52');
});

test('zero-length options that need a value are DHCP_BAD_OPTION', () => {
  for (const code of [53, 50, 54, 61, 51, 57, 55, 12]) {
    const opts = code === 53 ? [53, 0, 255] : [...TYPE_DISCOVER, code, 0, 255];
    refused(parse(bootp(opts)), Drop.DHCP_BAD_OPTION, `option ${code}`);
  }
});

test('options of the wrong length are DHCP_BAD_OPTION', () => {
  const cases: Array<[string, number[]]> = [
    ['53 of 2 bytes', [53, 2, 1, 1]],
    ['53 given twice (concatenated to 2 bytes)', [53, 1, 1, 53, 1, 1]],
    ['50 of 3 bytes', [...TYPE_DISCOVER, 50, 3, 192, 168, 64]],
    ['50 of 5 bytes', [...TYPE_DISCOVER, 50, 5, 192, 168, 64, 2, 0]],
    ['54 of 8 bytes', [...TYPE_DISCOVER, 54, 8, 1, 2, 3, 4, 5, 6, 7, 8]],
    ['61 of 1 byte', [...TYPE_DISCOVER, 61, 1, 1]],
    ['57 of 1 byte', [...TYPE_DISCOVER, 57, 1, 2]],
    ['51 of 2 bytes', [...TYPE_DISCOVER, 51, 2, 0, 60]],
  ];
  for (const [name, opts] of cases) refused(parse(bootp([...opts, 255])), Drop.DHCP_BAD_OPTION, name);
  // A hostname concatenated past 4*255 bytes.
  const long: number[] = [...TYPE_DISCOVER];
  for (let i = 0; i < 5; i++) long.push(12, 255, ...new Array(255).fill(0x61));
  refused(parse(bootp([...long, 255])), Drop.DHCP_BAD_OPTION, 'hostname of 1275 bytes');
});

test('zero-length options nobody reads are accepted (rapid commit is one by definition)', () => {
  const msg = parsed(parse(bootp([...TYPE_DISCOVER, 80, 0, 224, 0, 255])));
  assert.deepEqual(msg.options.get(80), new Uint8Array(0));
  assert.deepEqual(msg.options.get(224), new Uint8Array(0));
});

test('a missing option 53 is DHCP_NO_TYPE', () => {
  refused(parse(bootp([255])), Drop.DHCP_NO_TYPE, 'only END');
  refused(parse(bootp([50, 4, 192, 168, 64, 2, 12, 1, 0x61, 255])), Drop.DHCP_NO_TYPE, 'others only');
  refused(parse(bootp([])), Drop.DHCP_NO_TYPE, 'empty');
});

test('repeated options are concatenated in order (RFC 3396)', () => {
  const msg = parsed(
    parse(
      bootp([12, 2, 0x61, 0x62, ...TYPE_DISCOVER, 55, 2, 1, 3, 12, 2, 0x63, 0x64, 55, 2, 6, 121, 12, 0, 255]),
    ),
  );
  assert.equal(text(msg.options.get(DhcpOption.HOSTNAME)), 'abcd');
  assert.deepEqual(msg.options.get(DhcpOption.PARAM_REQUEST), Uint8Array.of(1, 3, 6, 121));
  // A 61 split in two halves that are each too short is whole once joined.
  const id = parsed(parse(bootp([...TYPE_DISCOVER, 61, 1, 1, 61, 6, ...VM_MAC, 255])));
  assert.deepEqual(id.options.get(DhcpOption.CLIENT_ID), hex('01525400123456'));
});

/** `n` options in all: 53 first, then n-1 zero-length unknown options, then END. */
function manyOptions(n: number): Uint8Array {
  const opts = [...TYPE_DISCOVER];
  for (let i = 1; i < n; i++) opts.push(224 + (i % 30), 0);
  opts.push(255);
  return bootp(opts);
}

test('more than 512 options is DHCP_TOO_MANY_OPTIONS; 512 is fine; PADs do not count', () => {
  parsed(parse(manyOptions(MAX_OPTIONS)), '512 options');
  refused(parse(manyOptions(MAX_OPTIONS + 1)), Drop.DHCP_TOO_MANY_OPTIONS, '513 options');
  const huge = manyOptions(3000);
  assert.ok(huge.length > 6000);
  refused(parse(huge), Drop.DHCP_TOO_MANY_OPTIONS, '3000 options');
  const pads = bootp([...new Array(5000).fill(0), ...TYPE_DISCOVER, 255]);
  parsed(parse(pads), '5000 PADs');
  // Options continued in file count towards the same limit.
  const file: number[] = [];
  for (let i = 0; i < 60; i++) file.push(230, 0);
  const opts = [52, 1, 1, ...TYPE_DISCOVER];
  for (let i = 2; i < MAX_OPTIONS - 50; i++) opts.push(231, 0);
  refused(parse(bootp([...opts, 255], { file: [...file, 255] })), Drop.DHCP_TOO_MANY_OPTIONS, 'with file');
});

const PARSE_REASONS = new Set([
  Drop.DHCP_TRUNCATED,
  Drop.DHCP_BAD_OP,
  Drop.DHCP_BAD_HW,
  Drop.DHCP_BAD_COOKIE,
  Drop.DHCP_OPTION_OVERRUN,
  Drop.DHCP_BAD_OPTION,
  Drop.DHCP_BAD_OVERLOAD,
  Drop.DHCP_TOO_MANY_OPTIONS,
  Drop.DHCP_NO_TYPE,
]);

/** Parses without throwing, returns a known reason or a well-formed message; tallies the outcome. */
function checkNeverThrows(u8: Uint8Array, off: number, len: number, tally: Map<number, number>): void {
  let r: DhcpParse;
  try {
    r = parseDhcp(u8, off, len);
  } catch (e) {
    assert.fail(`parseDhcp threw ${e} on ${Buffer.from(u8.subarray(off, off + len)).toString('hex')}`);
  }
  if (r.ok) {
    assert.equal(r.msg.options.get(DhcpOption.MESSAGE_TYPE)?.length, 1);
    assert.equal(r.msg.type, r.msg.options.get(DhcpOption.MESSAGE_TYPE)![0]);
    for (const code of [DhcpOption.REQUESTED_IP, DhcpOption.SERVER_ID]) {
      const v = r.msg.options.get(code);
      if (v) assert.equal(v.length, 4);
    }
    assert.equal(r.msg.chaddr.length, 16);
    tally.set(-1, (tally.get(-1) ?? 0) + 1);
  } else {
    assert.ok(PARSE_REASONS.has(r.reason), `unexpected reason ${r.reason}`);
    tally.set(r.reason, (tally.get(r.reason) ?? 0) + 1);
  }
}

test('fuzz: 20000 random buffers of random length never make parseDhcp throw (seed 2131)', () => {
  const rand = prng(2131);
  const tally = new Map<number, number>();
  const codes = [0, 255, 52, 53, 50, 54, 61, 55, 12, 57, 51, 224];
  for (let n = 0; n < 20000; n++) {
    const len = Math.floor(rand() * 800);
    const off = Math.floor(rand() * 16);
    const u8 = new Uint8Array(off + len + Math.floor(rand() * 16));
    for (let i = 0; i < u8.length; i++) u8[i] = Math.floor(rand() * 256);
    if (n % 2 === 0 && len >= BOOTP.OPTIONS) {
      // Half get a plausible header so the option parser is reached, with options drawn from codes
      // that matter and lengths that are mostly small.
      const dv = new DataView(u8.buffer);
      u8[off] = 1;
      u8[off + 1] = 1;
      u8[off + 2] = 6;
      dv.setUint32(off + BOOTP.COOKIE, 0x63825363);
      let at = off + BOOTP.OPTIONS;
      if (rand() < 0.7 && at + 3 <= off + len) {
        u8.set([53, 1, 1 + Math.floor(rand() * 8)], at);
        at += 3;
      }
      while (at < off + len) {
        const code = codes[Math.floor(rand() * codes.length)];
        u8[at++] = code;
        if (at < off + len) u8[at++] = rand() < 0.9 ? Math.floor(rand() * 8) : Math.floor(rand() * 256);
        at += u8[at - 1] ?? 0;
      }
      if (rand() < 0.5) {
        // Sometimes an overloaded sname/file full of option-like bytes.
        for (let i = BOOTP.SNAME; i < BOOTP.COOKIE; i++) {
          u8[off + i] = rand() < 0.3 ? codes[Math.floor(rand() * codes.length)] : Math.floor(rand() * 6);
        }
      }
    }
    checkNeverThrows(u8, off, len, tally);
  }
  // The structured half must reach deep into the parser, not stop at the header.
  assert.ok((tally.get(Drop.DHCP_OPTION_OVERRUN) ?? 0) > 100, 'overruns reached');
  assert.ok((tally.get(Drop.DHCP_BAD_OPTION) ?? 0) > 10, 'bad options reached');
  assert.ok((tally.get(Drop.DHCP_BAD_OVERLOAD) ?? 0) > 10, 'overloads reached');
  assert.ok((tally.get(-1) ?? 0) > 10, 'some messages parsed');
});

test('fuzz: 20000 random mutations of the real DISCOVER never make parseDhcp throw (seed 3396)', () => {
  const rand = prng(3396);
  const tally = new Map<number, number>();
  const base = UDHCPC_DISCOVER.subarray(DHCP_AT);
  for (let n = 0; n < 20000; n++) {
    let m = base.slice();
    const edits = 1 + Math.floor(rand() * 6);
    for (let e = 0; e < edits; e++) {
      const r = rand();
      if (r < 0.5) {
        // Change a byte, favouring the options area.
        const at = rand() < 0.8 ? BOOTP.OPTIONS + Math.floor(rand() * 60) : Math.floor(rand() * m.length);
        m[at] =
          rand() < 0.5 ? Math.floor(rand() * 256) : [0, 1, 2, 3, 4, 52, 53, 255][Math.floor(rand() * 8)];
      } else if (r < 0.7) {
        m = m.slice(0, Math.floor(rand() * m.length)); // truncate
      } else if (r < 0.85) {
        const grown = new Uint8Array(m.length + Math.floor(rand() * 300));
        grown.set(m);
        for (let i = m.length; i < grown.length; i++) grown[i] = Math.floor(rand() * 256);
        m = grown; // extend with junk
      } else {
        m[BOOTP.OPTIONS + 3 + Math.floor(rand() * 3)] = 52; // try to turn overload on
        m[BOOTP.SNAME + Math.floor(rand() * 172)] = Math.floor(rand() * 256);
      }
    }
    const off = Math.floor(rand() * 8);
    const u8 = new Uint8Array(off + m.length + 8).fill(0xa5);
    u8.set(m, off);
    checkNeverThrows(u8, off, m.length, tally);
  }
  assert.ok((tally.get(-1) ?? 0) > 1000, 'many mutations still parse');
  assert.ok(tally.size >= 6, `several outcomes: ${[...tally.keys()]}`);
});

const GW = 0xc0a84001;

/** An OFFER as a server would send it, with six options. */
function offerReply(chaddr: Uint8Array = VM_MAC): DhcpReply {
  return {
    xid: 0xdb2e0e5e,
    flags: BROADCAST_FLAG,
    ciaddr: 0,
    yiaddr: 0xc0a84002,
    siaddr: 0,
    chaddr,
    options: [
      [DhcpOption.MESSAGE_TYPE, Uint8Array.of(DhcpType.OFFER)],
      [DhcpOption.SERVER_ID, u32Option(GW)],
      [DhcpOption.LEASE_TIME, u32Option(600)],
      [DhcpOption.SUBNET_MASK, u32Option(0xffffff00)],
      [DhcpOption.ROUTER, u32Option(GW)],
      [DhcpOption.DNS, hex('c0a84001 08080808')],
    ],
  };
}

const OFFER_BYTES = hex(
  `02010600 db2e0e5e 0000 8000 00000000 c0a84002 00000000 00000000 525400123456 ${z(10)} ${z(192)}` +
    '63825363 350102 3604c0a84001 330400000258 0104ffffff00 0304c0a84001 0608c0a8400108080808 ff' +
    z(22),
);

test('emitDhcp writes the known OFFER into a junk-filled buffer, padded with zeros to 300 bytes', () => {
  assert.equal(OFFER_BYTES.length, 300);
  const u8 = new Uint8Array(7 + 300 + 9).fill(0xa5);
  const len = emitDhcp(u8, 7, offerReply());
  assert.equal(len, 300);
  assert.equal(dhcpReplyLen(offerReply()), 300);
  assert.deepEqual(u8.subarray(7, 307), OFFER_BYTES);
  assert.ok(u8.subarray(0, 7).every((b) => b === 0xa5));
  assert.ok(u8.subarray(307).every((b) => b === 0xa5));
});

test('emitDhcp copies a 16-byte chaddr whole and reads back as a BOOTREPLY', () => {
  const chaddr = hex('525400123456 0102030405060708090a');
  const u8 = new Uint8Array(300).fill(0xa5);
  emitDhcp(u8, 0, offerReply(chaddr));
  assert.deepEqual(u8.subarray(BOOTP.CHADDR, BOOTP.CHADDR + 16), chaddr);
  const msg = parsed(parseDhcp(u8, 0, 300, DhcpOp.BOOTREPLY));
  assert.equal(msg.type, DhcpType.OFFER);
  assert.equal(msg.yiaddr, 0xc0a84002);
  assert.equal(msg.flags, BROADCAST_FLAG);
  assert.equal(optionAddr(msg, DhcpOption.SERVER_ID), GW);
  assert.deepEqual(msg.options.get(DhcpOption.DNS), hex('c0a84001 08080808'));
});

test('emitDhcp splits an option longer than 255 bytes (RFC 3396) and dhcpReplyLen counts every piece', () => {
  const data = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
  const reply: DhcpReply = { ...offerReply(), options: [[DhcpOption.CLASSLESS_ROUTES, data]] };
  const expectedLen = 240 + (2 + 255) + (2 + 45) + 1;
  assert.equal(dhcpReplyLen(reply), expectedLen);
  const u8 = new Uint8Array(expectedLen + 10).fill(0xa5);
  assert.equal(emitDhcp(u8, 0, reply), expectedLen);
  assert.deepEqual([...u8.subarray(240, 242)], [121, 255]);
  assert.deepEqual(u8.subarray(242, 497), data.subarray(0, 255));
  assert.deepEqual([...u8.subarray(497, 499)], [121, 45]);
  assert.deepEqual(u8.subarray(499, 544), data.subarray(255));
  assert.equal(u8[544], 255);
  assert.ok(u8.subarray(545).every((b) => b === 0xa5));
  // Parsed back (with a 53 added), the pieces join again.
  const withType: DhcpReply = {
    ...reply,
    options: [[DhcpOption.MESSAGE_TYPE, Uint8Array.of(DhcpType.ACK)], ...reply.options],
  };
  const buf = new Uint8Array(dhcpReplyLen(withType));
  emitDhcp(buf, 0, withType);
  assert.deepEqual(parsed(parseDhcp(buf, 0, buf.length, DhcpOp.BOOTREPLY)).options.get(121), data);
});

test('emitDhcp piece boundaries: 0, 255, 256 and 510 bytes', () => {
  const cases: Array<[number, number[]]> = [
    [0, [0]],
    [255, [255]],
    [256, [255, 1]],
    [510, [255, 255]],
  ];
  for (const [size, pieces] of cases) {
    const reply: DhcpReply = { ...offerReply(), options: [[224, new Uint8Array(size).fill(7)]] };
    const optLen = pieces.reduce((n, p) => n + 2 + p, 0);
    assert.equal(dhcpReplyLen(reply), Math.max(300, 240 + optLen + 1), `size ${size}`);
    const u8 = new Uint8Array(dhcpReplyLen(reply));
    emitDhcp(u8, 0, reply);
    let at = 240;
    for (const p of pieces) {
      assert.deepEqual([u8[at], u8[at + 1]], [224, p], `size ${size}`);
      at += 2 + p;
    }
    assert.equal(u8[at], 255, `END after size ${size}`);
  }
});

test('emitDhcp with no options is END and padding', () => {
  const u8 = new Uint8Array(300).fill(0xa5);
  assert.equal(emitDhcp(u8, 0, { ...offerReply(), options: [] }), 300);
  assert.equal(u8[240], 255);
  assert.ok(u8.subarray(241).every((b) => b === 0));
});

test('classlessRoutes: the destination descriptors of RFC 3442 section 3', () => {
  const via = 0x0a000001; // 10.0.0.1
  const cases: Array<[number, number, string]> = [
    [0x00000000, 0, '00'],
    [0x0a000000, 8, '08 0a'],
    [0x0a000000, 24, '18 0a 00 00'],
    [0x0a110000, 16, '10 0a 11'],
    [0x0a1b8100, 24, '18 0a 1b 81'],
    [0x0ae50080, 25, '19 0a e5 00 80'],
    [0x0ac67a2f, 32, '20 0a c6 7a 2f'],
  ];
  for (const [dest, prefix, descriptor] of cases) {
    assert.deepEqual(classlessRoutes([{ dest, prefix, via }]), hex(`${descriptor} 0a000001`), descriptor);
  }
});

test('classlessRoutes: 10.0.0.0/8 via 10.0.0.1 is 08 0a 0a 00 00 01; several routes concatenate', () => {
  assert.deepEqual(classlessRoutes([{ dest: 0x0a000000, prefix: 8, via: 0x0a000001 }]), hex('080a0a000001'));
  assert.deepEqual(
    classlessRoutes([
      { dest: 0xac100000, prefix: 12, via: 0xc0a84001 },
      { dest: 0, prefix: 0, via: 0xc0a84001 },
    ]),
    hex('0c ac10 c0a84001  00 c0a84001'),
  );
  assert.deepEqual(classlessRoutes([]), new Uint8Array(0));
  // A router above 2^31 is written unsigned.
  assert.deepEqual(classlessRoutes([{ dest: 0, prefix: 0, via: 0xfe000001 }]), hex('00 fe000001'));
});

test('u32Option and optionAddr', () => {
  assert.deepEqual(u32Option(600), hex('00000258'));
  assert.deepEqual(u32Option(0xffffffff), hex('ffffffff'));
  assert.deepEqual(u32Option(0xc0a84001), hex('c0a84001'));
  const msg = parsed(parse(bootp([...TYPE_DISCOVER, 50, 4, 255, 255, 255, 254, 255])));
  assert.equal(optionAddr(msg, DhcpOption.REQUESTED_IP), 0xfffffffe);
  assert.equal(optionAddr(msg, DhcpOption.SERVER_ID), 0);
  assert.equal(optionAddr(msg, DhcpOption.MESSAGE_TYPE), 0); // not 4 bytes
});
