// Offloads through the pipeline, in-process: a VM's TCP aggregate and checksums it left to offload, out
// through the uplink's packet socket whole (a known next hop) or cut and filled in through the raw socket;
// an aggregate from the world whole to a VM with virtio headers; frames between ports with and without
// headers, IPv4 and IPv6; the next-hop table; the arithmetic of partial checksums; and the addon's cutting
// of TCP/IPv6 aggregates (gsoSegment), called directly. NAT66's offloads: nat66-offload.test.ts.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { NextHop } from '../../src/nat/next-hop.js';
import { native } from '../../src/native.js';
import { dropsByName } from '../../src/stats/drops.js';
import { formatMac, parseMac } from '../../src/wire/addr.js';
import { checksum, partialPseudo, updatePartial32 } from '../../src/wire/checksum.js';
import { IpProto } from '../../src/wire/ipv4.js';
import { TcpFlag } from '../../src/wire/tcp.js';
import { VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, VNET_GSO_TCPV6 } from '../../src/wire/vnet.js';
import { externalMacOf } from '../lib/attachments.js';
import {
  addrBytes,
  assertChecksums6,
  checksum6,
  eth6,
  full6,
  NH,
  parse6,
  tcp6,
  udp6,
} from '../lib/frames6.js';
import { type InProcess, inProcessNetwork, PortId } from '../lib/in-process.js';
import {
  assertChecksums,
  bytes,
  captureFrame,
  ethFrame,
  parse,
  ROUTER_MAC,
  tcp,
  UPLINK_MAC,
  view,
  writeVnet,
} from '../lib/packets.js';

const VM_MAC = parseMac('52:54:00:0f:00:01')!;
const GW_MAC = parseMac('02:00:00:00:00:fe')!;
const UPLINK = 0xc6336402; // 198.51.100.2
const WORLD = 0xcb00710a; // 203.0.113.10
const MSS = 1448;

