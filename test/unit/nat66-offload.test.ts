// NAT66 with offloads, in-process: a VM's TCP/IPv6 aggregate out through the uplink's packet socket whole
// (a known next hop) or cut and filled in through the raw IPv6 socket, too big for the uplink, with bad
// offload fields; checksums left to offload; an aggregate from the world whole to a VM with virtio headers
// and cut for one without; and the IPv6 next-hop table over route and neighbour tables as the kernel
// gives them.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type Neighbour6, NextHop6 } from '../../src/nat/next-hop6.js';
import { dropsByName } from '../../src/stats/drops.js';
import { formatMac, parseMac } from '../../src/wire/addr.js';
import { checksum } from '../../src/wire/checksum.js';
import { TcpFlag } from '../../src/wire/tcp.js';
import {
  VNET_F_DATA_VALID,
  VNET_F_NEEDS_CSUM,
  VNET_GSO_ECN,
  VNET_GSO_TCPV4,
  VNET_GSO_TCPV6,
} from '../../src/wire/vnet.js';
import {
  addrBytes,
  assertChecksums6,
  bytes,
  capture6,
  checksum6,
  eth6,
  full6,
  NH,
  parse6,
  T6,
  tcp6,
  udp6,
} from '../lib/frames6.js';
import { type InProcess, inProcessNetwork, PortId, vnetPort } from '../lib/in-process.js';
import { ROUTER_MAC, UPLINK_MAC, writeVnet } from '../lib/packets.js';

const VM_MAC = parseMac('52:54:00:0f:00:01')!;
const GW_MAC = parseMac('02:00:00:00:00:fe')!;
const VM_ADDR = 'fd00:5:1:1::a';
const UPLINK6 = '2001:db8:1::2';
const REMOTE6 = '2001:db8:2::10';
const ROUTER_LL = 'fe80::1';
const MSS = 1428;
/** The fake port of NAT66's send packet socket. */
const TX6 = 16;
const { VM, RAW6, CAPTURE6 } = PortId;
const { SYN, ACK } = TcpFlag;

