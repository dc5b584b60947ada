// The DHCPv6 server (RFC 8415), driven with client messages in an arena and every reply decoded field by
// field: stateless and stateful exchanges, Rapid Commit, a VM without a prefix, identifier rules, refusals,
// the reply's bound, and a fuzz loop.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  Dhcpv6Server,
  type Dhcpv6Vm,
  duidLl,
  IA_ADDRESS_WORD2,
  INFORMATION_REFRESH_S,
  MAX_REPLY_LEN,
} from '../../src/services/dhcpv6.js';
import { Drop } from '../../src/stats/drops.js';
import { formatIpv6, parseIpv6 } from '../../src/wire/addr.js';
import { Dhcp6Option as O, Dhcp6Status as S, Dhcp6Type as T } from '../../src/wire/dhcpv6.js';
import { prng } from '../lib/prng.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g) ?? [], (h) => Number.parseInt(h, 16));
const be16 = (v: number) => [(v >>> 8) & 0xff, v & 0xff];
const be32 = (v: number) => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const opt = (code: number, data: ArrayLike<number> = []) => [
  ...be16(code),
  ...be16(data.length),
  ...Array.from(data),
];
const words = (s: string) => Array.from(parseIpv6(s)!, (w) => w | 0);
const addrBytes = (s: string) => words(s).flatMap(be32);

const GW_MAC = hex('0200000000fe');
const SERVER_DUID = duidLl(GW_MAC);
const VM_MAC = hex('525400123456');
// DUID-LLT: type 1, hardware type 1, seconds since 2000, the MAC.
const CLIENT_DUID = [...hex('0001 0001 2b1c3d4e'), ...VM_MAC];
const OTHER_DUID = [...hex('0003 0001 0200000000aa')];

const VM: Dhcpv6Vm = {
  prefix0: 0xfd000001 | 0,
  prefix1: 0x00020005,
  dns: [...words('fd00:1:2::1'), ...words('2001:db8::53')],
  domain: 'vm.internal',
  validLifetime: 7200,
  preferredLifetime: 3600,
};
const NO_PREFIX: Dhcpv6Vm = { ...VM, prefix0: 0, prefix1: 0 };

const CLIENTID = opt(O.CLIENTID, CLIENT_DUID);
const SERVERID = opt(O.SERVERID, SERVER_DUID);
const ORO = opt(O.ORO, [...be16(O.DNS_SERVERS), ...be16(O.DOMAIN_LIST), ...be16(82)]);
const ELAPSED = opt(O.ELAPSED_TIME, [0, 0]);
const RAPID = opt(O.RAPID_COMMIT);
const iaNa = (iaid: number, ...options: number[][]) =>
  opt(O.IA_NA, [...be32(iaid), ...be32(0), ...be32(0), ...options.flat()]);
const iaTa = (iaid: number, ...options: number[][]) => opt(O.IA_TA, [...be32(iaid), ...options.flat()]);
const iaPd = (iaid: number) =>
  opt(O.IA_PD, [
    ...be32(iaid),
    ...be32(0),
    ...be32(0),
    ...opt(O.IAPREFIX, [...be32(0), ...be32(0), 56, ...new Array(16).fill(0)]),
  ]);
const iaAddr = (a: string, preferred = 0, valid = 0) =>
  opt(O.IAADDR, [...addrBytes(a), ...be32(preferred), ...be32(valid)]);

const XID = 0x4a1b2c;
const MSG = 64;
const OUT = 6144;

interface Option {
  code: number;
  data: Uint8Array;
}

/** The options in b, asserting they tile it exactly. */
function options(b: Uint8Array): Option[] {
  const out: Option[] = [];
  let at = 0;
  while (at < b.length) {
    assert.ok(at + 4 <= b.length, 'option header past the end');
    const len = (b[at + 2] << 8) | b[at + 3];
    assert.ok(at + 4 + len <= b.length, 'option body past the end');
    out.push({ code: (b[at] << 8) | b[at + 1], data: b.subarray(at + 4, at + 4 + len) });
    at += 4 + len;
  }
  return out;
}

const u32 = (b: Uint8Array, at: number) =>
  ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
