// The DHCP server of one network (RFC 2131), driven with parsed messages from attachments, no port behind.

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import type { Attachment } from '../../src/net/attachment.js';
import { makeNetwork, type NetworkConfig, type Route } from '../../src/net/network.js';
import { Port } from '../../src/ports/port.js';
import {
  DHCP_CLIENT_PORT,
  DHCP_SERVER_PORT,
  type DhcpOutcome,
  DhcpServer,
  emitDhcpFrame,
  maxDhcpFrameLen,
  OFFER_HOLD_MS,
} from '../../src/services/dhcp.js';
import { LeaseTable } from '../../src/services/leases.js';
import { Drop } from '../../src/stats/drops.js';
import { Logger } from '../../src/util/log.js';
import { formatMac, parseCidr } from '../../src/wire/addr.js';
import { checksum } from '../../src/wire/checksum.js';
import {
  BROADCAST_FLAG,
  type DhcpMessage,
  DhcpOp,
  DhcpOption,
  DhcpType,
  parseDhcp,
} from '../../src/wire/dhcp.js';
import { ETH_HEADER_LEN } from '../../src/wire/ethernet.js';
import * as ipv4 from '../../src/wire/ipv4.js';
import * as udp from '../../src/wire/udp.js';
import { attachment } from '../lib/attachments.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));
const ip = (s: string) => s.split('.').reduce((a, o) => a * 256 + Number(o), 0);
const be32 = (v: number) => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];

const GW = ip('192.168.64.1');
const GW_MAC = hex('0200000000fe');
const MAC_A = hex('525400000001');
const MAC_B = hex('525400000002');
const T0 = Date.parse('2025-01-01T00:00:00Z');

interface Fields {
  xid?: number;
  flags?: number;
  ciaddr?: number;
  giaddr?: number;
  chaddr?: Uint8Array;
  options?: Array<[number, number[]]>;
}

/** A client message as parseDhcp would return it. */
function message(type: number, f: Fields = {}): DhcpMessage {
  const chaddr = new Uint8Array(16);
  chaddr.set(f.chaddr ?? MAC_A);
  const options = new Map<number, Uint8Array>([[DhcpOption.MESSAGE_TYPE, Uint8Array.of(type)]]);
  for (const [code, data] of f.options ?? []) options.set(code, Uint8Array.from(data));
  return {
    op: DhcpOp.BOOTREQUEST,
    xid: f.xid ?? 0x1234abcd,
    secs: 0,
    flags: f.flags ?? 0,
    ciaddr: f.ciaddr ?? 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: f.giaddr ?? 0,
    chaddr,
    type,
    options,
  };
}

const requested = (a: number): [number, number[]] => [DhcpOption.REQUESTED_IP, be32(a)];
const serverId = (a: number): [number, number[]] => [DhcpOption.SERVER_ID, be32(a)];

/** The options of a reply by code, and their order. */
function opts(out: DhcpOutcome): { map: Map<number, Uint8Array>; order: number[] } {
  return { map: new Map(out.reply.options), order: out.reply.options.map(([c]) => c) };
}

function outcome(r: DhcpOutcome | number): DhcpOutcome {
  if (typeof r === 'number') assert.fail(`expected a reply, got reason ${r}`);
  return r;
}

/** The reply as a frame written into a junk-filled slab at an offset, checked layer by layer. */
function emitted(out: DhcpOutcome): { frame: Uint8Array; msg: DhcpMessage; payloadLen: number } {
  const off = 37;
  const slab = new Uint8Array(off + 2048).fill(0xa5);
  const dv = new DataView(slab.buffer);
  const len = emitDhcpFrame(slab, dv, off, out, GW_MAC, GW);
  const frame = slab.slice(off, off + len);
  const fdv = new DataView(frame.buffer);
  const ipAt = ETH_HEADER_LEN;
  assert.equal(ipv4.validate(fdv, frame, ipAt, len - ETH_HEADER_LEN), Drop.NONE);
  assert.equal(checksum(frame, ipAt, 20), 0);
  assert.equal(ipv4.proto(fdv, ipAt), ipv4.IpProto.UDP);
  assert.equal(ipv4.src(fdv, ipAt), GW);
  assert.equal(ipv4.dst(fdv, ipAt), out.dstIp);
  const u = ipAt + 20;
  assert.equal(udp.srcPort(fdv, u), DHCP_SERVER_PORT);
  assert.equal(udp.dstPort(fdv, u), DHCP_CLIENT_PORT);
  assert.ok(udp.checksumOk(fdv, frame, u, udp.udpLen(fdv, u), GW, out.dstIp));
  assert.equal(ipv4.totalLen(fdv, ipAt), len - ETH_HEADER_LEN);
  assert.deepEqual(frame.subarray(6, 12), GW_MAC);
  assert.deepEqual(
    frame.subarray(0, 6),
    out.broadcast ? hex('ffffffffffff') : out.reply.chaddr.subarray(0, 6),
  );
  assert.ok(
    slab.subarray(off + len).every((b) => b === 0xa5),
    'nothing written past the frame',
  );
  const payloadLen = udp.udpLen(fdv, u) - 8;
  const parsed = parseDhcp(frame, u + 8, payloadLen, DhcpOp.BOOTREPLY);
  if (!parsed.ok) assert.fail(`reply does not parse: ${parsed.reason}`);
  return { frame, msg: parsed.msg, payloadLen };
}