const dir = mkdtempSync(join(tmpdir(), 'softnet-offload-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A next-hop table from route and neighbour files as the kernel writes them (little-endian hex). */
function nextHop(routes: string[], arp: string[]): NextHop {
  const r = join(dir, `route-${routes.length}-${arp.length}-${Math.random()}`);
  const a = `${r}.arp`;
  writeFileSync(r, ['Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask', ...routes].join('\n'));
  writeFileSync(
    a,
    ['IP address       HW type     Flags       HW address            Mask     Device', ...arp].join('\n'),
  );
  return new NextHop('up0', UPLINK_MAC, r, a);
}

/** The uplink's routes: a default via the router, and its connected /24. */
const ROUTES = [
  'up0\t00000000\t016433C6\t0003\t0\t0\t0\t00000000',
  'up0\t006433C6\t00000000\t0001\t0\t0\t0\t00FFFFFF',
];
const ARP = [`198.51.100.1     0x1         0x2         ${formatMac(ROUTER_MAC)}     *        up0`];

function setup(hop: NextHop | undefined): InProcess {
  const net = inProcessNetwork({
    vmMac: VM_MAC,
    gatewayMac: GW_MAC,
    allow: ['203.0.113.0/24'],
    nat: { addr: UPLINK, lo: 61000, hi: 61999, perVm: 64, hop },
  });
  // From now on the VM's port has virtio headers, as a namespace VM's TAP does.
  net.vmPort.vnet = true;
  net.vmPort.big = true;
  net.io.vnet.add(PortId.VM);
  return net;
}

const drops = (net: InProcess) => dropsByName(net.p.drops);

/** The virtio header of a TCP/IPv4 aggregate (Ethernet, 20-byte IP and TCP headers) cut at MSS. */
const TCP_AGGREGATE = {
  flags: VNET_F_NEEDS_CSUM,
  gsoType: VNET_GSO_TCPV4,
  gsoSize: MSS,
  hdrLen: 54,
  csumStart: 34,
  csumOffset: 16,
};

/** A frame the VM sends: a virtio header (plain unless given), then Ethernet to the gateway. */
function fromVm(pkt: Uint8Array, vnet?: Parameters<typeof writeVnet>[2]): Uint8Array {
  const f = new Uint8Array(10 + 14 + pkt.length);
  if (vnet) writeVnet(f, 0, vnet);
  f.set(ethFrame(pkt, VM_MAC, GW_MAC), 10);
  return f;
}

/** A TCP aggregate from the VM: one header and `len` bytes of payload, its checksum left to offload. */
function vmAggregate(vmIp: number, len: number): Uint8Array {
  const pkt = tcp(vmIp, WORLD, 40000, 80, TcpFlag.ACK, {}, bytes(len, 7));
  view(pkt).setUint16(20 + 16, partialPseudo(vmIp, WORLD, IpProto.TCP, 20 + len));
  return fromVm(pkt, TCP_AGGREGATE);
}

/** Fills in a TCP checksum left to offload in packet b[at...], as the device would. */
function completeTcp(b: Uint8Array, at: number): void {
  const p = parse(b, at);
  const c = checksum(p.l4, 0, p.total - p.hl);
  view(p.l4).setUint16(16, c);
}

function send(net: InProcess, port: number, frame: Uint8Array): void {
  net.io.deliver(port, frame);
  const p = port === PortId.VM ? net.vmPort : net.capture!;
  net.p.drain(p);
}

describe('partial checksums', () => {
  test('an address changed in a partial sum gives the partial sum of the new pseudo-header', () => {
    for (let i = 0; i < 200; i++) {
      const a = (Math.random() * 2 ** 32) >>> 0;
      const b = (Math.random() * 2 ** 32) >>> 0;
      const c = (Math.random() * 2 ** 32) >>> 0;
      const len = 20 + Math.floor(Math.random() * 65000);
      assert.equal(
        updatePartial32(partialPseudo(a, b, IpProto.TCP, len), a | 0, c | 0),
        partialPseudo(c, b, IpProto.TCP, len),
      );
    }
  });
});

describe('the next-hop table', () => {
  test('the longest route through the uplink, and the neighbour it names', () => {
    const hop = nextHop(
      [...ROUTES, 'eth9\t000010AC\t00000000\t0001\t0\t0\t0\t0000F0FF'],
      [...ARP, `198.51.100.7     0x1         0x2         02:00:00:00:00:07     *        up0`],
    );
    const u8 = new Uint8Array(20);
    assert.ok(hop.writeHeader(u8, 2, WORLD | 0), 'via the default route');
    assert.equal(formatMac(u8, 2), formatMac(ROUTER_MAC));
    assert.equal(formatMac(u8, 8), formatMac(UPLINK_MAC));
    assert.deepEqual([u8[14], u8[15]], [0x08, 0x00]);
    assert.ok(hop.writeHeader(u8, 2, 0xc6336407 | 0), 'a neighbour on the connected subnet');
    assert.equal(formatMac(u8, 2), '02:00:00:00:00:07');
    assert.equal(hop.writeHeader(u8, 2, 0xc6336408 | 0), false, 'no neighbour entry for it (yet)');
    assert.equal(hop.writeHeader(u8, 2, 0xac100001 | 0), false, 'routed out of another interface');
  });

  test('an incomplete neighbour entry is no next hop; no route at all neither', () => {
    const hop = nextHop(ROUTES, [
      `198.51.100.1     0x1         0x0         00:00:00:00:00:00     *        up0`,
    ]);
    assert.equal(hop.writeHeader(new Uint8Array(20), 0, WORLD | 0), false);
    assert.equal(nextHop([], []).writeHeader(new Uint8Array(20), 0, WORLD | 0), false);
  });
});

describe("a VM's aggregate out", () => {
  test('leaves whole through the packet socket to the next hop, its partial checksum for the new address', () => {
    const net = setup(nextHop(ROUTES, ARP));
    const vmIp = net.att.ip;
    send(net, PortId.VM, fromVm(tcp(vmIp, WORLD, 40000, 80, TcpFlag.SYN)));
    const [syn] = net.io.take(PortId.TX);
    const ext = parse(syn, 24).sport;
    send(net, PortId.VM, vmAggregate(vmIp, 5000));
    const out = net.io.take(PortId.TX);
    assert.equal(out.length, 1, JSON.stringify(drops(net)));
    const f = out[0];
    const dv = view(f);
    assert.deepEqual(
      [f[0], f[1], dv.getUint16(4, true)],
      [VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4, MSS],
      'offloads kept',
    );
    assert.equal(formatMac(f, 10), formatMac(ROUTER_MAC));
    assert.equal(formatMac(f, 16), formatMac(UPLINK_MAC));
    const p = parse(f, 24);
    assert.deepEqual([p.src, p.dst, p.sport, p.ttl, p.total], [UPLINK, WORLD, ext, 63, 20 + 20 + 5000]);
    assert.equal(view(p.l4).getUint16(16), partialPseudo(UPLINK, WORLD, IpProto.TCP, 5020));
    completeTcp(f, 24);
    assertChecksums(f, 24, 'once the device fills the checksum in');
    assert.deepEqual(net.io.take(PortId.RAW), []);
  });

  test('with no next hop known: cut into segments with whole checksums, through the raw socket', () => {
    const net = setup(nextHop(ROUTES, []));
    const vmIp = net.att.ip;
    send(net, PortId.VM, fromVm(tcp(vmIp, WORLD, 40000, 80, TcpFlag.SYN)));
    const ext = parse(net.io.take(PortId.RAW)[0], 0).sport;
    send(net, PortId.VM, vmAggregate(vmIp, 5000));
    const segs = net.io.take(PortId.RAW);
    assert.equal(segs.length, Math.ceil(5000 / MSS));
    let seq = -1;
    for (const s of segs) {
      assertChecksums(s, 0, 'a segment');
      const p = parse(s, 0);
      assert.deepEqual([p.src, p.sport], [UPLINK, ext]);
      const n = view(p.l4).getUint32(4);
      assert.ok(n > seq);
      seq = n;
    }
    assert.equal(
      segs.reduce((sum, s) => sum + parse(s, 0).total - 40, 0),
      5000,
    );
  });

  test('a packet with only its checksum left to offload: filled in for the raw socket', () => {
    const net = setup(undefined);
    const vmIp = net.att.ip;
    const pkt = tcp(vmIp, WORLD, 40000, 80, TcpFlag.SYN, {}, bytes(100));
    view(pkt).setUint16(36, partialPseudo(vmIp, WORLD, IpProto.TCP, 120));
    send(net, PortId.VM, fromVm(pkt, { flags: VNET_F_NEEDS_CSUM, csumStart: 34, csumOffset: 16 }));
    const [out] = net.io.take(PortId.RAW);
    assertChecksums(out, 0);
    assert.equal(parse(out, 0).src, UPLINK);
  });

  test('offload offsets that do not point at the TCP checksum are dropped as bad-checksum-offload', () => {
    const net = setup(undefined);
    const pkt = tcp(net.att.ip, WORLD, 40000, 80, TcpFlag.SYN);
    send(net, PortId.VM, fromVm(pkt, { flags: VNET_F_NEEDS_CSUM, csumStart: 30, csumOffset: 16 }));
    assert.deepEqual(net.io.take(PortId.RAW), []);
    assert.equal(drops(net)['bad-checksum-offload'], 1);
  });
});

describe("the world's aggregate in", () => {
  /** An aggregate from the world to the VM's mapping, as the capture socket reads a local sender's TSO. */
  function worldAggregate(ext: number, len: number): Uint8Array {
    const pkt = tcp(WORLD, UPLINK, 80, ext, TcpFlag.ACK, {}, bytes(len, 3));
    view(pkt).setUint16(36, partialPseudo(WORLD, UPLINK, IpProto.TCP, 20 + len));
    return captureFrame(pkt, TCP_AGGREGATE);
  }

  test('goes whole to a VM with virtio headers, its checksum left to the VM', () => {
    const net = setup(undefined);
    const vmIp = net.att.ip;
    send(net, PortId.VM, fromVm(tcp(vmIp, WORLD, 40000, 80, TcpFlag.SYN)));
    const ext = parse(net.io.take(PortId.RAW)[0], 0).sport;
    send(net, PortId.CAPTURE, worldAggregate(ext, 9000));
    const got = net.io.take(PortId.VM);
    assert.equal(got.length, 1, JSON.stringify(drops(net)));
    const f = got[0];
    assert.deepEqual([f[0] & VNET_F_NEEDS_CSUM, f[1]], [VNET_F_NEEDS_CSUM, VNET_GSO_TCPV4]);
    assert.deepEqual([view(f).getUint16(6, true), view(f).getUint16(8, true)], [34, 16]);
    assert.equal(formatMac(f, 10), formatMac(VM_MAC));
    const p = parse(f, 24);
    assert.deepEqual([p.src, p.dst, p.dport, p.total], [WORLD, vmIp, 40000, 9040]);
    completeTcp(f, 24);
    assertChecksums(f, 24);
  });

  test('one whose checksum the kernel already verified is given a partial sum for the VM', () => {
    const net = setup(undefined);
    const vmIp = net.att.ip;
    send(net, PortId.VM, fromVm(tcp(vmIp, WORLD, 40000, 80, TcpFlag.SYN)));
    const ext = parse(net.io.take(PortId.RAW)[0], 0).sport;
    const frame = worldAggregate(ext, 4000);
    frame[0] = 2; // DATA_VALID: GRO verified it; the field is the first segment's, wrong for the whole
    view(frame).setUint16(24 + 36, 0xdead);
    send(net, PortId.CAPTURE, frame);
    const [f] = net.io.take(PortId.VM);
    assert.equal(f[0] & VNET_F_NEEDS_CSUM, VNET_F_NEEDS_CSUM);
    completeTcp(f, 24);
    assertChecksums(f, 24);
  });

  test('is cut into segments for a VM without virtio headers', () => {
    const net = setup(undefined);
    net.vmPort.vnet = false;
    net.vmPort.big = false;
    net.io.vnet.delete(PortId.VM);
    const vmIp = net.att.ip;
    send(net, PortId.VM, ethFrame(tcp(vmIp, WORLD, 40000, 80, TcpFlag.SYN), VM_MAC, GW_MAC));
    const ext = parse(net.io.take(PortId.RAW)[0], 0).sport;
    send(net, PortId.CAPTURE, worldAggregate(ext, 4000));
    const segs = net.io.take(PortId.VM);
    assert.equal(segs.length, Math.ceil(4000 / MSS));
    for (const s of segs) assertChecksums(s, 14, 'a segment to the VM');
  });
});

describe('between ports with and without virtio headers', () => {
  test("a VM's aggregate to the host link: whole to one with headers, in segments to one without", () => {
    for (const headers of [true, false]) {
      const net = setup(undefined);
      if (headers) {
        net.hostPort.vnet = true;
        net.hostPort.big = true;
        net.io.vnet.add(PortId.HOST);
      }
      const vmIp = net.att.ip;
      const pkt = tcp(vmIp, 0xc0a84001, 40000, 8080, TcpFlag.ACK, {}, bytes(3000));
      view(pkt).setUint16(36, partialPseudo(vmIp, 0xc0a84001, IpProto.TCP, 3020));
      send(net, PortId.VM, fromVm(pkt, TCP_AGGREGATE));
      const out = net.io.take(PortId.HOST);
      if (headers) {
        assert.equal(out.length, 1);
        assert.equal(out[0][1], VNET_GSO_TCPV4);
        completeTcp(out[0], 24);
        assertChecksums(out[0], 24);
      } else {
        assert.equal(out.length, Math.ceil(3000 / MSS));
        for (const s of out) assertChecksums(s, 14, 'a segment to the host link');
      }
    }
  });
});

describe('IPv6 between ports with and without virtio headers', () => {
  const VM6 = 'fd00:5:1:1::a';
  const HOST6 = 'fd00:5:1::1';
  const HOST_MAC = parseMac('02:00:00:00:00:11')!;
  const MSS6 = 1428;
  const AGGREGATE6 = { ...TCP_AGGREGATE, gsoType: VNET_GSO_TCPV6, gsoSize: MSS6, hdrLen: 74, csumStart: 54 };

  /** A network with IPv6 whose VM and host link have virtio headers or not, as asked. */
  function setup6(vmHeaders: boolean, hostHeaders: boolean): InProcess {
    const net = inProcessNetwork({ vmMac: VM_MAC, gatewayMac: GW_MAC, ipv6: 'fd00:5:1::/48' });
    for (const [port, id, on] of [
      [net.vmPort, PortId.VM, vmHeaders],
      [net.hostPort, PortId.HOST, hostHeaders],
    ] as const) {
      port.vnet = on;
      port.big = on;
      if (on) net.io.vnet.add(id);
    }
    return net;
  }

  /** A TCP/IPv6 packet of `len` payload bytes, its checksum left to offload (the pseudo-header's sum in it). */
  function partialTcp6(src: string, dst: string, len: number): Uint8Array {
    const pkt = tcp6(src, dst, 40000, 8080, TcpFlag.ACK, {}, bytes(len, 5));
    const pseudo = ~checksum6(addrBytes(src), addrBytes(dst), NH.TCP, new Uint8Array(20 + len)) & 0xffff;
    view(pkt).setUint16(40 + 16, pseudo);
    return pkt;
  }

  /** `pkt` in a frame from `src` to `dst` MAC, after a virtio header `vnet`. */
  function framed(pkt: Uint8Array, src: Uint8Array, dst: Uint8Array, vnet: Parameters<typeof writeVnet>[2]) {
    const f = new Uint8Array(10 + 14 + pkt.length);
    writeVnet(f, 0, vnet);
    f.set(eth6(pkt, src, dst), 10);
    return f;
  }

  test("a VM's aggregate to the host: whole to a host link with headers, in segments to one without", () => {
    for (const headers of [true, false]) {
      const net = setup6(true, headers);
      send(net, PortId.VM, framed(partialTcp6(VM6, HOST6, 3000), VM_MAC, GW_MAC, AGGREGATE6));
      const out = net.io.take(PortId.HOST);
      if (headers) {
        assert.equal(out.length, 1, JSON.stringify(drops(net)));
        assert.equal(out[0][1], VNET_GSO_TCPV6);
        assert.equal(formatMac(out[0], 16), formatMac(externalMacOf(VM_MAC)), "from the VM's external MAC");
        completeTcp6(out[0], 24);
        assertChecksums6(out[0], 24);
      } else {
        assert.equal(out.length, Math.ceil(3000 / MSS6), JSON.stringify(drops(net)));
        let payload = 0;
        for (const s of out) payload += assertChecksums6(s, 14, 'a segment to the host link').payloadLen - 20;
        assert.equal(payload, 3000);
      }
    }
  });

  test("the host's aggregate to a VM: whole to a VM with headers, in segments to one without", () => {
    for (const headers of [true, false]) {
      const net = setup6(headers, true);
      const frame = framed(partialTcp6(HOST6, VM6, 4000), HOST_MAC, externalMacOf(VM_MAC), AGGREGATE6);
      net.io.deliver(PortId.HOST, frame);
      net.p.drain(net.hostPort);
      const out = net.io.take(PortId.VM);
      if (headers) {
        assert.equal(out.length, 1, JSON.stringify(drops(net)));
        assert.equal(formatMac(out[0], 10), formatMac(VM_MAC));
        completeTcp6(out[0], 24);
        assertChecksums6(out[0], 24);
      } else {
        assert.equal(out.length, Math.ceil(4000 / MSS6), JSON.stringify(drops(net)));
        for (const s of out) assert.equal(assertChecksums6(s, 14, 'a segment to the VM').dst, full6(VM6));
      }
    }
  });

  test('a checksum left to offload is filled in for a port without headers; bad offsets are dropped', () => {
    const net = setup6(false, true);
    const pkt = udp6(HOST6, VM6, 53, 40000, bytes(200));
    const pseudo = ~checksum6(addrBytes(HOST6), addrBytes(VM6), NH.UDP, new Uint8Array(208)) & 0xffff;
    view(pkt).setUint16(40 + 6, pseudo);
    const deliver = (csumStart: number) => {
      const f = framed(pkt, HOST_MAC, externalMacOf(VM_MAC), {
        flags: VNET_F_NEEDS_CSUM,
        csumStart,
        csumOffset: 6,
      });
      net.io.deliver(PortId.HOST, f);
      net.p.drain(net.hostPort);
      return net.io.take(PortId.VM);
    };
    const [got] = deliver(54);
    const p = assertChecksums6(got, 14, 'filled in');
    assert.deepEqual([p.proto, p.dport], [NH.UDP, 40000]);
    assert.deepEqual(deliver(30), [], 'csum_start inside the IPv6 header');
    assert.equal(drops(net)['bad-checksum-offload'], 1);
    assert.equal(parse6(got, 14).l4.length, 208);
  });
});

/** Fills in a TCP checksum left to offload in the IPv6 packet at b[at], as the device would. */
function completeTcp6(b: Uint8Array, at: number): void {
  view(b).setUint16(at + 40 + 16, checksum(b, at + 40, view(b).getUint16(at + 4)));
}

describe('gsoSegment: a TCP/IPv6 aggregate', () => {
  /** VIRTIO_NET_HDR_GSO_TCPV6 (linux/virtio_net.h). */
  const GSO_TCPV6 = 4;
  const SRC6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a];
  const DST6 = [0xfd, 0x00, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x01];
  const SEQ = 0xfffff000; // wraps within the aggregate
  const arena = new ArrayBuffer(1 << 20);
  const u8 = new Uint8Array(arena);
  const dv = new DataView(arena);
  const SRC_AT = 64;
  const DST_AT = 128 * 1024;
  const STRIDE_6 = 2048;
  const lens = new Uint32Array(64);

  /**
   * Writes at SRC_AT a virtio header (GSO type `gsoType`, gso_size `mss`), Ethernet, an IPv6 header with
   * next header `next`, a TCP header of `thl` bytes with flags CWR|PSH|ACK|FIN, and `len` bytes of
   * payload; returns the frame's length.
   */
  function aggregate(
    len: number,
    mss: number,
    o: { gsoType?: number; next?: number; thl?: number } = {},
  ): number {
    const thl = o.thl ?? 20;
    u8.fill(0, SRC_AT, SRC_AT + 10 + 14 + 40 + thl + len);
    u8[SRC_AT] = VNET_F_NEEDS_CSUM;
    u8[SRC_AT + 1] = o.gsoType ?? GSO_TCPV6;
    dv.setUint16(SRC_AT + 2, 14 + 40 + thl, true);
    dv.setUint16(SRC_AT + 4, mss, true);
    dv.setUint16(SRC_AT + 6, 14 + 40, true);
    dv.setUint16(SRC_AT + 8, 16, true);
    const eth = SRC_AT + 10;
    u8.set(GW_MAC, eth);
    u8.set(VM_MAC, eth + 6);
    dv.setUint16(eth + 12, 0x86dd);
    const ip = eth + 14;
    dv.setUint32(ip, 0x6a0abcde); // traffic class 0xa0, flow label 0xabcde
    dv.setUint16(ip + 4, thl + len);
    u8[ip + 6] = o.next ?? 6;
    u8[ip + 7] = 61;
    u8.set(SRC6, ip + 8);
    u8.set(DST6, ip + 24);
    const t = ip + 40;
    dv.setUint16(t, 443);
    dv.setUint16(t + 2, 61234);
    dv.setUint32(t + 4, SEQ);
    dv.setUint32(t + 8, 0x01020304);
    u8[t + 12] = (thl / 4) << 4;
    u8[t + 13] = 0x80 | TcpFlag.PSH | TcpFlag.ACK | TcpFlag.FIN;
    dv.setUint16(t + 14, 501);
    for (let i = 20; i < thl; i++) u8[t + i] = 1; // NOP options
    for (let i = 0; i < len; i++) u8[t + thl + i] = (i * 7 + 3) & 0xff;
    return 10 + 14 + 40 + thl + len;
  }

  /** The one's complement sum of an IPv6 TCP segment at `ip` with its pseudo-header: 0xffff when right. */
  function tcp6Sum(ip: number): number {
    const plen = dv.getUint16(ip + 4);
    let sum = 6 + plen;
    for (let i = 8; i < 40; i += 2) sum += dv.getUint16(ip + i);
    for (let i = 0; i < plen; i += 2) sum += i + 1 < plen ? dv.getUint16(ip + 40 + i) : u8[ip + 40 + i] << 8;
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    return sum;
  }

  for (const [thl, len, mss] of [
    [20, 3500, 1000],
    [32, 4000, 1000],
    [20, 999, 1000],
    [20, 2 * 1428, 1428],
  ]) {
    test(`${len} bytes after a ${thl}-byte TCP header at gso_size ${mss}`, () => {
      native.setArena(arena);
      const n = native.gsoSegment(SRC_AT, aggregate(len, mss, { thl }), DST_AT, STRIDE_6, lens.length, lens);
      const count = Math.ceil(len / mss);
      assert.equal(n, count);
      const payload: number[] = [];
      for (let i = 0; i < n; i++) {
        const at = DST_AT + i * STRIDE_6;
        const chunk = i + 1 < n ? mss : len - i * mss;
        assert.equal(lens[i], 10 + 14 + 40 + thl + chunk, `segment ${i}: length`);
        assert.deepEqual(
          [...u8.subarray(at, at + 10)],
          new Array(10).fill(0),
          `segment ${i}: a plain virtio header`,
        );
        assert.deepEqual(
          [...u8.subarray(at + 10, at + 10 + 14 + 4)],
          [...u8.subarray(SRC_AT + 10, SRC_AT + 10 + 14 + 4)],
          `segment ${i}: Ethernet, version, traffic class, flow label`,
        );
        const ip = at + 24;
        assert.equal(dv.getUint16(ip + 4), thl + chunk, `segment ${i}: payload length`);
        assert.deepEqual([u8[ip + 6], u8[ip + 7]], [6, 61], `segment ${i}: next header, hop limit`);
        assert.deepEqual([...u8.subarray(ip + 8, ip + 40)], [...SRC6, ...DST6], `segment ${i}: addresses`);
        const t = ip + 40;
        assert.equal(dv.getUint32(t + 4), (SEQ + i * mss) >>> 0, `segment ${i}: sequence number`);
        assert.equal(dv.getUint32(t + 8), 0x01020304, `segment ${i}: ack`);
        const flags = u8[t + 13];
        const last = i + 1 === n;
        assert.equal(
          flags & (TcpFlag.PSH | TcpFlag.FIN),
          last ? TcpFlag.PSH | TcpFlag.FIN : 0,
          `segment ${i}: PSH, FIN`,
        );
        assert.equal(flags & 0x80, i === 0 ? 0x80 : 0, `segment ${i}: CWR on the first only`);
        assert.equal(flags & TcpFlag.ACK, TcpFlag.ACK);
        assert.deepEqual(
          [...u8.subarray(t + 20, t + thl)],
          new Array(thl - 20).fill(1),
          `segment ${i}: options`,
        );
        assert.equal(tcp6Sum(ip), 0xffff, `segment ${i}: TCP checksum`);
        payload.push(...u8.subarray(t + thl, t + thl + chunk));
      }
      assert.deepEqual(
        payload,
        [...u8.subarray(SRC_AT + 64 + thl, SRC_AT + 64 + thl + len)],
        'the payload, in order',
      );
    });
  }

  test('refused: an extension header first, an IPv4 GSO type on IPv6, room for too few segments', () => {
    native.setArena(arena);
    const cut = (frameLen: number, max = lens.length) =>
      native.gsoSegment(SRC_AT, frameLen, DST_AT, STRIDE_6, max, lens);
    assert.ok(cut(aggregate(3000, 1000, { next: 0 })) < 0, 'hop-by-hop options');
    assert.ok(cut(aggregate(3000, 1000, { next: 17 })) < 0, 'UDP');
    assert.ok(cut(aggregate(3000, 1000, { gsoType: VNET_GSO_TCPV4 })) < 0, 'TCPV4 on an IPv6 packet');
    assert.ok(cut(aggregate(3000, 1000), 2) < 0, 'three segments, room for two');
    assert.ok(cut(aggregate(3000, STRIDE_6)) < 0, 'a segment larger than a slot');
    assert.equal(cut(aggregate(3000, 1000)), 3, 'and the same aggregate when it fits');
  });
});