const codes = (opts: Option[]) => opts.map((o) => o.code);
function only(opts: Option[], code: number): Option {
  const found = opts.filter((o) => o.code === code);
  assert.equal(found.length, 1, `option ${code} ${found.length} times`);
  return found[0];
}
function statusOf(opts: Option[]): number {
  const o = only(opts, O.STATUS_CODE);
  assert.ok(o.data.length >= 2);
  return (o.data[0] << 8) | o.data[1];
}

interface Reply {
  type: number;
  xid: number;
  opts: Option[];
}

interface Ia {
  iaid: number;
  t1: number;
  t2: number;
  opts: Option[];
  addrs: Array<{ addr: string; preferred: number; valid: number }>;
}

function ias(r: Reply, code: number): Ia[] {
  return r.opts
    .filter((o) => o.code === code)
    .map((o) => {
      const fixed = code === O.IA_TA ? 4 : 12;
      const inner = options(o.data.subarray(fixed));
      return {
        iaid: u32(o.data, 0),
        t1: code === O.IA_TA ? 0 : u32(o.data, 4),
        t2: code === O.IA_TA ? 0 : u32(o.data, 8),
        opts: inner,
        addrs: inner
          .filter((a) => a.code === O.IAADDR)
          .map((a) => {
            assert.equal(a.data.length, 24);
            const w = [0, 4, 8, 12].map((i) => u32(a.data, i));
            return { addr: formatIpv6(w), preferred: u32(a.data, 16), valid: u32(a.data, 20) };
          }),
      };
    });
}

/** Runs `msg` through a server, checking the arena outside the reply's room is untouched; returns n and the arena. */
function run(
  msg: number[] | Uint8Array,
  vm: Dhcpv6Vm = VM,
  server = new Dhcpv6Server({ serverDuid: SERVER_DUID }),
): { n: number; u8: Uint8Array } {
  const u8 = new Uint8Array(OUT + MAX_REPLY_LEN + 100).fill(0xee);
  u8.set(msg, MSG);
  const n = server.handle(u8, MSG, msg.length, vm, OUT);
  assert.ok(Number.isInteger(n));
  assert.deepEqual(u8.subarray(MSG, MSG + msg.length), Uint8Array.from(msg), 'the message was changed');
  // A refused reply may have been begun: its room is scratch space, the rest of the arena is not.
  const end = OUT + (n > 0 ? n : MAX_REPLY_LEN);
  for (let i = 0; i < u8.length; i++) {
    if ((i < MSG || i >= MSG + msg.length) && (i < OUT || i >= end) && u8[i] !== 0xee) {
      assert.fail(`byte ${i} written outside the reply`);
    }
  }
  return { n, u8 };
}

/** The decoded reply to `msg`, asserting there is one. */
function answer(msg: number[], vm: Dhcpv6Vm = VM, server?: Dhcpv6Server): Reply {
  const { n, u8 } = run(msg, vm, server);
  assert.ok(n >= 4, `no reply: drop ${-n}`);
  assert.ok(n <= MAX_REPLY_LEN);
  const b = u8.subarray(OUT, OUT + n);
  const r = { type: b[0], xid: (b[1] << 16) | (b[2] << 8) | b[3], opts: options(b.subarray(4)) };
  assert.equal(r.xid, XID, 'transaction id not echoed');
  assert.deepEqual(only(r.opts, O.SERVERID).data, SERVER_DUID);
  return r;
}

const dropOf = (msg: number[], vm: Dhcpv6Vm = VM) => -run(msg, vm).n;
const msg = (type: number, ...opts: number[][]) => [
  type,
  XID >>> 16,
  (XID >>> 8) & 0xff,
  XID & 0xff,
  ...opts.flat(),
];

/** Asserts the DNS servers and search domain of VM are in `r`. */
function stateless(r: Reply): void {
  const dns = only(r.opts, O.DNS_SERVERS).data;
  assert.equal(dns.length, 32);
  assert.deepEqual(
    [formatIpv6([0, 4, 8, 12].map((i) => u32(dns, i))), formatIpv6([16, 20, 24, 28].map((i) => u32(dns, i)))],
    ['fd00:1:2::1', '2001:db8::53'],
  );
  assert.deepEqual(only(r.opts, O.DOMAIN_LIST).data, hex('02 766d 08 696e7465726e616c 00'));
}