interface Setup {
  net: NetworkConfig;
  leases: LeaseTable;
  server: DhcpServer;
  logs: string[];
  assigned: Array<[string, number]>;
  a: Attachment;
  b: Attachment;
}

function setup(cidr = '192.168.64.0/24', domain: string | null = 'vm.test', routes: Route[] = []): Setup {
  const net = makeNetwork(parseCidr(cidr)!, {
    name: 'test',
    type: 'shared',
    leaseTime: 600,
    mtu: 1500,
    domain,
    routes,
  });
  const leases = new LeaseTable(net.poolStart, net.poolEnd, null, T0);
  const logs: string[] = [];
  const assigned: Array<[string, number]> = [];
  const server = new DhcpServer(net, leases, (att, a) => {
    att.ip = a;
    assigned.push([att.key, a]);
  });
  const log = new Logger('text', (l) => logs.push(l));
  const a = attachment(new Port(2, 'vm-a', 4, () => {}), MAC_A, 'key-a', log);
  const b = attachment(new Port(3, 'vm-b', 4, () => {}), MAC_B, 'key-b', log);
  return { net, leases, server, logs, assigned, a, b };
}

/** DISCOVER then REQUEST (selecting) for `att`; returns the bound address. */
function bindVia(s: Setup, att: Attachment, now = T0): number {
  const offer = outcome(s.server.handle(message(DhcpType.DISCOVER, { chaddr: att.mac }), att, now));
  const y = offer.reply.yiaddr;
  const ack = outcome(
    s.server.handle(
      message(DhcpType.REQUEST, { chaddr: att.mac, options: [requested(y), serverId(GW)] }),
      att,
      now,
    ),
  );
  assert.equal(opts(ack).map.get(DhcpOption.MESSAGE_TYPE)?.[0], DhcpType.ACK);
  return y;
}