const dir = mkdtempSync(join(tmpdir(), 'softnet-nat66-offload-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

/** A /proc/net/ipv6_route line: dest/plen via `via` (:: for none) out of `dev`. */
function route(dest: string, plen: number, via: string, dev: string, flags = 0x0001, metric = 1024): string {
  const hex = (a: string) => Buffer.from(addrBytes(a)).toString('hex');
  const h8 = (n: number) => (n >>> 0).toString(16).padStart(8, '0');
  return `${hex(dest)} ${plen.toString(16).padStart(2, '0')} ${hex('::')} 00 ${hex(via)} ${h8(metric)} 00000001 00000000 ${h8(flags)} ${dev.padStart(8)}`;
}

/** The uplink's routes: a default via the router's link-local address, and its connected /64. */
const ROUTES = [route('::', 0, ROUTER_LL, 'up0', 0x0003), route('2001:db8:1::', 64, '::', 'up0')];
/** NUD_REACHABLE, NUD_STALE, NUD_INCOMPLETE, NUD_FAILED (linux/neighbour.h). */
const NUD = { INCOMPLETE: 0x01, REACHABLE: 0x02, STALE: 0x04, FAILED: 0x20 } as const;

const neighbour = (addr: string, mac: Uint8Array, state: number = NUD.REACHABLE): Neighbour6 => ({
  addr: addrBytes(addr),
  mac,
  state,
});
const ROUTER = [neighbour(ROUTER_LL, ROUTER_MAC)];

/** A next-hop table over `routes` (as /proc/net/ipv6_route) and neighbours `table` of up0. */
function nextHop(routes: string[], table: Neighbour6[]): NextHop6 {
  const path = join(dir, `ipv6_route-${files++}`);
  writeFileSync(path, routes.map((l) => `${l}\n`).join(''));
  return new NextHop6('up0', UPLINK_MAC, (ifname) => (ifname === 'up0' ? table : []), path);
}

/** A network with NAT66 whose VM's port has virtio headers; with `hop`, a send port for known next hops. */
function setup(o: { hop?: NextHop6; mtu?: number } = {}): InProcess {
  const net = inProcessNetwork({
    vmMac: VM_MAC,
    gatewayMac: GW_MAC,
    ipv6: 'fd00:5:1::/48',
    allow: ['2001:db8:2::/64'],
    nat: { addr: 0xc6336402, lo: 61000, hi: 61999, perVm: 64, v6: { addr: UPLINK6, mtu: o.mtu } },
  });
  net.vmPort.vnet = true;
  net.vmPort.big = true;
  net.io.vnet.add(VM);
  const nat6 = net.nat!.v6!;
  if (o.hop) {
    nat6.tx = vnetPort(net.io, TX6, 'tx6');
    nat6.hop = o.hop;
  }
  return net;
}

const drops = (net: InProcess) => dropsByName(net.p.drops);
const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** The virtio header of a TCP/IPv6 aggregate (Ethernet, IPv6 and TCP headers) cut at MSS. */
const TCP6_AGGREGATE = {
  flags: VNET_F_NEEDS_CSUM,
  gsoType: VNET_GSO_TCPV6,
  gsoSize: MSS,
  hdrLen: 74,
  csumStart: 54,
  csumOffset: 16,
};

/** What an offloaded TCP checksum field holds between `src` and `dst` for `len` bytes: the pseudo-header's sum. */
function partial6(src: string, dst: string, len: number): number {
  return ~checksum6(addrBytes(src), addrBytes(dst), NH.TCP, new Uint8Array(len)) & 0xffff;
}

/** A TCP/IPv6 packet whose checksum is left to offload, with `len` bytes of payload. */
function partialTcp6(src: string, dst: string, sport: number, dport: number, len: number): Uint8Array {
  const pkt = tcp6(src, dst, sport, dport, ACK, {}, bytes(len, 7));
  view(pkt).setUint16(40 + 16, partial6(src, dst, 20 + len));
  return pkt;
}

/** A frame the VM sends: a virtio header (plain unless given), then Ethernet to the gateway. */
function fromVm(pkt: Uint8Array, vnet?: Parameters<typeof writeVnet>[2]): Uint8Array {
  const f = new Uint8Array(10 + 14 + pkt.length);
  if (vnet) writeVnet(f, 0, vnet);
  f.set(eth6(pkt, VM_MAC, GW_MAC), 10);
  return f;
}

/** Fills in a TCP checksum left to offload in the IPv6 packet at b[at], as the device would. */
function completeTcp6(b: Uint8Array, at: number): void {
  const l4 = at + 40;
  view(b).setUint16(l4 + 16, checksum(b, l4, view(b).getUint16(at + 4)));
}

function send(net: InProcess, port: number, frame: Uint8Array): void {
  net.io.deliver(port, frame);
  net.p.drain(port === VM ? net.vmPort : net.capture6!);
}

/** The VM opens a connection to REMOTE6:443 from port 40000; returns the external port, and where the SYN went. */
function open(net: InProcess): number {
  send(net, VM, fromVm(tcp6(VM_ADDR, REMOTE6, 40000, 443, SYN)));
  const viaTx = net.io.take(TX6);
  const viaRaw = net.io.take(RAW6);
  const syn = viaTx.length > 0 ? parse6(viaTx[0], 24) : parse6(viaRaw[0], 0);
  assert.equal(syn.src, full6(UPLINK6), JSON.stringify(drops(net)));
  return syn.sport;
}

describe('the IPv6 next-hop table', () => {
  test('the default router by its link-local address, a neighbour on the connected prefix', () => {
    const hop = nextHop(ROUTES, [...ROUTER, neighbour('2001:db8:1::7', parseMac('02:00:00:00:00:07')!)]);
    const u8 = new Uint8Array(20);
    const w = (a: string) => {
      const b = view(addrBytes(a));
      return [b.getInt32(0), b.getInt32(4), b.getInt32(8), b.getInt32(12)] as const;
    };
    assert.ok(hop.writeHeader(u8, 2, ...w(REMOTE6)), 'via the default route');
    assert.equal(formatMac(u8, 2), formatMac(ROUTER_MAC));
    assert.equal(formatMac(u8, 8), formatMac(UPLINK_MAC));
    assert.deepEqual([u8[14], u8[15]], [0x86, 0xdd]);
    assert.ok(hop.writeHeader(u8, 2, ...w('2001:db8:1::7')), 'a neighbour on the connected prefix');
    assert.equal(formatMac(u8, 2), '02:00:00:00:00:07');
    u8.fill(0);
    assert.equal(hop.writeHeader(u8, 2, ...w('2001:db8:1::8')), false, 'no neighbour entry for it (yet)');
    assert.deepEqual([...u8], new Array(20).fill(0), 'nothing written');
  });

  test('a longer route out of another interface, a reject route, the host itself: no next hop', () => {
    const hop = nextHop(
      [
        ...ROUTES,
        route('2001:db8:9::', 48, 'fe80::9', 'eth9', 0x0003),
        route('2001:db8:6::', 48, '::', 'lo', 0x0201),
        route(UPLINK6, 128, '::', 'up0', 0x80200001, 0),
      ],
      [...ROUTER, neighbour(UPLINK6, UPLINK_MAC, 0x80)],
    );
    const u8 = new Uint8Array(20);
    const w = (a: string) => {
      const b = view(addrBytes(a));
      return [b.getInt32(0), b.getInt32(4), b.getInt32(8), b.getInt32(12)] as const;
    };
    assert.equal(hop.writeHeader(u8, 0, ...w('2001:db8:9::1')), false, 'routed out of eth9');
    assert.equal(hop.writeHeader(u8, 0, ...w('2001:db8:6::1')), false, 'unreachable');
    assert.equal(hop.writeHeader(u8, 0, ...w(UPLINK6)), false, "the uplink's own address");
    assert.ok(hop.writeHeader(u8, 0, ...w('2001:db8:7::1')), 'the default route still');
  });

  test('a router entry still resolving, failed, or stale; none at all; and read again on refresh', () => {
    const u8 = new Uint8Array(20);
    const b = view(addrBytes(REMOTE6));
    const dst = [b.getInt32(0), b.getInt32(4), b.getInt32(8), b.getInt32(12)] as const;
    for (const state of [NUD.INCOMPLETE, NUD.FAILED])
      assert.equal(
        nextHop(ROUTES, [neighbour(ROUTER_LL, ROUTER_MAC, state)]).writeHeader(u8, 0, ...dst),
        false,
      );
    assert.ok(nextHop(ROUTES, [neighbour(ROUTER_LL, ROUTER_MAC, NUD.STALE)]).writeHeader(u8, 0, ...dst));
    assert.equal(nextHop([], ROUTER).writeHeader(u8, 0, ...dst), false, 'no route');
    const table: Neighbour6[] = [];
    const hop = nextHop(ROUTES, table);
    assert.equal(hop.writeHeader(u8, 0, ...dst), false);
    table.push(...ROUTER);
    hop.refresh();
    assert.ok(hop.writeHeader(u8, 0, ...dst), 'the router resolved since');
  });

  test('many neighbours: each found by its whole address', () => {
    const table: Neighbour6[] = [];
    for (let i = 1; i <= 3000; i++) {
      const mac = Uint8Array.of(2, 0, 0, 0, i >> 8, i & 0xff);
      table.push(neighbour(`2001:db8:1::${i.toString(16)}`, mac));
    }
    const hop = nextHop(ROUTES, table);
    const u8 = new Uint8Array(14);
    for (const i of [1, 2, 255, 256, 1777, 3000]) {
      const b = view(addrBytes(`2001:db8:1::${i.toString(16)}`));
      assert.ok(hop.writeHeader(u8, 0, b.getInt32(0), b.getInt32(4), b.getInt32(8), b.getInt32(12)));
      assert.deepEqual([u8[4], u8[5]], [i >> 8, i & 0xff], `neighbour ${i}`);
    }
    const b = view(addrBytes('2001:db8:1::1:1'));
    assert.equal(hop.writeHeader(u8, 0, b.getInt32(0), b.getInt32(4), b.getInt32(8), b.getInt32(12)), false);
  });
});

describe("a VM's TCP/IPv6 aggregate out", () => {
  test('leaves whole through the packet socket to the router, its partial checksum for the new address', () => {
    const net = setup({ hop: nextHop(ROUTES, ROUTER) });
    const ext = open(net);
    send(net, VM, fromVm(partialTcp6(VM_ADDR, REMOTE6, 40000, 443, 5000), TCP6_AGGREGATE));
    const out = net.io.take(TX6);
    assert.equal(out.length, 1, JSON.stringify(drops(net)));
    assert.deepEqual(net.io.take(RAW6), []);
    const f = out[0];
    const dv = view(f);
    assert.deepEqual(
      [f[0], f[1], dv.getUint16(4, true), dv.getUint16(6, true), dv.getUint16(8, true)],
      [VNET_F_NEEDS_CSUM, VNET_GSO_TCPV6, MSS, 54, 16],
      'offloads kept',
    );
    assert.equal(formatMac(f, 10), formatMac(ROUTER_MAC));
    assert.equal(formatMac(f, 16), formatMac(UPLINK_MAC));
    assert.equal(dv.getUint16(22), 0x86dd);
    const p = parse6(f, 24);
    assert.deepEqual(
      [p.src, p.dst, p.sport, p.dport, p.hop, p.payloadLen],
      [full6(UPLINK6), full6(REMOTE6), ext, 443, 63, 20 + 5000],
    );
    assert.equal(view(p.l4).getUint16(16), partial6(UPLINK6, REMOTE6, 5020), 'the partial sum, translated');
    completeTcp6(f, 24);
    assertChecksums6(f, 24, 'once the device fills the checksum in');
  });

  test('an ECN aggregate keeps its flag', () => {
    const net = setup({ hop: nextHop(ROUTES, ROUTER) });
    open(net);
    const gsoType = VNET_GSO_TCPV6 | VNET_GSO_ECN;
    send(net, VM, fromVm(partialTcp6(VM_ADDR, REMOTE6, 40000, 443, 3000), { ...TCP6_AGGREGATE, gsoType }));
    const [f] = net.io.take(TX6);
    assert.equal(f[1], gsoType);
  });

  test('with no next hop known: cut into segments with whole checksums, through the raw socket', () => {
    const net = setup({ hop: nextHop(ROUTES, []) });
    const ext = open(net);
    send(net, VM, fromVm(partialTcp6(VM_ADDR, REMOTE6, 40000, 443, 5000), TCP6_AGGREGATE));
    assert.deepEqual(net.io.take(TX6), []);
    const segs = net.io.take(RAW6);
    assert.equal(segs.length, Math.ceil(5000 / MSS), JSON.stringify(drops(net)));
    let seq = -1;
    let payload = 0;
    for (const s of segs) {
      const p = assertChecksums6(s, 0, 'a segment');
      assert.deepEqual([p.src, p.sport, p.hop], [full6(UPLINK6), ext, 63]);
      assert.ok(p.payloadLen <= 20 + MSS);
      const n = view(p.l4).getUint32(4);
      assert.ok(n > seq, 'in order');
      seq = n;
      payload += p.payloadLen - 20;
    }
    assert.equal(payload, 5000);
  });

  test('no send port at all (tests, NAT66 before it opened one): cut for the raw socket', () => {
    const net = setup();
    open(net);
    send(net, VM, fromVm(partialTcp6(VM_ADDR, REMOTE6, 40000, 443, 3000), TCP6_AGGREGATE));
    assert.equal(net.io.take(RAW6).length, Math.ceil(3000 / MSS), JSON.stringify(drops(net)));
  });

  test('segments larger than the uplink takes: Packet Too Big to the VM with its MTU', () => {
    const net = setup({ hop: nextHop(ROUTES, ROUTER), mtu: 1400 });
    open(net);
    send(net, VM, fromVm(partialTcp6(VM_ADDR, REMOTE6, 40000, 443, 5000), TCP6_AGGREGATE));
    assert.deepEqual([net.io.take(TX6), net.io.take(RAW6)], [[], []]);
    assert.equal(drops(net)['too-big-for-uplink'], 1);
    const [err] = net.io.take(VM);
    const e = assertChecksums6(err, 24, 'the error');
    assert.deepEqual([e.proto, e.sport, view(e.l4).getUint32(4)], [NH.ICMP6, T6.TOO_BIG, 1400]);
    assert.equal(e.dst, full6(VM_ADDR));
    const small = { ...TCP6_AGGREGATE, gsoSize: 1400 - 60 };
    send(net, VM, fromVm(partialTcp6(VM_ADDR, REMOTE6, 40000, 443, 5000), small));
    assert.equal(net.io.take(TX6).length, 1, 'segments that fit');
  });

  test('offload fields softnet cannot carry are dropped by name', () => {
    const net = setup({ hop: nextHop(ROUTES, ROUTER) });
    open(net);
    const agg = () => partialTcp6(VM_ADDR, REMOTE6, 40000, 443, 3000);
    send(net, VM, fromVm(agg(), { ...TCP6_AGGREGATE, csumStart: 34 }));
    send(net, VM, fromVm(agg(), { ...TCP6_AGGREGATE, csumOffset: 6 }));
    send(net, VM, fromVm(agg(), { ...TCP6_AGGREGATE, flags: 0 }));
    assert.equal(drops(net)['bad-checksum-offload'], 3);
    send(net, VM, fromVm(agg(), { ...TCP6_AGGREGATE, gsoType: VNET_GSO_TCPV4 }));
    send(net, VM, fromVm(agg(), { ...TCP6_AGGREGATE, gsoSize: 0 }));
    const udp = udp6(VM_ADDR, REMOTE6, 40000, 53, bytes(3000));
    send(net, VM, fromVm(udp, { ...TCP6_AGGREGATE, csumOffset: 6 }));
    assert.equal(drops(net)['aggregate-not-segmented'], 3);
    assert.deepEqual([net.io.take(TX6), net.io.take(RAW6)], [[], []]);
  });
});

describe('a checksum left to offload, not an aggregate', () => {
  test('goes whole to a known next hop, still left to offload; filled in for the raw socket', () => {
    for (const known of [true, false]) {
      const net = setup({ hop: nextHop(ROUTES, known ? ROUTER : []) });
      const ext = open(net);
      send(
        net,
        VM,
        fromVm(partialTcp6(VM_ADDR, REMOTE6, 40000, 443, 100), { ...TCP6_AGGREGATE, gsoType: 0 }),
      );
      if (known) {
        const [f] = net.io.take(TX6);
        assert.deepEqual([f[0], f[1]], [VNET_F_NEEDS_CSUM, 0]);
        assert.equal(view(f).getUint16(24 + 40 + 16), partial6(UPLINK6, REMOTE6, 120));
        completeTcp6(f, 24);
        assert.equal(assertChecksums6(f, 24).sport, ext);
      } else {
        const [pkt] = net.io.take(RAW6);
        assert.equal(assertChecksums6(pkt, 0, 'filled in').sport, ext);
      }
    }
  });

  test('a UDP one too', () => {
    const net = setup({ hop: nextHop(ROUTES, []) });
    const pkt = udp6(VM_ADDR, REMOTE6, 40001, 53, bytes(300));
    const c = ~checksum6(addrBytes(VM_ADDR), addrBytes(REMOTE6), NH.UDP, new Uint8Array(308)) & 0xffff;
    view(pkt).setUint16(40 + 6, c);
    send(net, VM, fromVm(pkt, { flags: VNET_F_NEEDS_CSUM, csumStart: 54, csumOffset: 6 }));
    const [out] = net.io.take(RAW6);
    const p = assertChecksums6(out, 0, 'filled in');
    assert.deepEqual([p.proto, p.src, p.dport], [NH.UDP, full6(UPLINK6), 53]);
  });
});

describe("the world's TCP/IPv6 aggregate in", () => {
  /** An aggregate from REMOTE6 to the mapping's port, as the capture reads a local sender's TSO or GRO. */
  function worldAggregate(ext: number, len: number, flags: number = VNET_F_NEEDS_CSUM): Uint8Array {
    const f = capture6(partialTcp6(REMOTE6, UPLINK6, 443, ext, len));
    writeVnet(f, 0, { ...TCP6_AGGREGATE, flags });
    return f;
  }

  test('goes whole to a VM with virtio headers, its checksum left to the VM', () => {
    const net = setup();
    const ext = open(net);
    send(net, CAPTURE6, worldAggregate(ext, 9000));
    const got = net.io.take(VM);
    assert.equal(got.length, 1, JSON.stringify(drops(net)));
    const f = got[0];
    const dv = view(f);
    assert.deepEqual(
      [f[0] & VNET_F_NEEDS_CSUM, f[1], dv.getUint16(4, true), dv.getUint16(6, true), dv.getUint16(8, true)],
      [VNET_F_NEEDS_CSUM, VNET_GSO_TCPV6, MSS, 54, 16],
    );
    assert.equal(formatMac(f, 10), formatMac(VM_MAC));
    assert.equal(formatMac(f, 16), formatMac(GW_MAC));
    const p = parse6(f, 24);
    assert.deepEqual(
      [p.src, p.dst, p.dport, p.hop, p.payloadLen],
      [full6(REMOTE6), full6(VM_ADDR), 40000, 63, 9020],
    );
    assert.equal(view(p.l4).getUint16(16), partial6(REMOTE6, VM_ADDR, 9020));
    completeTcp6(f, 24);
    assertChecksums6(f, 24);
  });

  test('one whose checksum the kernel verified (GRO) is given a partial sum for the VM', () => {
    const net = setup();
    const ext = open(net);
    const frame = worldAggregate(ext, 4000, VNET_F_DATA_VALID);
    view(frame).setUint16(24 + 40 + 16, 0xdead); // the first segment's, wrong for the whole
    view(frame).setUint16(6, 0, true);
    view(frame).setUint16(8, 0, true);
    send(net, CAPTURE6, frame);
    const [f] = net.io.take(VM);
    assert.equal(f[0], VNET_F_NEEDS_CSUM, JSON.stringify(drops(net)));
    assert.deepEqual([view(f).getUint16(6, true), view(f).getUint16(8, true)], [54, 16]);
    completeTcp6(f, 24);
    assert.equal(assertChecksums6(f, 24).dst, full6(VM_ADDR));
  });

  test('is cut into segments for a VM without virtio headers', () => {
    const net = setup();
    net.vmPort.vnet = false;
    net.vmPort.big = false;
    net.io.vnet.delete(VM);
    send(net, VM, eth6(tcp6(VM_ADDR, REMOTE6, 40000, 443, SYN), VM_MAC, GW_MAC));
    const ext = parse6(net.io.take(RAW6)[0], 0).sport;
    send(net, CAPTURE6, worldAggregate(ext, 4000));
    const segs = net.io.take(VM);
    assert.equal(segs.length, Math.ceil(4000 / MSS), JSON.stringify(drops(net)));
    for (const s of segs) {
      const p = assertChecksums6(s, 14, 'a segment to the VM');
      assert.deepEqual([p.dst, p.dport, p.hop], [full6(VM_ADDR), 40000, 63]);
    }
  });

  test('one for no mapping is dropped as a whole, uncut', () => {
    const net = setup();
    open(net);
    send(net, CAPTURE6, worldAggregate(61999, 4000));
    assert.deepEqual(net.io.take(VM), []);
    assert.equal(drops(net)['uplink-no-mapping'], 1);
  });
});