test('Information-Request without a client id: Reply with DNS, domain and refresh time, no client id', () => {
  const r = answer(msg(T.INFORMATION_REQUEST, ELAPSED, ORO));
  assert.equal(r.type, T.REPLY);
  assert.deepEqual(codes(r.opts), [O.SERVERID, O.DNS_SERVERS, O.DOMAIN_LIST, O.INFORMATION_REFRESH_TIME]);
  stateless(r);
  assert.equal(INFORMATION_REFRESH_S, 600);
  assert.equal(u32(only(r.opts, O.INFORMATION_REFRESH_TIME).data, 0), 600);
});

test('Information-Request with a client id (and our server id) gets it echoed; from a VM without a prefix too', () => {
  for (const vm of [VM, NO_PREFIX]) {
    const r = answer(msg(T.INFORMATION_REQUEST, CLIENTID, SERVERID, ELAPSED, ORO), vm);
    assert.equal(r.type, T.REPLY);
    assert.deepEqual(only(r.opts, O.CLIENTID).data, Uint8Array.from(CLIENT_DUID));
    stateless(r);
  }
});

test('without DNS servers or domain those options are left out; an invalid domain is left out', () => {
  const server = new Dhcpv6Server({ serverDuid: SERVER_DUID });
  const bare = answer(msg(T.INFORMATION_REQUEST), { ...VM, dns: [], domain: null }, server);
  assert.deepEqual(codes(bare.opts), [O.SERVERID, O.INFORMATION_REFRESH_TIME]);
  const bad = answer(msg(T.INFORMATION_REQUEST), { ...VM, domain: 'a..b' }, server);
  assert.deepEqual(codes(bad.opts), [O.SERVERID, O.DNS_SERVERS, O.INFORMATION_REFRESH_TIME]);
});

test('one server, VMs with different domains in turn: each reply carries its own VM domain', () => {
  const server = new Dhcpv6Server({ serverDuid: SERVER_DUID });
  for (const domain of ['a.example', 'b.example', 'b.example', null, 'a.example']) {
    const r = answer(msg(T.INFORMATION_REQUEST), { ...VM, domain }, server);
    const d = r.opts.find((o) => o.code === O.DOMAIN_LIST)?.data;
    assert.deepEqual(
      d,
      domain === null ? undefined : hex(`01 ${domain[0] === 'a' ? '61' : '62'} 07 6578616d706c65 00`),
    );
  }
});

test('Solicit (dhcpcd style): Advertise, Preference 255, the IAID-derived address, T1/T2 from preferred', () => {
  const r = answer(msg(T.SOLICIT, CLIENTID, ORO, ELAPSED, iaNa(0x00123456), opt(39, [1, 2, 0x76, 0x6d])));
  assert.equal(r.type, T.ADVERTISE);
  assert.deepEqual(codes(r.opts), [
    O.SERVERID,
    O.CLIENTID,
    O.PREFERENCE,
    O.IA_NA,
    O.DNS_SERVERS,
    O.DOMAIN_LIST,
  ]);
  assert.deepEqual(only(r.opts, O.CLIENTID).data, Uint8Array.from(CLIENT_DUID));
  assert.deepEqual(only(r.opts, O.PREFERENCE).data, Uint8Array.of(255));
  const [a] = ias(r, O.IA_NA);
  assert.deepEqual(
    { iaid: a.iaid, t1: a.t1, t2: a.t2, addrs: a.addrs, other: codes(a.opts) },
    {
      iaid: 0x00123456,
      t1: 1800,
      t2: 2880,
      addrs: [{ addr: 'fd00:1:2:5:0:d6:12:3456', preferred: 3600, valid: 7200 }],
      other: [O.IAADDR],
    },
  );
  assert.equal(IA_ADDRESS_WORD2, 0xd6);
  stateless(r);
});