describe('DhcpServer', () => {
  let s: Setup;
  beforeEach(() => {
    s = setup();
  });

  test('DISCOVER -> OFFER of the lowest free address with every configured option', () => {
    const out = outcome(s.server.handle(message(DhcpType.DISCOVER, { xid: 0xdb2e0e5e }), s.a, T0));
    assert.equal(out.reply.yiaddr, ip('192.168.64.2'));
    assert.equal(out.reply.xid, 0xdb2e0e5e);
    assert.equal(out.reply.ciaddr, 0);
    assert.equal(out.reply.siaddr, 0);
    assert.deepEqual(out.reply.chaddr.subarray(0, 6), MAC_A);
    const { map, order } = opts(out);
    assert.equal(order[0], DhcpOption.MESSAGE_TYPE);
    assert.deepEqual(map.get(DhcpOption.MESSAGE_TYPE), Uint8Array.of(DhcpType.OFFER));
    assert.deepEqual(map.get(DhcpOption.SERVER_ID), hex('c0a84001'));
    assert.deepEqual(map.get(DhcpOption.LEASE_TIME), hex('00000258')); // 600
    assert.deepEqual(map.get(DhcpOption.RENEWAL_T1), hex('0000012c')); // 300
    assert.deepEqual(map.get(DhcpOption.REBINDING_T2), hex('0000020d')); // 525
    assert.deepEqual(map.get(DhcpOption.SUBNET_MASK), hex('ffffff00'));
    assert.deepEqual(map.get(DhcpOption.ROUTER), hex('c0a84001'));
    assert.deepEqual(map.get(DhcpOption.DNS), hex('c0a84001'));
    assert.deepEqual(map.get(DhcpOption.DOMAIN_NAME), new TextEncoder().encode('vm.test'));
    assert.deepEqual(map.get(DhcpOption.MTU), hex('05dc'));
    assert.deepEqual(map.get(DhcpOption.BROADCAST), hex('c0a840ff'));
    assert.equal(map.has(DhcpOption.CLASSLESS_ROUTES), false);
    assert.equal(s.leases.get('key-a')?.state, 'offered');
    assert.equal(s.leases.get('key-a')?.expires, T0 + OFFER_HOLD_MS);
    assert.deepEqual(s.assigned, []); // an offer gives no usable address
    assert.ok(s.logs.some((l) => l.includes('lease offered') && l.includes('ip=192.168.64.2')));
  });

  test('the OFFER as a frame: valid IPv4 and UDP checksums; 305 bytes of options need no padding', () => {
    const out = outcome(s.server.handle(message(DhcpType.DISCOVER), s.a, T0));
    const { frame, msg, payloadLen } = emitted(out);
    // 240 + 53(3) 54(6) 51(6) 58(6) 59(6) 1(6) 3(6) 6(6) 15(9) 26(4) 28(6) + END = 305
    assert.equal(payloadLen, 305);
    assert.equal(frame.length, 14 + 20 + 8 + 305);
    assert.equal(frame[frame.length - 1], 255);
    assert.equal(msg.type, DhcpType.OFFER);
    assert.equal(msg.yiaddr, ip('192.168.64.2'));
    assert.equal(msg.options.get(DhcpOption.DOMAIN_NAME)?.length, 7);
    assert.ok(frame.length <= maxDhcpFrameLen(s.server));
  });

  test('a shorter OFFER (no domain) is padded with zeros to 300 bytes', () => {
    const t = setup('192.168.64.0/24', null);
    const out = outcome(t.server.handle(message(DhcpType.DISCOVER), t.a, T0));
    const { frame, payloadLen } = emitted(out);
    assert.equal(payloadLen, 300);
    assert.equal(frame.length, 14 + 20 + 8 + 300);
    const end = 42 + 240 + 55; // 64 - 9 bytes of options without option 15
    assert.equal(frame[end], 255);
    assert.ok(frame.subarray(end + 1).every((b) => b === 0));
  });

  test('no domain configured: no option 15', () => {
    const t = setup('192.168.64.0/24', null);
    const out = outcome(t.server.handle(message(DhcpType.DISCOVER), t.a, T0));
    assert.equal(opts(out).map.has(DhcpOption.DOMAIN_NAME), false);
  });

  test('DISCOVER asking for a free address gets it', () => {
    const out = outcome(
      s.server.handle(message(DhcpType.DISCOVER, { options: [requested(ip('192.168.64.77'))] }), s.a, T0),
    );
    assert.equal(out.reply.yiaddr, ip('192.168.64.77'));
  });

  test('REQUEST (selecting, our server id) -> ACK, lease bound, the attachment gets its address', () => {
    const y = bindVia(s, s.a);
    assert.equal(y, ip('192.168.64.2'));
    assert.equal(s.leases.get('key-a')?.state, 'bound');
    assert.equal(s.leases.get('key-a')?.expires, T0 + 600_000);
    assert.deepEqual(s.assigned, [['key-a', y]]);
    assert.equal(s.a.ip, y);
    assert.ok(s.logs.some((l) => l.includes('lease bound')));
  });

  test('the ACK carries the lease times and the configuration', () => {
    s.server.handle(message(DhcpType.DISCOVER), s.a, T0);
    const out = outcome(
      s.server.handle(
        message(DhcpType.REQUEST, { options: [requested(ip('192.168.64.2')), serverId(GW)] }),
        s.a,
        T0,
      ),
    );
    const { map } = opts(out);
    assert.deepEqual(map.get(DhcpOption.MESSAGE_TYPE), Uint8Array.of(DhcpType.ACK));
    for (const code of [1, 3, 6, 15, 26, 28, 51, 54, 58, 59]) assert.ok(map.has(code), `option ${code}`);
    const { payloadLen, msg } = emitted(out);
    assert.equal(payloadLen, 305);
    assert.equal(msg.type, DhcpType.ACK);
  });

  test('RENEWING (ciaddr, no 50, no 54) -> ACK unicast to ciaddr, logged as a renewal', () => {
    const y = bindVia(s, s.a);
    const out = outcome(s.server.handle(message(DhcpType.REQUEST, { ciaddr: y }), s.a, T0 + 300_000));
    assert.equal(out.reply.yiaddr, y);
    assert.equal(out.reply.ciaddr, y);
    assert.equal(out.dstIp, y);
    assert.equal(out.broadcast, false);
    assert.equal(s.leases.get('key-a')?.expires, T0 + 900_000);
    assert.ok(s.logs.some((l) => l.includes('lease renewed')));
  });

  test('the hostname of a REQUEST is kept, with unsafe characters replaced', () => {
    s.server.handle(message(DhcpType.DISCOVER), s.a, T0);
    s.server.handle(
      message(DhcpType.REQUEST, {
        options: [requested(ip('192.168.64.2')), [DhcpOption.HOSTNAME, [...Buffer.from('my host;rm\n')]]],
      }),
      s.a,
      T0,
    );
    assert.equal(s.leases.get('key-a')?.hostname, 'my?host?rm?');
  });

  test('REQUEST for another server id -> DHCP_OTHER_SERVER, nothing sent, our offer withdrawn', () => {
    const offer = outcome(s.server.handle(message(DhcpType.DISCOVER), s.a, T0));
    const r = s.server.handle(
      message(DhcpType.REQUEST, { options: [requested(offer.reply.yiaddr), serverId(ip('192.168.64.200'))] }),
      s.a,
      T0,
    );
    assert.equal(r, Drop.DHCP_OTHER_SERVER);
    assert.equal(s.leases.get('key-a'), undefined);
    assert.equal(s.leases.available('key-b', formatMac(MAC_B), offer.reply.yiaddr, T0), true);
    assert.deepEqual(s.assigned, []);
  });

  test('REQUEST for another server id leaves a bound lease alone', () => {
    const y = bindVia(s, s.a);
    const r = s.server.handle(
      message(DhcpType.REQUEST, { options: [requested(y), serverId(ip('10.0.0.1'))] }),
      s.a,
      T0,
    );
    assert.equal(r, Drop.DHCP_OTHER_SERVER);
    assert.equal(s.leases.get('key-a')?.state, 'bound');
  });

  test('INIT-REBOOT for an address another VM holds -> NAK, broadcast, no lease options', () => {
    const y = bindVia(s, s.a);
    const out = outcome(
      s.server.handle(message(DhcpType.REQUEST, { chaddr: MAC_B, options: [requested(y)] }), s.b, T0),
    );
    assert.equal(out.broadcast, true);
    assert.equal(out.dstIp, 0xffffffff);
    assert.equal(out.reply.yiaddr, 0);
    assert.equal(out.reply.ciaddr, 0);
    const { map } = opts(out);
    assert.deepEqual(map.get(DhcpOption.MESSAGE_TYPE), Uint8Array.of(DhcpType.NAK));
    assert.deepEqual(map.get(DhcpOption.SERVER_ID), hex('c0a84001'));
    for (const code of [1, 3, 51, 58, 59]) assert.equal(map.has(code), false, `option ${code} in a NAK`);
    assert.equal(s.leases.get('key-a')?.ip, y, 'the holder keeps its lease');
    assert.equal(s.leases.get('key-b'), undefined);
    assert.equal(s.b.ip, 0);
    const { payloadLen, msg, frame } = emitted(out);
    assert.equal(payloadLen, 300);
    assert.equal(msg.type, DhcpType.NAK);
    assert.deepEqual(frame.subarray(0, 6), hex('ffffffffffff'));
  });

  test('INIT-REBOOT for a free address of the subnet -> ACK', () => {
    const out = outcome(
      s.server.handle(message(DhcpType.REQUEST, { options: [requested(ip('192.168.64.50'))] }), s.a, T0),
    );
    assert.equal(out.reply.yiaddr, ip('192.168.64.50'));
    assert.equal(s.a.ip, ip('192.168.64.50'));
  });

  test('REQUEST for an address outside the pool, or with no address at all -> NAK', () => {
    for (const a of ['10.0.0.5', '192.168.64.1', '192.168.64.255', '192.168.64.0']) {
      const out = outcome(
        s.server.handle(message(DhcpType.REQUEST, { options: [requested(ip(a))] }), s.a, T0),
      );
      assert.deepEqual(opts(out).map.get(DhcpOption.MESSAGE_TYPE), Uint8Array.of(DhcpType.NAK), a);
    }
    const none = outcome(s.server.handle(message(DhcpType.REQUEST), s.a, T0));
    assert.deepEqual(opts(none).map.get(DhcpOption.MESSAGE_TYPE), Uint8Array.of(DhcpType.NAK));
    assert.deepEqual(s.assigned, []);
  });

  test('RELEASE frees the lease and the attachment loses its address', () => {
    const y = bindVia(s, s.a);
    assert.equal(s.server.handle(message(DhcpType.RELEASE, { ciaddr: y }), s.a, T0), Drop.NONE);
    assert.equal(s.leases.get('key-a'), undefined);
    assert.equal(s.a.ip, 0);
    assert.deepEqual(s.assigned.at(-1), ['key-a', 0]);
    assert.equal(s.leases.choose('key-b', formatMac(MAC_B), 0, T0), y);
  });

  test('RELEASE of an address the VM does not hold -> DHCP_NO_BINDING, nothing changes', () => {
    const y = bindVia(s, s.a);
    assert.equal(
      s.server.handle(message(DhcpType.RELEASE, { ciaddr: y + 1 }), s.a, T0),
      Drop.DHCP_NO_BINDING,
    );
    assert.equal(
      s.server.handle(message(DhcpType.RELEASE, { chaddr: MAC_B, ciaddr: y }), s.b, T0),
      Drop.DHCP_NO_BINDING,
    );
    assert.equal(s.leases.get('key-a')?.ip, y);
    assert.equal(s.a.ip, y);
  });

  test('DECLINE quarantines the address: nobody gets it, the VM is offered another', () => {
    const offer = outcome(s.server.handle(message(DhcpType.DISCOVER), s.a, T0));
    const y = offer.reply.yiaddr;
    assert.equal(s.server.handle(message(DhcpType.DECLINE, { options: [requested(y)] }), s.a, T0), Drop.NONE);
    assert.equal(s.leases.get('key-a'), undefined);
    assert.equal(s.leases.available('key-b', formatMac(MAC_B), y, T0 + 599_999), false);
    const again = outcome(s.server.handle(message(DhcpType.DISCOVER), s.a, T0));
    assert.equal(again.reply.yiaddr, y + 1);
    const other = outcome(s.server.handle(message(DhcpType.DISCOVER, { chaddr: MAC_B }), s.b, T0));
    assert.notEqual(other.reply.yiaddr, y);
    assert.equal(s.leases.available('key-b', formatMac(MAC_B), y, T0 + 600_000), true); // one lease time later
  });

  test('DECLINE of the bound address takes the address away from the VM', () => {
    const y = bindVia(s, s.a);
    assert.equal(s.server.handle(message(DhcpType.DECLINE, { options: [requested(y)] }), s.a, T0), Drop.NONE);
    assert.equal(s.a.ip, 0);
  });

  test('DECLINE without option 50 -> DHCP_BAD_OPTION', () => {
    assert.equal(s.server.handle(message(DhcpType.DECLINE), s.a, T0), Drop.DHCP_BAD_OPTION);
  });

  // Regression: a DECLINE used to be honoured for any address, so VM B could quarantine VM A's address.
  test('a VM cannot DECLINE another VM out of its address', () => {
    const y = bindVia(s, s.a);
    s.server.handle(message(DhcpType.DECLINE, { chaddr: MAC_B, options: [requested(y)] }), s.b, T0 + 1000);
    const renew = outcome(s.server.handle(message(DhcpType.REQUEST, { ciaddr: y }), s.a, T0 + 300_000));
    assert.equal(
      opts(renew).map.get(DhcpOption.MESSAGE_TYPE)?.[0],
      DhcpType.ACK,
      `A's renewal got message type ${opts(renew).map.get(DhcpOption.MESSAGE_TYPE)?.[0]} (6 = NAK) after B declined A's address`,
    );
  });

  test('INFORM -> ACK without a lease, unicast to ciaddr', () => {
    const out = outcome(s.server.handle(message(DhcpType.INFORM, { ciaddr: ip('192.168.64.9') }), s.a, T0));
    const { map } = opts(out);
    assert.deepEqual(map.get(DhcpOption.MESSAGE_TYPE), Uint8Array.of(DhcpType.ACK));
    for (const code of [51, 58, 59]) assert.equal(map.has(code), false, `option ${code} in an INFORM ACK`);
    for (const code of [1, 3, 6, 54]) assert.ok(map.has(code), `option ${code}`);
    assert.equal(out.reply.yiaddr, 0);
    assert.equal(out.dstIp, ip('192.168.64.9'));
    assert.equal(out.broadcast, false);
    assert.equal(s.leases.get('key-a'), undefined);
    assert.equal(emitted(out).payloadLen, 300);
  });

  test('INFORM without ciaddr -> DHCP_NO_BINDING', () => {
    assert.equal(s.server.handle(message(DhcpType.INFORM), s.a, T0), Drop.DHCP_NO_BINDING);
  });

  test("chaddr that is not the VM's own MAC -> DHCP_CHADDR_SPOOFED, for every message type", () => {
    for (const type of [1, 3, 4, 7, 8]) {
      const r = s.server.handle(message(type, { chaddr: MAC_B, ciaddr: ip('192.168.64.2') }), s.a, T0);
      assert.equal(r, Drop.DHCP_CHADDR_SPOOFED, `type ${type}`);
    }
    const oneByte = MAC_A.slice();
    oneByte[5] ^= 1;
    assert.equal(s.server.handle(message(1, { chaddr: oneByte }), s.a, T0), Drop.DHCP_CHADDR_SPOOFED);
    assert.equal([...s.leases.all()].length, 0);
  });

  test('giaddr set (a relayed message) -> DHCP_RELAYED', () => {
    assert.equal(
      s.server.handle(message(DhcpType.DISCOVER, { giaddr: ip('10.1.1.1') }), s.a, T0),
      Drop.DHCP_RELAYED,
    );
    assert.equal([...s.leases.all()].length, 0);
  });

  test('server message types from a client, and unknown types -> DHCP_BAD_TYPE', () => {
    for (const type of [0, DhcpType.OFFER, DhcpType.ACK, DhcpType.NAK, 9, 200]) {
      assert.equal(s.server.handle(message(type), s.a, T0), Drop.DHCP_BAD_TYPE, `type ${type}`);
    }
  });

  test('a full pool -> DHCP_POOL_EXHAUSTED, logged as a warning', () => {
    const small = setup('192.168.64.0/29'); // gateway .1, pool .2 to .6
    assert.equal(small.net.poolStart, ip('192.168.64.2'));
    assert.equal(small.net.poolEnd, ip('192.168.64.6'));
    for (let i = 0; i < 5; i++) {
      const mac = Uint8Array.of(0x52, 0x54, 0, 0, 1, i);
      const att = attachment(new Port(10 + i, `vm${i}`, 4, () => {}), mac, `k${i}`, small.a.log);
      bindVia(small, att);
    }
    const r = small.server.handle(message(DhcpType.DISCOVER), small.a, T0);
    assert.equal(r, Drop.DHCP_POOL_EXHAUSTED);
    assert.ok(small.logs.some((l) => l.startsWith('softnet: warn: dhcp pool exhausted')));
    assert.equal(small.leases.get('key-a'), undefined);
  });

  test('option 121 only when routes are configured and the client asks, with the default route last', () => {
    const routes = [{ dest: ip('10.0.0.0'), prefix: 8, via: GW }];
    const r = setup('192.168.64.0/24', null, routes);
    const prl: [number, number[]] = [DhcpOption.PARAM_REQUEST, [1, 3, 6, 121]];
    const asked = outcome(r.server.handle(message(DhcpType.DISCOVER, { options: [prl] }), r.a, T0));
    // 10.0.0.0/8 via 192.168.64.1, then 0.0.0.0/0 via 192.168.64.1 (RFC 3442: option 3 is then ignored).
    assert.deepEqual(opts(asked).map.get(DhcpOption.CLASSLESS_ROUTES), hex('08 0a c0a84001 00 c0a84001'));
    const { msg } = emitted(asked);
    assert.deepEqual(msg.options.get(DhcpOption.CLASSLESS_ROUTES), hex('080ac0a8400100c0a84001'));
    // Configured but not asked for.
    const notAsked = outcome(
      r.server.handle(
        message(DhcpType.DISCOVER, { options: [[DhcpOption.PARAM_REQUEST, [1, 3, 6]]] }),
        r.a,
        T0,
      ),
    );
    assert.equal(opts(notAsked).map.has(DhcpOption.CLASSLESS_ROUTES), false);
    const noList = outcome(r.server.handle(message(DhcpType.DISCOVER), r.a, T0));
    assert.equal(opts(noList).map.has(DhcpOption.CLASSLESS_ROUTES), false);
    // Asked for but none configured.
    const none = outcome(s.server.handle(message(DhcpType.DISCOVER, { options: [prl] }), s.a, T0));
    assert.equal(opts(none).map.has(DhcpOption.CLASSLESS_ROUTES), false);
    // The ACK carries it too, and the longest frame the server can send covers it.
    const ack = outcome(
      r.server.handle(message(DhcpType.REQUEST, { options: [requested(asked.reply.yiaddr), prl] }), r.a, T0),
    );
    assert.ok(opts(ack).map.has(DhcpOption.CLASSLESS_ROUTES));
    assert.ok(emitted(ack).frame.length <= maxDhcpFrameLen(r.server));
  });

  test('many routes make a reply longer than 300 bytes; maxDhcpFrameLen still covers it', () => {
    const routes = Array.from({ length: 32 }, (_, i) => ({
      dest: (10 << 24) | (i << 16),
      prefix: 16,
      via: GW,
    }));
    const r = setup('192.168.64.0/24', 'a-rather-long-domain-name.example.internal', routes);
    const out = outcome(
      r.server.handle(message(DhcpType.DISCOVER, { options: [[DhcpOption.PARAM_REQUEST, [121]]] }), r.a, T0),
    );
    const { frame, payloadLen, msg } = emitted(out);
    assert.ok(payloadLen > 300);
    assert.equal(msg.options.get(DhcpOption.CLASSLESS_ROUTES)?.length, 32 * 7 + 5);
    assert.ok(frame.length <= maxDhcpFrameLen(r.server));
  });

  test('reply addressing: broadcast flag -> broadcast; else unicast to yiaddr at chaddr', () => {
    const bc = outcome(s.server.handle(message(DhcpType.DISCOVER, { flags: BROADCAST_FLAG }), s.a, T0));
    assert.equal(bc.broadcast, true);
    assert.equal(bc.dstIp, 0xffffffff);
    assert.equal(bc.reply.flags, BROADCAST_FLAG);
    assert.deepEqual(emitted(bc).frame.subarray(0, 6), hex('ffffffffffff'));
    const uc = outcome(s.server.handle(message(DhcpType.DISCOVER), s.a, T0));
    assert.equal(uc.broadcast, false);
    assert.equal(uc.dstIp, uc.reply.yiaddr);
    assert.equal(uc.reply.flags, 0);
    assert.deepEqual(emitted(uc).frame.subarray(0, 6), MAC_A);
    // Only the broadcast bit of the flags is echoed; the reserved bits are not (RFC 2131 table 3).
    const reserved = outcome(s.server.handle(message(DhcpType.DISCOVER, { flags: 0x7fff }), s.a, T0));
    assert.equal(reserved.reply.flags, 0);
    assert.equal(reserved.broadcast, false);
  });

  test('reply addressing: ciaddr -> unicast to ciaddr, even with the broadcast flag (RFC 2131 4.1)', () => {
    const y = bindVia(s, s.a);
    for (const flags of [0, BROADCAST_FLAG]) {
      const out = outcome(s.server.handle(message(DhcpType.REQUEST, { ciaddr: y, flags }), s.a, T0));
      assert.equal(out.dstIp, y);
      assert.equal(out.broadcast, false);
      assert.deepEqual(emitted(out).frame.subarray(0, 6), MAC_A);
    }
  });

  test('two VMs get different addresses; each keeps its own across DISCOVERs', () => {
    const ya = bindVia(s, s.a);
    const yb = bindVia(s, s.b);
    assert.notEqual(ya, yb);
    const again = outcome(s.server.handle(message(DhcpType.DISCOVER, { chaddr: MAC_B }), s.b, T0 + 1000));
    assert.equal(again.reply.yiaddr, yb);
    // Asking for the other's address does not get it.
    const greedy = outcome(
      s.server.handle(message(DhcpType.DISCOVER, { chaddr: MAC_B, options: [requested(ya)] }), s.b, T0),
    );
    assert.equal(greedy.reply.yiaddr, yb);
  });
});