test('the address is a function of the IAID alone: the same every time, distinct per IA, never a zero iid', () => {
  const addr = (iaid: number) => ias(answer(msg(T.SOLICIT, CLIENTID, iaNa(iaid))), O.IA_NA)[0].addrs[0].addr;
  assert.equal(addr(1), 'fd00:1:2:5:0:d6:0:1');
  assert.equal(addr(1), addr(1));
  assert.equal(addr(0), 'fd00:1:2:5:0:d6::');
  assert.equal(addr(0xffffffff), 'fd00:1:2:5:0:d6:ffff:ffff');
  const two = ias(answer(msg(T.SOLICIT, CLIENTID, iaNa(1), iaNa(2))), O.IA_NA);
  assert.deepEqual(
    two.map((a) => [a.iaid, a.addrs[0].addr]),
    [
      [1, 'fd00:1:2:5:0:d6:0:1'],
      [2, 'fd00:1:2:5:0:d6:0:2'],
    ],
  );
});

test('Solicit with Rapid Commit (systemd-networkd style): Reply carrying RAPID_COMMIT and the address', () => {
  const duidEn = opt(O.CLIENTID, hex('0002 0000ab11 0102030405060708 090a0b0c'));
  const r = answer(msg(T.SOLICIT, ELAPSED, duidEn, RAPID, iaNa(0x8a2b3c4d), ORO));
  assert.equal(r.type, T.REPLY);
  assert.deepEqual(codes(r.opts), [
    O.SERVERID,
    O.CLIENTID,
    O.RAPID_COMMIT,
    O.IA_NA,
    O.DNS_SERVERS,
    O.DOMAIN_LIST,
  ]);
  assert.equal(only(r.opts, O.RAPID_COMMIT).data.length, 0);
  const [a] = ias(r, O.IA_NA);
  assert.deepEqual(a.addrs, [{ addr: 'fd00:1:2:5:0:d6:8a2b:3c4d', preferred: 3600, valid: 7200 }]);
});

test('Solicit with IA_NA and IA_PD (odhcp6c style): the address, and NoPrefixAvail in the IA_PD', () => {
  const r = answer(msg(T.SOLICIT, CLIENTID, ORO, ELAPSED, opt(20), iaNa(1), iaPd(1)));
  assert.equal(r.type, T.ADVERTISE);
  assert.equal(ias(r, O.IA_NA)[0].addrs.length, 1);
  const [pd] = ias(r, O.IA_PD);
  assert.deepEqual(
    [pd.iaid, pd.t1, pd.t2, codes(pd.opts), statusOf(pd.opts)],
    [1, 0, 0, [O.STATUS_CODE], S.NO_PREFIX_AVAIL],
  );
  assert.equal(
    r.opts.some((o) => o.code === O.STATUS_CODE),
    false,
  );
});

test('Solicit without IA_NA: Advertise with the stateless options, IA_PD refused, even with Rapid Commit', () => {
  const none = answer(msg(T.SOLICIT, CLIENTID, ELAPSED, ORO));
  assert.equal(none.type, T.ADVERTISE);
  assert.deepEqual(codes(none.opts), [O.SERVERID, O.CLIENTID, O.PREFERENCE, O.DNS_SERVERS, O.DOMAIN_LIST]);
  const pd = answer(msg(T.SOLICIT, CLIENTID, RAPID, iaPd(3)));
  assert.equal(pd.type, T.ADVERTISE);
  assert.deepEqual(codes(pd.opts), [
    O.SERVERID,
    O.CLIENTID,
    O.PREFERENCE,
    O.IA_PD,
    O.DNS_SERVERS,
    O.DOMAIN_LIST,
  ]);
  assert.equal(statusOf(ias(pd, O.IA_PD)[0].opts), S.NO_PREFIX_AVAIL);
});

test('IA_TA gets NoAddrsAvail: softnet gives no temporary addresses', () => {
  const r = answer(msg(T.SOLICIT, CLIENTID, iaTa(4), iaNa(5)));
  const [ta] = ias(r, O.IA_TA);
  assert.deepEqual([ta.iaid, ta.addrs.length, statusOf(ta.opts)], [4, 0, S.NO_ADDRS_AVAIL]);
  assert.equal(ias(r, O.IA_NA)[0].addrs[0].addr, 'fd00:1:2:5:0:d6:0:5');
});

test('the whole exchange: Solicit, then Request, Renew and Rebind built from the Advertise get the same address', () => {
  const adv = answer(msg(T.SOLICIT, CLIENTID, ELAPSED, ORO, iaNa(0x00123456)));
  const serverId = opt(O.SERVERID, only(adv.opts, O.SERVERID).data);
  // As clients do: the IA_NA option of the Advertise sent back as it came (T1/T2, IAADDR with lifetimes).
  const ia = Array.from(hex('0003'))
    .concat(be16(only(adv.opts, O.IA_NA).data.length))
    .concat(Array.from(only(adv.opts, O.IA_NA).data));
  const exchanges: Array<[number, number[]]> = [
    [T.REQUEST, serverId],
    [T.RENEW, serverId],
    [T.REBIND, []],
  ];
  for (const [type, sid] of exchanges) {
    const r = answer(msg(type, CLIENTID, sid, ELAPSED, ORO, ia));
    assert.equal(r.type, T.REPLY, `type ${type}`);
    assert.deepEqual(codes(r.opts), [O.SERVERID, O.CLIENTID, O.IA_NA, O.DNS_SERVERS, O.DOMAIN_LIST]);
    const [a] = ias(r, O.IA_NA);
    assert.deepEqual([a.iaid, a.t1, a.t2], [0x00123456, 1800, 2880]);
    assert.deepEqual(
      a.addrs,
      [{ addr: 'fd00:1:2:5:0:d6:12:3456', preferred: 3600, valid: 7200 }],
      `type ${type}`,
    );
    stateless(r);
  }
});

test('Request/Renew/Rebind: other addresses the client lists get lifetimes 0, the IAID address full ones', () => {
  for (const type of [T.REQUEST, T.RENEW, T.REBIND]) {
    const sid = type === T.REBIND ? [] : SERVERID;
    const ia = iaNa(
      7,
      iaAddr('2001:db8::7', 3600, 7200),
      iaAddr('fd00:1:2:5::1234', 100, 200),
      iaAddr('fd00:1:2:5:0:d6:0:7', 1, 2),
    );
    const [a] = ias(answer(msg(type, CLIENTID, sid, ia)), O.IA_NA);
    assert.deepEqual(
      a.addrs,
      [
        { addr: 'fd00:1:2:5:0:d6:0:7', preferred: 3600, valid: 7200 },
        { addr: '2001:db8::7', preferred: 0, valid: 0 },
        { addr: 'fd00:1:2:5::1234', preferred: 0, valid: 0 },
      ],
      `type ${type}`,
    );
    assert.equal(a.opts.filter((o) => o.code === O.STATUS_CODE).length, 0);
  }
});

test('lifetimes: preferred above valid is cut to valid; infinite preferred gives infinite T1 and T2', () => {
  const cut = ias(
    answer(msg(T.SOLICIT, CLIENTID, iaNa(1)), { ...VM, preferredLifetime: 9000, validLifetime: 1000 }),
    O.IA_NA,
  )[0];
  assert.deepEqual([cut.t1, cut.t2, cut.addrs[0].preferred, cut.addrs[0].valid], [500, 800, 1000, 1000]);
  const inf = ias(
    answer(msg(T.SOLICIT, CLIENTID, iaNa(1)), {
      ...VM,
      preferredLifetime: 0xffffffff,
      validLifetime: 0xffffffff,
    }),
    O.IA_NA,
  )[0];
  assert.deepEqual(
    [inf.t1, inf.t2, inf.addrs[0].preferred, inf.addrs[0].valid],
    [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
  );
  const odd = ias(answer(msg(T.SOLICIT, CLIENTID, iaNa(1)), { ...VM, preferredLifetime: 1001 }), O.IA_NA)[0];
  assert.deepEqual([odd.t1, odd.t2], [500, 800]);
});

test('a VM without a prefix: NoAddrsAvail in each IA_NA (and at the top of an Advertise); listed addresses to 0', () => {
  const adv = answer(msg(T.SOLICIT, CLIENTID, RAPID, iaNa(1)), NO_PREFIX);
  assert.equal(adv.type, T.ADVERTISE, 'nothing to commit, so no Rapid Commit Reply');
  assert.deepEqual(codes(adv.opts), [
    O.SERVERID,
    O.CLIENTID,
    O.PREFERENCE,
    O.IA_NA,
    O.STATUS_CODE,
    O.DNS_SERVERS,
    O.DOMAIN_LIST,
  ]);
  assert.equal(statusOf(adv.opts), S.NO_ADDRS_AVAIL);
  const [a] = ias(adv, O.IA_NA);
  assert.deepEqual([a.iaid, a.t1, a.t2, a.addrs.length, statusOf(a.opts)], [1, 0, 0, 0, S.NO_ADDRS_AVAIL]);
  for (const type of [T.REQUEST, T.RENEW, T.REBIND]) {
    const r = answer(
      msg(type, CLIENTID, type === T.REBIND ? [] : SERVERID, iaNa(1, iaAddr('fd00:1:2:5:0:d6:0:1'))),
      NO_PREFIX,
    );
    assert.equal(r.type, T.REPLY);
    const [b] = ias(r, O.IA_NA);
    assert.deepEqual([b.t1, b.t2, statusOf(b.opts)], [0, 0, S.NO_ADDRS_AVAIL]);
    assert.deepEqual(b.addrs, [{ addr: 'fd00:1:2:5:0:d6:0:1', preferred: 0, valid: 0 }]);
    assert.equal(r.opts.filter((o) => o.code === O.STATUS_CODE).length, 0);
  }
});

test('Confirm: Success when every address is in the /64, NotOnLink otherwise or without a prefix', () => {
  const confirm = (...addrs: string[]) =>
    msg(T.CONFIRM, CLIENTID, ELAPSED, iaNa(1, ...addrs.map((a) => iaAddr(a))));
  const ok = answer(confirm('fd00:1:2:5:0:d6:0:1', 'fd00:1:2:5::99'));
  assert.equal(ok.type, T.REPLY);
  assert.deepEqual(codes(ok.opts), [O.SERVERID, O.CLIENTID, O.STATUS_CODE]);
  assert.equal(statusOf(ok.opts), S.SUCCESS);
  assert.equal(statusOf(answer(confirm('fd00:1:2:5::1', 'fd00:1:2:6::1')).opts), S.NOT_ON_LINK);
  assert.equal(statusOf(answer(confirm('2001:db8::1')).opts), S.NOT_ON_LINK);
  assert.equal(statusOf(answer(confirm('fd00:1:2:5::1'), NO_PREFIX).opts), S.NOT_ON_LINK);
  // IA_TA addresses count too.
  assert.equal(
    statusOf(answer(msg(T.CONFIRM, CLIENTID, iaTa(1, iaAddr('fd00:1:3:5::1')))).opts),
    S.NOT_ON_LINK,
  );
  // RFC 8415 18.3.3: nothing to confirm, no Reply.
  assert.equal(dropOf(msg(T.CONFIRM, CLIENTID, iaNa(1))), Drop.DHCP6_MALFORMED);
});

test('Release and Decline: Reply with status Success', () => {
  for (const type of [T.RELEASE, T.DECLINE]) {
    for (const vm of [VM, NO_PREFIX]) {
      const r = answer(msg(type, CLIENTID, SERVERID, ELAPSED, iaNa(1, iaAddr('fd00:1:2:5:0:d6:0:1'))), vm);
      assert.equal(r.type, T.REPLY);
      assert.deepEqual(codes(r.opts), [O.SERVERID, O.CLIENTID, O.STATUS_CODE]);
      assert.equal(statusOf(r.opts), S.SUCCESS);
    }
  }
});

test('server identifier rules (RFC 8415 16): ours required, foreign not for us, forbidden where none is due', () => {
  const foreign = opt(O.SERVERID, OTHER_DUID);
  // Our DUID with one more byte is still not ours.
  const longer = opt(O.SERVERID, [...SERVER_DUID, 0]);
  for (const type of [T.REQUEST, T.RENEW, T.RELEASE, T.DECLINE]) {
    assert.equal(dropOf(msg(type, CLIENTID, foreign, iaNa(1))), Drop.DHCP6_NOT_FOR_US, `foreign ${type}`);
    assert.equal(dropOf(msg(type, CLIENTID, longer, iaNa(1))), Drop.DHCP6_NOT_FOR_US, `longer ${type}`);
    assert.equal(dropOf(msg(type, CLIENTID, iaNa(1))), Drop.DHCP6_MALFORMED, `none ${type}`);
  }
  for (const type of [T.SOLICIT, T.CONFIRM, T.REBIND]) {
    for (const sid of [SERVERID, foreign]) {
      assert.equal(
        dropOf(msg(type, CLIENTID, sid, iaNa(1, iaAddr('fd00:1:2:5::1')))),
        Drop.DHCP6_MALFORMED,
        `${type}`,
      );
    }
  }
  assert.equal(dropOf(msg(T.INFORMATION_REQUEST, foreign)), Drop.DHCP6_NOT_FOR_US);
});

test('a client id is required but for Information-Request; Information-Request must carry no IA', () => {
  for (const type of [T.SOLICIT, T.REQUEST, T.CONFIRM, T.RENEW, T.REBIND, T.RELEASE, T.DECLINE]) {
    assert.equal(
      dropOf(msg(type, SERVERID, iaNa(1, iaAddr('fd00:1:2:5::1')))),
      Drop.DHCP6_MALFORMED,
      `type ${type}`,
    );
    assert.equal(dropOf(msg(type, iaNa(1, iaAddr('fd00:1:2:5::1')))), Drop.DHCP6_MALFORMED, `type ${type}`);
  }
  assert.equal(dropOf(msg(T.INFORMATION_REQUEST, CLIENTID, iaNa(1))), Drop.DHCP6_MALFORMED);
  assert.equal(dropOf(msg(T.INFORMATION_REQUEST, CLIENTID, iaPd(1))), Drop.DHCP6_MALFORMED);
});

test('server messages from a VM are DHCP6_FROM_SERVER; relays and unknown types DHCP6_UNSUPPORTED', () => {
  for (const type of [T.ADVERTISE, T.REPLY, T.RECONFIGURE, T.RELAY_REPL]) {
    assert.equal(dropOf(msg(type, CLIENTID, SERVERID)), Drop.DHCP6_FROM_SERVER, `type ${type}`);
  }
  for (const type of [0, T.RELAY_FORW, 14, 35, 36, 255]) {
    assert.equal(dropOf(msg(type, CLIENTID)), Drop.DHCP6_UNSUPPORTED, `type ${type}`);
  }
});

test('malformed messages are DHCP6_MALFORMED: short header, overrun, a flood of options, a repeated DUID', () => {
  for (let len = 0; len < 4; len++)
    assert.equal(dropOf(msg(T.SOLICIT).slice(0, len)), Drop.DHCP6_MALFORMED, `len ${len}`);
  assert.equal(dropOf(msg(T.SOLICIT, CLIENTID).slice(0, -1)), Drop.DHCP6_MALFORMED);
  assert.equal(dropOf(msg(T.SOLICIT, CLIENTID, [0, 8, 0, 9, 0])), Drop.DHCP6_MALFORMED);
  assert.equal(dropOf(msg(T.SOLICIT, CLIENTID, ...new Array(900).fill(ELAPSED))), Drop.DHCP6_MALFORMED);
  assert.equal(dropOf(msg(T.SOLICIT, CLIENTID, CLIENTID, iaNa(1))), Drop.DHCP6_MALFORMED);
  assert.equal(dropOf(msg(T.SOLICIT, opt(O.CLIENTID, new Array(131).fill(1)))), Drop.DHCP6_MALFORMED);
  assert.equal(
    dropOf(msg(T.REQUEST, CLIENTID, SERVERID, iaNa(1, opt(O.IAADDR, [1, 2, 3])))),
    Drop.DHCP6_MALFORMED,
  );
});

test(`the largest replies stay within MAX_REPLY_LEN (${MAX_REPLY_LEN}) or are refused, never written past the room`, () => {
  // Eight IA_NAs with two stale addresses each and the longest DUID: the biggest reply a parse allows.
  const bigId = opt(O.CLIENTID, new Array(130).fill(0x42));
  const heavy = Array.from({ length: 8 }, (_, i) =>
    iaNa(i, iaAddr(`2001:db8::${i}:1`), iaAddr(`2001:db8::${i}:2`)),
  );
  const fits = run(msg(T.RENEW, bigId, SERVERID, ...heavy));
  assert.ok(fits.n > 0 && fits.n <= MAX_REPLY_LEN, `n ${fits.n}`);
  assert.equal(fits.n, 4 + 14 + 134 + 8 * (16 + 28 * 3) + 36 + 17);
  // With 20 DNS servers it no longer fits: refused, and nothing beyond the room was touched.
  const dns = Array.from({ length: 20 }, (_, i) => words(`fd00::${i + 1}`)).flat();
  assert.equal(run(msg(T.RENEW, bigId, SERVERID, ...heavy), { ...VM, dns }).n, -Drop.DHCP6_MALFORMED);
  // The end of the array bounds the reply as well as the room.
  const u8 = new Uint8Array(200);
  const m = msg(T.INFORMATION_REQUEST);
  u8.set(m, 0);
  const server = new Dhcpv6Server({ serverDuid: SERVER_DUID });
  assert.equal(server.handle(u8, 0, m.length, VM, 150), -Drop.DHCP6_MALFORMED);
  assert.equal(server.handle(u8, 0, m.length, VM, 100), 4 + 14 + 36 + 17 + 8);
});

test('the server DUID must be 3 to 130 bytes; the caller may reuse its array afterwards', () => {
  assert.throws(() => new Dhcpv6Server({ serverDuid: new Uint8Array(2) }), RangeError);
  assert.throws(() => new Dhcpv6Server({ serverDuid: new Uint8Array(131) }), RangeError);
  const duid = duidLl(GW_MAC);
  const server = new Dhcpv6Server({ serverDuid: duid });
  duid.fill(0);
  answer(msg(T.INFORMATION_REQUEST), VM, server);
});

test('fuzz: random and mutated messages never throw; replies are well-formed and within their room', () => {
  const rand = prng(547);
  const server = new Dhcpv6Server({ serverDuid: SERVER_DUID });
  const bases = [
    msg(T.SOLICIT, CLIENTID, ORO, ELAPSED, RAPID, iaNa(1), iaPd(1)),
    msg(
      T.REQUEST,
      CLIENTID,
      SERVERID,
      iaNa(1, iaAddr('fd00:1:2:5:0:d6:0:1')),
      iaTa(2, iaAddr('2001:db8::1')),
    ),
    msg(T.CONFIRM, CLIENTID, iaNa(1, iaAddr('fd00:1:2:5::1'))),
    msg(T.INFORMATION_REQUEST, ELAPSED, ORO),
  ];
  const u8 = new Uint8Array(1500 + MAX_REPLY_LEN);
  const tally = new Map<number, number>();
  for (let n = 0; n < 20000; n++) {
    let m: number[];
    if (n % 3 === 0) {
      m = Array.from({ length: Math.floor(rand() * 400) }, () => Math.floor(rand() * 256));
      if (m.length > 0) m[0] = Math.floor(rand() * 14);
    } else {
      m = bases[n % bases.length].slice();
      for (let e = 1 + Math.floor(rand() * 3); e > 0; e--)
        m[Math.floor(rand() * m.length)] = Math.floor(rand() * 256);
      if (rand() < 0.3) m = m.slice(0, Math.floor(rand() * m.length));
    }
    u8.fill(0xee);
    u8.set(m, 0);
    const vm = rand() < 0.2 ? NO_PREFIX : VM;
    const r = server.handle(u8, 0, m.length, vm, 1500);
    assert.ok(Number.isInteger(r) && r !== 0);
    tally.set(r > 0 ? 0 : -r, (tally.get(r > 0 ? 0 : -r) ?? 0) + 1);
    if (r > 0) {
      assert.ok(r <= MAX_REPLY_LEN);
      assert.ok(u8[1500] === T.ADVERTISE || u8[1500] === T.REPLY);
      options(u8.subarray(1504, 1500 + r));
    }
    const end = 1500 + (r > 0 ? r : MAX_REPLY_LEN);
    assert.ok(
      u8.subarray(end).every((b) => b === 0xee),
      'written past the room',
    );
    assert.ok(
      u8.subarray(m.length, 1500).every((b) => b === 0xee),
      'written before the room',
    );
  }
  // Replies and refusals both happen, so the loop exercises the server and not only the parser.
  assert.ok((tally.get(0) ?? 0) > 1000, `replies ${tally.get(0)}`);
  assert.ok((tally.get(Drop.DHCP6_MALFORMED) ?? 0) > 1000);
});
