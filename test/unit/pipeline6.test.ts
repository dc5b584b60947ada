// IPv6 through the whole pipeline in-process: a network with its ULA /48 and NAT66, VMs that got their
// /64s at attach, frames from the VM, the host link and the uplink's capture built byte by byte
// (test/lib/frames6.ts), and everything that comes out read back field by field with every checksum
// computed again from scratch: router and neighbor discovery at fe80::1, the roles a VM may not take,
// the header chain checks, NAT66 both ways with its errors and fragments, the host link's ND, DHCPv6,
// and no allocation per frame.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { NatProto, remoteKey6 } from '../../src/nat/flows.js';
import type { Port } from '../../src/ports/port.js';
import { dropsByName } from '../../src/stats/drops.js';
import { monotonicMs } from '../../src/util/clock.js';
import { parseIpv6, parseMac } from '../../src/wire/addr.js';
import { TcpFlag } from '../../src/wire/tcp.js';
import { externalMacOf } from '../lib/attachments.js';
import {
  addrBytes,
  addrText,
  assertChecksums6,
  bytes,
  capture6,
  checksum6,
  dhcp6Msg,
  type Ext,
  echo6,
  eth6,
  fragment,
  fragments6,
  full6,
  icmp6,
  ipv6,
  linkLocalOf,
  multicastMac,
  ND_OPT,
  NH,
  na6,
  ndOptions,
  ns6,
  options,
  type Parsed6,
  parse6,
  ra6,
  reassemble,
  redirect6,
  routing,
  rs6,
  solicitedNode,
  T6,
  tcp6,
  tcpSeg6,
  udp6,
  udpDgram6,
} from '../lib/frames6.js';
import { addVm, type InProcess, inProcessNetwork, LEASE_TIME, PortId, policyOf } from '../lib/in-process.js';

const VM_MAC = parseMac('52:54:00:00:00:01')!;
const B_MAC = parseMac('52:54:00:00:00:02')!;
const GW_MAC = parseMac('02:00:00:00:00:fe')!;
const HOST_MAC = parseMac('02:00:00:00:00:11')!;
const EXT_MAC = externalMacOf(VM_MAC);
const ULA = 'fd00:5:1::/48';
const GW6 = 'fd00:5:1::1';
/** The /64s of the first and second VM attached, and an address each uses in it. */
const VM_NET = 'fd00:5:1:1::';
const VM_ADDR = 'fd00:5:1:1::a';
const B_ADDR = 'fd00:5:1:2::b';
const VM_LL = linkLocalOf(VM_MAC);
const B_LL = linkLocalOf(B_MAC);
const GW_LL = 'fe80::1';
const UPLINK = 0xc6336402;
const UPLINK6 = '2001:db8:1::2';
const REMOTE6 = '2001:db8:2::10';
const REMOTE6B = '2001:db8:2::11';
const ROUTER6 = '2001:db8:1::1';
const LO = 61000;
const HI = 61999;
const B = 7;
const DOMAIN = 'v6.internal';
const ALL_NODES_MAC = multicastMac(addrBytes('ff02::1'));
const ALL_ROUTERS_MAC = multicastMac(addrBytes('ff02::2'));
const DHCP_GROUP = 'ff02::1:2';
const { HOST, VM, RAW, RAW6, CAPTURE6 } = PortId;
const { SYN, ACK, PSH } = TcpFlag;

type Net = InProcess & { b: { port: Port; att: InProcess['att']; attached: Uint8Array[] } };

/** A network with IPv6 and NAT66 (uplink MTU `mtu`), its VM and a second VM B (on port B). */
function setup(o: { mtu?: number; allow?: string[]; reject?: boolean } = {}): Net {
  const net = inProcessNetwork({
    vmMac: VM_MAC,
    gatewayMac: GW_MAC,
    ipv6: ULA,
    domain: DOMAIN,
    allow: o.allow ?? ['2001:db8:2::/64'],
    reject: o.reject,
    nat: { addr: UPLINK, lo: LO, hi: HI, perVm: 16, v6: { addr: UPLINK6, mtu: o.mtu } },
  });
  const b = addVm(net, B, B_MAC, 'b', { policy: policyOf(net.cfg, []) });
  return { ...net, b };
}

const drops = (net: InProcess) => dropsByName(net.p.drops);
const hex = (f: Uint8Array) => Buffer.from(f).toString('hex');
const mac = (f: Uint8Array, at: number) =>
  [...f.subarray(at, at + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
const macText = (m: Uint8Array) => mac(m, 0);
const view = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

/** Hands `frame` to `port` and lets the pipeline decide it. */
function send(net: InProcess, port: Port, frame: Uint8Array): void {
  net.io.deliver(port.id, frame);
  net.p.drain(port);
}

/** The VM sends an IPv6 packet in a frame to `dstMac` (the gateway's by default). */
function fromVm(net: InProcess, pkt: Uint8Array, dstMac: Uint8Array = GW_MAC, srcMac = VM_MAC): void {
  send(net, net.vmPort, eth6(pkt, srcMac, dstMac));
}

/** Everything sent anywhere since the last call, by port. */
function sent(net: Net): Record<string, Uint8Array[]> {
  const out: Record<string, Uint8Array[]> = {};
  for (const [name, id] of [
    ['vm', VM],
    ['b', B],
    ['host', HOST],
    ['raw', RAW],
    ['raw6', RAW6],
  ] as const) {
    const got = net.io.take(id);
    if (got.length > 0) out[name] = got;
  }
  return out;
}

/** Asserts that exactly one frame was sent, on `where`, and nothing anywhere else; returns it. */
function only(net: Net, where: string): Uint8Array {
  const all = sent(net);
  const summary = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.map(hex)]));
  assert.deepEqual(
    Object.keys(all),
    [where],
    `one frame on ${where} only: ${JSON.stringify(summary)}; drops ${JSON.stringify(drops(net))}`,
  );
  assert.equal(all[where].length, 1, `one frame on ${where}`);
  return all[where][0];
}

/** Asserts that nothing was sent anywhere and that the only drop is `name`, once. */
function droppedAs(net: Net, name: string, why = ''): void {
  const all = sent(net);
  assert.deepEqual(
    Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.map(hex)])),
    {},
    `nothing sent ${why}`,
  );
  assert.deepEqual(drops(net), { [name]: 1 }, why);
  net.p.drops.fill(0);
}

/** Checks the Ethernet header of a frame for the VM: to its MAC, from the gateway's, IPv6. */
function toVmFrame(f: Uint8Array, vmMac = VM_MAC): void {
  assert.equal(mac(f, 0), macText(vmMac), 'to the VM MAC');
  assert.equal(mac(f, 6), macText(GW_MAC), 'from the gateway MAC');
  assert.equal(view(f).getUint16(12), 0x86dd, 'IPv6');
}

/** A router advertisement, every field and option read. */
interface Ra {
  ip: Parsed6;
  curHopLimit: number;
  flags: number;
  routerLifetime: number;
  reachable: number;
  retrans: number;
  options: number[];
  slla: string;
  mtu: number;
  prefix: { len: number; flags: number; valid: number; preferred: number; prefix: string };
  rdnss: { lifetime: number; servers: string[] };
  dnssl: { lifetime: number; names: string[] } | null;
}

/** Reads a router advertisement frame for `vmMac` and checks its envelope (hop limit 255, fe80::1, checksum). */
function readRa(f: Uint8Array, vmMac = VM_MAC): Ra {
  toVmFrame(f, vmMac);
  const ip = assertChecksums6(f, 14, 'of the RA');
  assert.equal(ip.proto, NH.ICMP6);
  assert.equal(ip.sport, T6.RA, 'a router advertisement');
  assert.equal(ip.dport, 0, 'code 0');
  assert.equal(ip.hop, 255, 'hop limit 255');
  assert.equal(ip.src, full6(GW_LL), 'from fe80::1');
  const l4 = ip.l4;
  const dv = view(l4);
  const opts = ndOptions(l4, 16);
  const one = (type: number) => {
    const found = opts.filter((o) => o.type === type);
    assert.equal(found.length, 1, `one option ${type}`);
    return found[0].data;
  };
  const pi = one(ND_OPT.PREFIX);
  assert.equal(pi.length, 32);
  const rd = one(ND_OPT.RDNSS);
  assert.equal((rd.length - 8) % 16, 0);
  const servers: string[] = [];
  for (let at = 8; at < rd.length; at += 16) servers.push(addrText(rd, at));
  const dl = opts.find((o) => o.type === ND_OPT.DNSSL)?.data ?? null;
  let dnssl: Ra['dnssl'] = null;
  if (dl) {
    const names: string[] = [];
    let at = 8;
    while (at < dl.length && dl[at] !== 0) {
      const labels: string[] = [];
      while (dl[at] !== 0) {
        labels.push(String.fromCharCode(...dl.subarray(at + 1, at + 1 + dl[at])));
        at += 1 + dl[at];
      }
      names.push(labels.join('.'));
      at++;
    }
    assert.ok(
      dl.subarray(at).every((x) => x === 0),
      'DNSSL padded with zeros',
    );
    dnssl = { lifetime: view(dl).getUint32(4), names };
  }
  const mtuOpt = one(ND_OPT.MTU);
  assert.equal(mtuOpt.length, 8);
  return {
    ip,
    curHopLimit: l4[4],
    flags: l4[5],
    routerLifetime: dv.getUint16(6),
    reachable: dv.getUint32(8),
    retrans: dv.getUint32(12),
    options: opts.map((o) => o.type),
    slla: mac(one(ND_OPT.SLLA), 2),
    mtu: view(mtuOpt).getUint32(4),
    prefix: {
      len: pi[2],
      flags: pi[3],
      valid: view(pi).getUint32(4),
      preferred: view(pi).getUint32(8),
      prefix: addrText(pi, 16),
    },
    rdnss: { lifetime: view(rd).getUint32(4), servers },
    dnssl,
  };
}

/** Checks what softnet's advertisements say to the VM of /64 `net64`, all but the destination. */
function assertAdvertises(ra: Ra, net64: string): void {
  assert.equal(ra.curHopLimit, 64);
  assert.equal(ra.flags, 0xc0, 'M and O set, nothing else');
  assert.equal(ra.routerLifetime, 1800);
  assert.equal(ra.reachable, 0);
  assert.equal(ra.retrans, 0);
  assert.equal(ra.slla, macText(GW_MAC), "source link-layer address: the gateway's MAC");
  assert.equal(ra.mtu, 1500);
  assert.deepEqual(ra.prefix, {
    len: 64,
    flags: 0xc0,
    valid: 2 * LEASE_TIME,
    preferred: LEASE_TIME,
    prefix: full6(net64),
  });
  assert.deepEqual(ra.rdnss, { lifetime: 1800, servers: [full6(GW6)] });
  assert.deepEqual(ra.dnssl, { lifetime: 1800, names: [DOMAIN] });
  assert.deepEqual(
    [...ra.options].sort((a, b) => a - b),
    [ND_OPT.SLLA, ND_OPT.PREFIX, ND_OPT.MTU, ND_OPT.RDNSS, ND_OPT.DNSSL],
  );
}

describe('router discovery', () => {
  test('at attach each VM is sent one router advertisement, to its own MAC, with its own /64', () => {
    const net = setup();
    assert.equal(net.attached.length, 1, 'one frame at attach');
    const ra = readRa(net.attached[0]);
    assert.equal(ra.ip.dst, full6('ff02::1'), 'to all nodes, at the VM MAC only');
    assertAdvertises(ra, VM_NET);
    assert.equal(net.b.attached.length, 1);
    assertAdvertises(readRa(net.b.attached[0], B_MAC), 'fd00:5:1:2::');
  });

  test('RS from the link-local address -> one unicast RA to that address and MAC, every option right', () => {
    const net = setup();
    fromVm(net, rs6(VM_LL, 'ff02::2', VM_MAC), ALL_ROUTERS_MAC);
    const ra = readRa(only(net, 'vm'));
    assert.equal(ra.ip.dst, addrText(VM_LL, 0), 'to the soliciting address');
    assertAdvertises(ra, VM_NET);
    assert.deepEqual(drops(net), {});
  });

  test('RS from :: -> RA to all nodes, still only at the VM MAC', () => {
    const net = setup();
    fromVm(net, rs6('::', 'ff02::2'), ALL_ROUTERS_MAC);
    const ra = readRa(only(net, 'vm'));
    assert.equal(ra.ip.dst, full6('ff02::1'));
    assertAdvertises(ra, VM_NET);
  });

  test('two VMs get different /64s, each only its own', () => {
    const net = setup();
    send(net, net.b.port, eth6(rs6(B_LL, 'ff02::2', B_MAC), B_MAC, ALL_ROUTERS_MAC));
    const rb = readRa(only(net, 'b'), B_MAC);
    fromVm(net, rs6(VM_LL, 'ff02::2', VM_MAC), ALL_ROUTERS_MAC);
    const ra = readRa(only(net, 'vm'));
    assert.equal(rb.prefix.prefix, full6('fd00:5:1:2::'));
    assert.equal(ra.prefix.prefix, full6(VM_NET));
    assert.equal(net.att.p0, net.b.att.p0);
    assert.notEqual(net.att.p1, net.b.att.p1);
  });

  test('unasked, every VM is told its /64 again every third of the preferred lifetime', () => {
    const net = setup();
    const now = monotonicMs();
    net.seg.tick(now, Math.floor(now / 1000));
    assert.deepEqual(sent(net), {}, 'not at once');
    net.seg.tick(now + (LEASE_TIME / 3) * 1000 - 1000, Math.floor(now / 1000));
    assert.deepEqual(sent(net), {}, 'not before its time');
    net.seg.tick(now + (LEASE_TIME / 3) * 1000, Math.floor(now / 1000));
    const all = sent(net);
    assert.deepEqual(Object.keys(all).sort(), ['b', 'vm']);
    assertAdvertises(readRa(all.vm[0]), VM_NET);
    assertAdvertises(readRa(all.b[0], B_MAC), 'fd00:5:1:2::');
  });

  test('an RS with hop limit 64, or a bad checksum, is dropped by name', () => {
    const net = setup();
    fromVm(net, rs6(VM_LL, 'ff02::2', VM_MAC, { hop: 64 }), ALL_ROUTERS_MAC);
    droppedAs(net, 'nd-hop-limit-not-255');
    const bad = rs6(VM_LL, 'ff02::2', VM_MAC);
    bad[42] ^= 1;
    fromVm(net, bad, ALL_ROUTERS_MAC);
    droppedAs(net, 'icmpv6-bad-checksum');
  });
});

describe('neighbor discovery and echo at fe80::1', () => {
  /** Reads an NA to the VM: from fe80::1, with its flags, target and target link-layer option. */
  function readNa(f: Uint8Array): { ip: Parsed6; flags: number; target: string; tlla: string } {
    toVmFrame(f);
    const ip = assertChecksums6(f, 14, 'of the NA');
    assert.equal(ip.sport, T6.NA);
    assert.equal(ip.hop, 255);
    assert.equal(ip.src, full6(GW_LL), 'from fe80::1');
    const opts = ndOptions(ip.l4, 24);
    assert.deepEqual(
      opts.map((o) => o.type),
      [ND_OPT.TLLA],
    );
    return { ip, flags: ip.l4[4], target: addrText(ip.l4, 8), tlla: mac(opts[0].data, 2) };
  }

  test('NS for fe80::1 to its solicited-node group -> NA with R, S, O and the gateway MAC', () => {
    const net = setup();
    const group = solicitedNode(GW_LL);
    fromVm(net, ns6(VM_LL, group.ip, GW_LL, VM_MAC), group.mac);
    const na = readNa(only(net, 'vm'));
    assert.equal(na.ip.dst, addrText(VM_LL, 0), 'to the soliciting address');
    assert.equal(na.flags, 0x80 | 0x40 | 0x20, 'R, S and O');
    assert.equal(na.target, full6(GW_LL));
    assert.equal(na.tlla, macText(GW_MAC));
    assert.deepEqual(drops(net), {});
  });

  test('NS for fe80::1 unicast from the VM /64 address (reachability) -> NA to that address', () => {
    const net = setup();
    fromVm(net, ns6(VM_ADDR, GW_LL, GW_LL, VM_MAC));
    const na = readNa(only(net, 'vm'));
    assert.equal(na.ip.dst, full6(VM_ADDR));
    assert.equal(na.flags, 0xe0);
  });

  test('DAD for its own address is dropped as nd-duplicate-address-detection, nothing sent', () => {
    const net = setup();
    const group = solicitedNode(VM_ADDR);
    fromVm(net, ns6('::', group.ip, VM_ADDR), group.mac);
    droppedAs(net, 'nd-duplicate-address-detection');
    const ll = solicitedNode(VM_LL);
    fromVm(net, ns6('::', ll.ip, VM_LL), ll.mac);
    droppedAs(net, 'nd-duplicate-address-detection', 'DAD for the link-local address');
  });

  test('an NS for another address (another VM, the world) gets no answer', () => {
    const net = setup();
    const group = solicitedNode(B_ADDR);
    fromVm(net, ns6(VM_LL, group.ip, B_ADDR, VM_MAC), group.mac);
    droppedAs(net, 'nd-target-not-gateway');
  });

  test('echo to fe80::1 from the link-local address and from the /64 -> echo reply with a valid checksum', () => {
    const net = setup();
    for (const src of [addrText(VM_LL, 0), full6(VM_ADDR)]) {
      fromVm(net, echo6(src, GW_LL, 0x1234, 9));
      const f = only(net, 'vm');
      toVmFrame(f);
      const ip = assertChecksums6(f, 14, `of the echo reply to ${src}`);
      assert.equal(ip.sport, T6.ECHO_REPLY);
      assert.equal(ip.src, full6(GW_LL));
      assert.equal(ip.dst, src);
      assert.equal(ip.id, 0x1234);
      assert.equal(view(ip.l4).getUint16(6), 9, 'sequence kept');
      assert.deepEqual([...ip.l4.subarray(8)], [...bytes(24)], 'data kept');
    }
    assert.deepEqual(drops(net), {});
  });

  test('anything else to fe80::1 (UDP, an echo reply) is dropped by name', () => {
    const net = setup();
    fromVm(net, udp6(VM_LL, GW_LL, 5000, 53));
    droppedAs(net, 'icmpv6-to-gateway-unsupported');
    fromVm(net, echo6(VM_LL, GW_LL, 1, 1, {}, T6.ECHO_REPLY));
    droppedAs(net, 'icmpv6-to-gateway-unsupported');
  });
});

describe('what a VM may not send', () => {
  const cases: Array<[string, string, () => { pkt: Uint8Array; dstMac: Uint8Array }]> = [
    [
      'a router advertisement',
      'nd-router-advertisement-from-vm',
      () => ({ pkt: ra6(VM_LL, 'ff02::1', '2001:db8:66::', VM_MAC), dstMac: ALL_NODES_MAC }),
    ],
    [
      'a redirect',
      'nd-redirect-from-vm',
      () => ({ pkt: redirect6(VM_LL, B_LL, VM_LL, REMOTE6), dstMac: GW_MAC }),
    ],
    [
      'an NA for fe80::1',
      'nd-target-not-vm-own',
      () => ({ pkt: na6(VM_LL, 'ff02::1', GW_LL, 0x20, VM_MAC), dstMac: ALL_NODES_MAC }),
    ],
    [
      'an NA for fe80::1 sent to fe80::1',
      'nd-target-not-vm-own',
      () => ({ pkt: na6(VM_LL, GW_LL, GW_LL, 0x60, VM_MAC), dstMac: GW_MAC }),
    ],
    [
      "an NA for another VM's address",
      'nd-target-not-vm-own',
      () => ({ pkt: na6(VM_LL, 'ff02::1', B_ADDR, 0x20, VM_MAC), dstMac: ALL_NODES_MAC }),
    ],
    [
      'a DHCPv6 Advertise',
      'dhcpv6-server-message-from-vm',
      () => ({
        pkt: udp6(VM_LL, B_LL, 547, 546, dhcp6Msg(2, 0x1234, [[2, [0, 3, 0, 1, ...VM_MAC]]])),
        dstMac: GW_MAC,
      }),
    ],
    [
      'a DHCPv6 Reply to the servers group',
      'dhcpv6-server-message-from-vm',
      () => ({
        pkt: udp6(VM_LL, DHCP_GROUP, 547, 547, dhcp6Msg(7, 0x1234, [])),
        dstMac: multicastMac(addrBytes(DHCP_GROUP)),
      }),
    ],
    [
      'an MLD report',
      'mld-report',
      () => ({
        pkt: icmp6(VM_LL, 'ff02::16', T6.MLD2_REPORT, 0, 0, new Uint8Array(0), {
          hop: 1,
          ext: [options(NH.HOP)],
        }),
        dstMac: multicastMac(addrBytes('ff02::16')),
      }),
    ],
    [
      'a source outside its /64',
      'ipv6-src-spoofed',
      () => ({ pkt: udp6('fd00:5:1:2::a', REMOTE6, 5000, 53), dstMac: GW_MAC }),
    ],
    [
      'a source in no /64 of the network',
      'ipv6-src-spoofed',
      () => ({ pkt: tcp6('2001:db8:9::1', REMOTE6, 5000, 80, SYN), dstMac: GW_MAC }),
    ],
    [
      'a link-local source to the world',
      'ipv6-src-spoofed',
      () => ({ pkt: udp6(VM_LL, REMOTE6, 5000, 53), dstMac: GW_MAC }),
    ],
    [
      'a type 0 routing header',
      'ipv6-routing-header-type-0',
      () => ({ pkt: udp6(VM_ADDR, REMOTE6, 5000, 53, bytes(20), { ext: [routing(0)] }), dstMac: GW_MAC }),
    ],
    [
      'a first fragment without the TCP header',
      'ipv6-header-chain-not-in-first-fragment',
      () => ({
        pkt: ipv6Of(NH.TCP, tcpSeg6(VM_ADDR, REMOTE6, 5000, 80, SYN).subarray(0, 8), [fragment(0, true, 77)]),
        dstMac: GW_MAC,
      }),
    ],
    [
      '5 extension headers',
      'ipv6-too-many-extension-headers',
      () => ({
        pkt: udp6(VM_ADDR, REMOTE6, 5000, 53, bytes(20), {
          ext: [options(NH.HOP), options(NH.DEST), routing(2), options(NH.DEST), options(NH.DEST)],
        }),
        dstMac: GW_MAC,
      }),
    ],
    [
      "another VM's /64 its rules do not allow",
      'dst-other-vm',
      () => ({ pkt: udp6(VM_ADDR, B_ADDR, 5000, 53), dstMac: GW_MAC }),
    ],
    [
      'a destination the policy blocks',
      'dst-blocked-by-policy',
      () => ({ pkt: udp6(VM_ADDR, '2001:db8:3::1', 5000, 53), dstMac: GW_MAC }),
    ],
  ];
  for (const [what, name, make] of cases) {
    test(`${what}: dropped as ${name}, nothing sent anywhere`, () => {
      const net = setup();
      const { pkt, dstMac } = make();
      fromVm(net, pkt, dstMac);
      droppedAs(net, name, what);
    });
  }

  test('the header chain checks can pass: four extension headers and a whole first fragment go out', () => {
    const net = setup();
    fromVm(
      net,
      udp6(VM_ADDR, REMOTE6, 5000, 53, bytes(20), {
        ext: [options(NH.HOP), options(NH.DEST), routing(2), options(NH.DEST)],
      }),
    );
    assert.equal(only(net, 'raw6')[0] >>> 4, 6);
    const dgram = udpDgram6(VM_ADDR, REMOTE6, 5001, 53, bytes(40));
    fromVm(net, ipv6Of(NH.UDP, dgram.subarray(0, 16), [fragment(0, true, 78)]));
    assert.equal(only(net, 'raw6')[0] >>> 4, 6);
    assert.deepEqual(drops(net), {});
  });
});

/** A packet from the VM to REMOTE6 carrying `l4` (protocol `next`) after extension headers `ext`. */
function ipv6Of(next: number, l4: Uint8Array, ext: Ext[]): Uint8Array {
  return ipv6(next, VM_ADDR, REMOTE6, l4, { ext });
}

/** The VM sends `pkt` to the gateway MAC; returns the one packet that left on the raw IPv6 port, checked. */
function outOne(net: Net, pkt: Uint8Array): Parsed6 & { raw: Uint8Array } {
  fromVm(net, pkt);
  const raw = only(net, 'raw6');
  return { ...assertChecksums6(raw, 0, 'of the translated packet'), raw };
}

/** The uplink's capture hands in `pkt`; returns what the VM got (frames) and nothing else. */
function inbound(net: Net, pkt: Uint8Array): Uint8Array[] {
  send(net, net.capture6!, capture6(pkt));
  const all = sent(net);
  const { vm = [], ...rest } = all;
  assert.deepEqual(Object.keys(rest), [], 'nothing but to the VM');
  return vm;
}

/** The uplink's capture hands in `pkt`; returns the one frame the VM got, its checksums checked. */
function inOne(net: Net, pkt: Uint8Array): Parsed6 & { frame: Uint8Array } {
  const got = inbound(net, pkt);
  assert.equal(got.length, 1, `one frame to the VM; drops ${JSON.stringify(drops(net))}`);
  toVmFrame(got[0]);
  return { ...assertChecksums6(got[0], 14, 'of the frame to the VM'), frame: got[0] };
}

describe('NAT66 port forwards', () => {
  test('a forward on the uplink IPv6 address reaches the address the VM sends from, from anyone; its answers leave from the forwarded port', () => {
    const net = setup({ allow: [] });
    const f = net.nat!.v6!.forwards.add(net.att, NatProto.TCP, 2222, 22);
    // Before the VM has sent anything there is no address of its to forward to.
    assert.deepEqual(inbound(net, tcp6(REMOTE6B, UPLINK6, 50000, 2222, SYN)), []);
    assert.deepEqual(drops(net), { 'forward-vm-without-address': 1 });
    net.p.drops.fill(0);
    fromVm(net, udp6(VM_ADDR, GW6, 5353, 53));
    sent(net);
    const back = inOne(net, tcp6(REMOTE6B, UPLINK6, 50000, 2222, SYN));
    assert.equal(back.dst, full6(VM_ADDR));
    assert.equal(back.dport, 22);
    const r = parseIpv6(REMOTE6B)!;
    assert.ok(f.knows(remoteKey6(r[0] | 0, r[1] | 0, r[2] | 0, r[3] | 0)));
    // The answer: blocked by the VM's rules (no --allow), yet it answers a client of the forward.
    const o = outOne(net, tcp6(VM_ADDR, REMOTE6B, 22, 50000, SYN | ACK));
    assert.equal(o.src, full6(UPLINK6));
    assert.equal(o.sport, 2222);
    // A SYN from the forwarded port to a remote the forward never talked with is the rules' to decide.
    fromVm(net, tcp6(VM_ADDR, REMOTE6, 22, 50001, SYN));
    assert.deepEqual(sent(net), {});
    assert.deepEqual(drops(net), { 'dst-blocked-by-policy': 1 });
  });
});

describe('NAT66', () => {
  test('TCP out: from the uplink address and a port of the range, hop limit one less, checksum right', () => {
    const net = setup();
    const o = outOne(net, tcp6(VM_ADDR, REMOTE6, 40000, 80, SYN, { hop: 64 }));
    assert.equal(o.raw.length, 40 + 20, 'a bare IPv6 packet, no Ethernet header');
    assert.equal(o.src, full6(UPLINK6));
    assert.equal(o.dst, full6(REMOTE6));
    assert.equal(o.proto, NH.TCP);
    assert.ok(o.sport >= LO && o.sport <= HI, `port ${o.sport} in the range`);
    assert.equal(o.dport, 80);
    assert.equal(o.hop, 63);
    assert.equal(o.l4[13], SYN);
    assert.equal(net.nat!.v6!.flows.size, 1);
    assert.equal(net.nat!.flows.size, 0, 'no NAT44 mapping');
    assert.deepEqual(drops(net), {});
  });

  test('TCP back in, as the capture gives it: to the VM address and port, from the gateway MAC', () => {
    const net = setup();
    const o = outOne(net, tcp6(VM_ADDR, REMOTE6, 40000, 80, SYN));
    const back = inOne(net, tcp6(REMOTE6, UPLINK6, 80, o.sport, SYN | ACK, { hop: 50 }));
    assert.equal(back.src, full6(REMOTE6));
    assert.equal(back.dst, full6(VM_ADDR));
    assert.equal(back.sport, 80);
    assert.equal(back.dport, 40000);
    assert.equal(back.hop, 49);
    assert.equal(back.l4[13], SYN | ACK);
    assert.equal(back.frame.length, 14 + 40 + 20);
    // Data both ways on the same mapping.
    const data = outOne(net, tcp6(VM_ADDR, REMOTE6, 40000, 80, ACK | PSH, {}, bytes(333)));
    assert.equal(data.sport, o.sport);
    const reply = inOne(net, tcp6(REMOTE6, UPLINK6, 80, o.sport, ACK | PSH, {}, bytes(1001, 7)));
    assert.deepEqual([...reply.l4.subarray(20)], [...bytes(1001, 7)]);
    assert.deepEqual(drops(net), {});
  });

  test('UDP and echo out and back, each restored to the VM address, port and identifier', () => {
    const net = setup();
    const u = outOne(net, udp6(VM_ADDR, REMOTE6, 5353, 53, bytes(30)));
    assert.equal(u.src, full6(UPLINK6));
    assert.ok(u.sport >= LO && u.sport <= HI);
    const ub = inOne(net, udp6(REMOTE6, UPLINK6, 53, u.sport, bytes(90, 3)));
    assert.equal(ub.dst, full6(VM_ADDR));
    assert.equal(ub.dport, 5353);
    const e = outOne(net, echo6(VM_ADDR, REMOTE6, 0x4242, 1));
    assert.equal(e.sport, T6.ECHO);
    assert.ok(e.id >= LO && e.id <= HI, `echo id ${e.id} from the range`);
    const eb = inOne(net, echo6(REMOTE6, UPLINK6, e.id, 1, {}, T6.ECHO_REPLY));
    assert.equal(eb.dst, full6(VM_ADDR));
    assert.equal(eb.id, 0x4242);
    assert.deepEqual(drops(net), {});
  });

  test('two addresses of the VM on one port: two mappings, each reply to its own address', () => {
    const net = setup();
    const other = 'fd00:5:1:1:1234:5678:9abc:def0';
    const a = outOne(net, udp6(VM_ADDR, REMOTE6, 6000, 53));
    const b = outOne(net, udp6(other, REMOTE6, 6000, 53));
    assert.notEqual(a.sport, b.sport);
    assert.equal(inOne(net, udp6(REMOTE6, UPLINK6, 53, a.sport)).dst, full6(VM_ADDR));
    assert.equal(inOne(net, udp6(REMOTE6, UPLINK6, 53, b.sport)).dst, full6(other));
  });

  test('a reply from another remote is dropped as uplink-filtered; to an unmapped port as uplink-no-mapping', () => {
    const net = setup();
    const o = outOne(net, udp6(VM_ADDR, REMOTE6, 5353, 53));
    assert.deepEqual(inbound(net, udp6(REMOTE6B, UPLINK6, 53, o.sport)), []);
    assert.deepEqual(drops(net), { 'uplink-filtered': 1 });
    net.p.drops.fill(0);
    assert.deepEqual(inbound(net, udp6(REMOTE6, UPLINK6, 53, o.sport === HI ? LO : o.sport + 1)), []);
    assert.deepEqual(inbound(net, udp6(REMOTE6, '2001:db8:1::3', 53, o.sport)), []);
    assert.deepEqual(drops(net), { 'uplink-no-mapping': 1, 'uplink-not-nat-address': 1 });
  });

  test('packet too big from the world about a NAT66 packet reaches the VM translated, checksums right', () => {
    const net = setup();
    const o = outOne(net, udp6(VM_ADDR, REMOTE6, 40001, 443, bytes(1000)));
    const got = inOne(net, icmp6(ROUTER6, UPLINK6, T6.TOO_BIG, 0, 1280, o.raw, { hop: 60 }));
    assert.equal(got.src, full6(ROUTER6));
    assert.equal(got.dst, full6(VM_ADDR), 'the outer destination is the VM');
    assert.equal(got.sport, T6.TOO_BIG);
    assert.equal(view(got.l4).getUint32(4), 1280, 'the MTU kept');
    assert.equal(got.hop, 59);
    const quote = got.l4.subarray(8);
    const q = parse6(quote, 0);
    assert.equal(q.src, full6(VM_ADDR), "the quote's source is the VM's address");
    assert.equal(q.dst, full6(REMOTE6));
    assert.equal(q.sport, 40001, "the quote's source port is the VM's");
    assert.equal(q.dport, 443);
    assert.equal(checksum6(q.srcBytes, q.dstBytes, NH.UDP, q.l4), 0, "the quote's own UDP checksum");
    assert.deepEqual(drops(net), {});
  });

  test('a truncated quote (the error cut at 1280 bytes) is translated too', () => {
    const net = setup();
    const o = outOne(net, udp6(VM_ADDR, REMOTE6, 40003, 443, bytes(1400)));
    const got = inOne(net, icmp6(ROUTER6, UPLINK6, T6.TOO_BIG, 0, 1280, o.raw.subarray(0, 1232)));
    const q = parse6(got.l4.subarray(8), 0, true);
    assert.equal(got.l4.length, 1240);
    assert.equal(got.dst, full6(VM_ADDR));
    assert.equal(q.src, full6(VM_ADDR));
    assert.equal(q.sport, 40003);
    assert.deepEqual(drops(net), {});
  });

  test('time exceeded from the world about a NAT66 echo reaches the VM with its identifier back', () => {
    const net = setup();
    const o = outOne(net, echo6(VM_ADDR, REMOTE6, 0x0707, 3, { hop: 3 }));
    const got = inOne(net, icmp6(ROUTER6, UPLINK6, T6.TIME_EXCEEDED, 0, 0, o.raw));
    assert.equal(got.dst, full6(VM_ADDR));
    const q = parse6(got.l4.subarray(8), 0);
    assert.equal(q.src, full6(VM_ADDR));
    assert.equal(q.id, 0x0707, "the quote's echo identifier is the VM's");
    assert.equal(checksum6(q.srcBytes, q.dstBytes, NH.ICMP6, q.l4), 0, "the quote's own ICMPv6 checksum");
  });

  test('packet too big about the first fragment of a NAT66 datagram reaches the VM translated', () => {
    const net = setup();
    const dgram = udpDgram6(VM_ADDR, REMOTE6, 40004, 4433, bytes(2500));
    const [first] = fragments6(NH.UDP, VM_ADDR, REMOTE6, dgram, 1432, 0x1f);
    fromVm(net, first);
    const o = only(net, 'raw6');
    assert.equal(o.length, 40 + 8 + 1432);
    // A link of MTU 1280 on the way: the router quotes as much of the fragment as fits.
    const got = inbound(net, icmp6(ROUTER6, UPLINK6, T6.TOO_BIG, 0, 1280, o.subarray(0, 1232)));
    assert.equal(got.length, 1, `the error reaches the VM; drops ${JSON.stringify(drops(net))}`);
    toVmFrame(got[0]);
    const ip = assertChecksums6(got[0], 14, 'of the translated error');
    assert.equal(ip.dst, full6(VM_ADDR));
    const q = parse6(ip.l4.subarray(8), 0, true);
    assert.equal(q.src, full6(VM_ADDR));
    assert.equal(q.sport, 40004, "the quote's source port is the VM's");
  });

  test('an error quoting a NAT66 packet with a destination options header reaches the VM translated', () => {
    const net = setup();
    fromVm(net, udp6(VM_ADDR, REMOTE6, 40005, 4433, bytes(100), { ext: [options(NH.DEST)] }));
    const o = only(net, 'raw6');
    const got = inbound(net, icmp6(ROUTER6, UPLINK6, T6.UNREACHABLE, 4, 0, o));
    assert.equal(got.length, 1, `the error reaches the VM; drops ${JSON.stringify(drops(net))}`);
    const ip = assertChecksums6(got[0], 14, 'of the translated error');
    assert.equal(ip.dst, full6(VM_ADDR));
    const q = parse6(ip.l4.subarray(8), 0);
    assert.equal(q.src, full6(VM_ADDR));
    assert.equal(q.sport, 40005, "the quote's source port is the VM's");
    assert.equal(checksum6(q.srcBytes, q.dstBytes, NH.UDP, q.l4), 0, "the quote's own UDP checksum");
  });

  test('while NAT66 is held, packets for the world are dropped as uplink-ipv6-unavailable', () => {
    const net = setup();
    net.nat!.v6!.held = true;
    fromVm(net, udp6(VM_ADDR, REMOTE6, 5000, 53));
    droppedAs(net, 'uplink-ipv6-unavailable');
  });

  test('reject mode: a blocked UDP packet is refused from P::1, a blocked SYN by a RST from its address', () => {
    const net = setup({ reject: true });
    const blocked = '2001:db8:3::1';
    fromVm(net, udp6(VM_ADDR, blocked, 5000, 53));
    const f = only(net, 'vm');
    toVmFrame(f);
    const u = assertChecksums6(f, 14, 'of the unreachable');
    assert.equal(u.src, full6(GW6));
    assert.deepEqual([u.sport, u.dport], [T6.UNREACHABLE, 1], 'administratively prohibited');
    fromVm(net, tcp6(VM_ADDR, blocked, 5000, 443, SYN));
    const r = only(net, 'vm');
    toVmFrame(r);
    const t = assertChecksums6(r, 14, 'of the RST');
    assert.equal(t.src, full6(blocked));
    assert.equal(t.dst, full6(VM_ADDR));
    assert.deepEqual([t.sport, t.dport], [443, 5000]);
    assert.equal(t.l4[13], TcpFlag.RST | ACK);
    assert.equal(view(t.l4).getUint32(8), 0x11223345, 'acknowledges the SYN');
    assert.deepEqual(drops(net), { 'dst-blocked-by-policy': 2 });
  });

  test('an error quoting a packet to a remote the mapping never sent to is dropped as uplink-filtered', () => {
    const net = setup();
    const o = outOne(net, udp6(VM_ADDR, REMOTE6, 40001, 443, bytes(100)));
    const forged = Uint8Array.from(o.raw);
    forged.set(addrBytes(REMOTE6B), 24);
    assert.deepEqual(inbound(net, icmp6(ROUTER6, UPLINK6, T6.UNREACHABLE, 4, 0, forged)), []);
    assert.deepEqual(drops(net), { 'uplink-filtered': 1 });
  });

  test('hop limit 1 -> time exceeded from P::1, quoting the packet; nothing leaves', () => {
    const net = setup();
    const pkt = udp6(VM_ADDR, REMOTE6, 5000, 53, bytes(20), { hop: 1 });
    fromVm(net, pkt);
    const f = only(net, 'vm');
    toVmFrame(f);
    const ip = assertChecksums6(f, 14, 'of the time exceeded');
    assert.equal(ip.src, full6(GW6), 'from the gateway ULA address');
    assert.equal(ip.dst, full6(VM_ADDR));
    assert.equal(ip.sport, T6.TIME_EXCEEDED);
    assert.equal(ip.dport, 0, 'hop limit exceeded in transit');
    assert.deepEqual([...ip.l4.subarray(8)], [...pkt], 'the whole packet quoted');
    assert.deepEqual(drops(net), { 'ttl-exceeded': 1 });
  });

  test('bigger than the uplink MTU -> packet too big from P::1 with that MTU; the MTU itself passes', () => {
    const net = setup({ mtu: 1400 });
    const pkt = udp6(VM_ADDR, REMOTE6, 5000, 53, bytes(1401 - 48));
    fromVm(net, pkt);
    const f = only(net, 'vm');
    toVmFrame(f);
    const ip = assertChecksums6(f, 14, 'of the packet too big');
    assert.equal(ip.src, full6(GW6));
    assert.equal(ip.dst, full6(VM_ADDR));
    assert.equal(ip.sport, T6.TOO_BIG);
    assert.equal(view(ip.l4).getUint32(4), 1400);
    assert.ok(f.length - 14 <= 1280, `the error fits the minimum MTU: ${f.length - 14}`);
    assert.deepEqual([...ip.l4.subarray(8)], [...pkt.subarray(0, 1280 - 48)], 'quoted as far as it fits');
    assert.deepEqual(drops(net), { 'too-big-for-uplink': 1 });
    net.p.drops.fill(0);
    const fits = outOne(net, udp6(VM_ADDR, REMOTE6, 5000, 53, bytes(1400 - 48)));
    assert.equal(fits.payloadLen, 1360);
  });

  test('a fragmented UDP datagram out: every fragment translated, the datagram checksum right', () => {
    const net = setup();
    const dgram = udpDgram6(VM_ADDR, REMOTE6, 40002, 9999, bytes(2500));
    for (const pkt of fragments6(NH.UDP, VM_ADDR, REMOTE6, dgram, 1232, 0xabcdef)) fromVm(net, pkt);
    const out = sent(net);
    assert.deepEqual(Object.keys(out), ['raw6'], JSON.stringify(drops(net)));
    assert.equal(out.raw6.length, 3);
    const { first, l4 } = reassemble(out.raw6, 0);
    assert.equal(first.src, full6(UPLINK6));
    assert.equal(first.dst, full6(REMOTE6));
    assert.equal(first.frag!.id, 0xabcdef);
    const sport = view(l4).getUint16(0);
    assert.ok(sport >= LO && sport <= HI, `port ${sport}`);
    assert.deepEqual([...l4.subarray(8)], [...bytes(2500)]);
    assert.equal(checksum6(addrBytes(UPLINK6), addrBytes(REMOTE6), NH.UDP, l4), 0, 'the datagram checksum');
    for (const raw of out.raw6) assert.equal(raw[7], 63);
    assert.deepEqual(drops(net), {});
  });

  test('the later fragments of a train whose first fragment softnet dropped, or never saw, go nowhere', () => {
    const net = setup();
    // A first fragment without the TCP header (RFC 7112), then the fragment that carries it.
    const seg = tcpSeg6(VM_ADDR, REMOTE6, 5000, 80, SYN);
    fromVm(net, ipv6Of(NH.TCP, seg.subarray(0, 8), [fragment(0, true, 91)]));
    fromVm(net, ipv6Of(NH.TCP, seg.subarray(8), [fragment(8, false, 91)]));
    const dgram = udpDgram6(VM_ADDR, REMOTE6, 40002, 9999, bytes(2500));
    const [, later] = fragments6(NH.UDP, VM_ADDR, REMOTE6, dgram, 1232, 0x92);
    fromVm(net, later);
    assert.deepEqual(sent(net), {});
    assert.deepEqual(drops(net), {
      'ipv6-header-chain-not-in-first-fragment': 1,
      'fragment-without-first': 2,
    });
  });

  test('a fragmented UDP reply in: first and later fragments reach the VM, the datagram checksum right', () => {
    const net = setup();
    const o = outOne(net, udp6(VM_ADDR, REMOTE6, 40002, 9999));
    const dgram = udpDgram6(REMOTE6, UPLINK6, 9999, o.sport, bytes(2500, 5));
    const got: Uint8Array[] = [];
    for (const pkt of fragments6(NH.UDP, REMOTE6, UPLINK6, dgram, 1232, 0x5eed))
      got.push(...inbound(net, pkt));
    assert.equal(got.length, 3, JSON.stringify(drops(net)));
    for (const f of got) toVmFrame(f);
    const { first, l4 } = reassemble(got, 14);
    assert.equal(first.dst, full6(VM_ADDR));
    assert.equal(first.src, full6(REMOTE6));
    assert.equal(view(l4).getUint16(2), 40002, "the VM's port");
    assert.equal(checksum6(addrBytes(REMOTE6), addrBytes(VM_ADDR), NH.UDP, l4), 0, 'the datagram checksum');
    assert.deepEqual(drops(net), {});
  });

  test('a later fragment whose first was never seen is dropped as uplink-fragment-unknown', () => {
    const net = setup();
    const o = outOne(net, udp6(VM_ADDR, REMOTE6, 40002, 9999));
    const dgram = udpDgram6(REMOTE6, UPLINK6, 9999, o.sport, bytes(2500, 5));
    const [, later] = fragments6(NH.UDP, REMOTE6, UPLINK6, dgram, 1232, 0x77);
    assert.deepEqual(inbound(net, later), []);
    assert.deepEqual(drops(net), { 'uplink-fragment-unknown': 1 });
  });

  test("a VM's mapping is only its own: another VM's reply port does not reach it", () => {
    const net = setup({ allow: ['2001:db8:2::/64'] });
    const o = outOne(net, udp6(VM_ADDR, REMOTE6, 7000, 53));
    assert.equal(net.nat!.v6!.flows.outbound6(net.att, NatProto.UDP, 7000, 0, 0xa)?.extPort, o.sport);
    const got = inOne(net, udp6(REMOTE6, UPLINK6, 53, o.sport));
    assert.equal(got.dst, full6(VM_ADDR));
    assert.deepEqual(net.io.take(B), []);
  });
});

describe('between VMs', () => {
  test("a VM whose rules allow the other's /64 reaches it, routed: hop limit one less, gateway MAC", () => {
    const net = setup({ allow: ['2001:db8:2::/64', 'fd00:5:1:2::/64'] });
    const pkt = udp6(VM_ADDR, B_ADDR, 5000, 53, bytes(20), { hop: 64 });
    fromVm(net, pkt);
    const f = only(net, 'b');
    toVmFrame(f, B_MAC);
    const ip = assertChecksums6(f, 14);
    assert.equal(ip.hop, 63);
    assert.equal(ip.src, full6(VM_ADDR));
    assert.equal(ip.dst, full6(B_ADDR));
    fromVm(net, udp6(VM_ADDR, B_ADDR, 5000, 53, bytes(20), { hop: 1 }));
    const te = only(net, 'vm');
    assert.equal(assertChecksums6(te, 14).sport, T6.TIME_EXCEEDED);
    assert.deepEqual(drops(net), { 'ttl-exceeded': 1 });
    net.p.drops.fill(0);
    // B's rules do not allow A: its answer goes nowhere.
    send(net, net.b.port, eth6(udp6(B_ADDR, VM_ADDR, 53, 5000), B_MAC, GW_MAC));
    droppedAs(net, 'dst-other-vm');
  });
});

describe('the host link', () => {
  test("the host's NS for a VM address is answered with the VM's external MAC", () => {
    const net = setup();
    const group = solicitedNode(VM_ADDR);
    send(net, net.hostPort, eth6(ns6(GW6, group.ip, VM_ADDR, HOST_MAC), HOST_MAC, group.mac));
    const f = only(net, 'host');
    assert.equal(mac(f, 0), macText(HOST_MAC), 'to the asking MAC');
    assert.equal(mac(f, 6), macText(EXT_MAC), "from the VM's external MAC");
    const ip = assertChecksums6(f, 14, 'of the NA');
    assert.equal(ip.sport, T6.NA);
    assert.equal(ip.hop, 255);
    assert.equal(ip.src, full6(VM_ADDR));
    assert.equal(ip.dst, full6(GW6));
    assert.equal(ip.l4[4], 0x40 | 0x20, 'S and O, not R');
    assert.equal(addrText(ip.l4, 8), full6(VM_ADDR));
    const opts = ndOptions(ip.l4, 24);
    assert.deepEqual(
      opts.map((o) => [o.type, mac(o.data, 2)]),
      [[ND_OPT.TLLA, macText(EXT_MAC)]],
    );
    // Any address of another VM's /64, at that VM's external MAC.
    const bGroup = solicitedNode(B_ADDR);
    send(net, net.hostPort, eth6(ns6(GW6, bGroup.ip, B_ADDR, HOST_MAC), HOST_MAC, bGroup.mac));
    const fb = only(net, 'host');
    assert.equal(mac(fb, 6), macText(externalMacOf(B_MAC)));
    assert.deepEqual(drops(net), {});
  });

  test('an NS for a /64 no VM holds, or for the gateway, is dropped as host-nd-not-for-a-vm', () => {
    const net = setup();
    for (const target of ['fd00:5:1:9::1', GW6]) {
      const group = solicitedNode(target);
      send(net, net.hostPort, eth6(ns6(GW6, group.ip, target, HOST_MAC), HOST_MAC, group.mac));
      droppedAs(net, 'host-nd-not-for-a-vm', target);
    }
  });

  test("the host's packet to a VM is forwarded to the VM's own MAC, unchanged", () => {
    const net = setup();
    const pkt = udp6(GW6, VM_ADDR, 53, 5000, bytes(40));
    send(net, net.hostPort, eth6(pkt, HOST_MAC, EXT_MAC));
    const f = only(net, 'vm');
    assert.equal(mac(f, 0), macText(VM_MAC));
    assert.deepEqual([...f.subarray(14)], [...pkt]);
    // Sent to the VM's internal MAC it goes nowhere: the host knows the VM by its external one.
    send(net, net.hostPort, eth6(pkt, HOST_MAC, VM_MAC));
    droppedAs(net, 'host-dst-not-a-vm');
  });

  test("the VM's packet to P::1 goes to the host link from its external MAC, unchanged", () => {
    const net = setup();
    const pkt = udp6(VM_ADDR, GW6, 5000, 53, bytes(40));
    fromVm(net, pkt);
    const f = only(net, 'host');
    assert.equal(mac(f, 6), macText(EXT_MAC));
    assert.deepEqual([...f.subarray(14)], [...pkt]);
  });
});

/** The options of a DHCPv6 message from msg[at], by code, in order. */
function dhcp6Options(msg: Uint8Array, at = 4): Array<[number, Uint8Array]> {
  const out: Array<[number, Uint8Array]> = [];
  while (at < msg.length) {
    assert.ok(at + 4 <= msg.length, 'an option header within the message');
    const len = view(msg).getUint16(at + 2);
    assert.ok(at + 4 + len <= msg.length, 'an option within the message');
    out.push([view(msg).getUint16(at), msg.subarray(at + 4, at + 4 + len)]);
    at += 4 + len;
  }
  return out;
}

describe('DHCPv6', () => {
  const DUID = [0, 3, 0, 1, ...VM_MAC];
  const ORO: [number, number[]] = [6, [0, 23, 0, 24]];
  const ELAPSED: [number, number[]] = [8, [0, 0]];

  /** Reads the reply frame: UDP/IPv6 from fe80::1:547 to the client's link-local :546; returns the message. */
  function readReply(f: Uint8Array): Uint8Array {
    toVmFrame(f);
    const ip = assertChecksums6(f, 14, 'of the DHCPv6 reply');
    assert.equal(ip.proto, NH.UDP);
    assert.equal(ip.src, full6(GW_LL));
    assert.equal(ip.dst, addrText(VM_LL, 0));
    assert.equal(ip.sport, 547);
    assert.equal(ip.dport, 546);
    assert.equal(view(ip.l4).getUint16(4), ip.l4.length, 'the UDP length');
    assert.equal(ip.payloadLen, ip.l4.length);
    return ip.l4.subarray(8);
  }

  test('Information-Request to ff02::1:2 -> Reply with DNS and the domain, framed right', () => {
    const net = setup();
    const msg = dhcp6Msg(11, 0xabcdef, [[1, DUID], ELAPSED, ORO]);
    fromVm(net, udp6(VM_LL, DHCP_GROUP, 546, 547, msg), multicastMac(addrBytes(DHCP_GROUP)));
    const reply = readReply(only(net, 'vm'));
    assert.equal(reply[0], 7, 'Reply');
    assert.equal(view(reply).getUint32(0) & 0xffffff, 0xabcdef, 'the transaction id');
    const opts = new Map(dhcp6Options(reply));
    assert.deepEqual([...opts.get(1)!], DUID, 'the client id echoed');
    assert.ok(opts.has(2), 'a server id');
    assert.equal(addrText(opts.get(23)!, 0), full6(GW6), 'DNS: P::1');
    assert.equal(opts.get(23)!.length, 16);
    assert.ok(opts.has(24), 'the domain list');
    assert.deepEqual(drops(net), {});
  });

  test('Solicit to fe80::1 -> Advertise with an address of the VM /64, framed right', () => {
    const net = setup();
    const iaNa = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
    fromVm(net, udp6(VM_LL, GW_LL, 546, 547, dhcp6Msg(1, 0x010203, [[1, DUID], [3, iaNa], ELAPSED, ORO])));
    const reply = readReply(only(net, 'vm'));
    assert.equal(reply[0], 2, 'Advertise');
    assert.equal(view(reply).getUint32(0) & 0xffffff, 0x010203);
    const ia = dhcp6Options(reply).find(([c]) => c === 3);
    assert.ok(ia, 'an IA_NA');
    const addr = dhcp6Options(ia[1], 12).find(([c]) => c === 5);
    assert.ok(addr, 'with an address');
    assert.ok(addrText(addr[1], 0).startsWith('fd00:5:1:1:'), `in the VM /64: ${addrText(addr[1], 0)}`);
  });

  test("DHCPv6 from fe80::1, the gateway's own address, is dropped: no reply to softnet's address", () => {
    const net = setup();
    const msg = dhcp6Msg(11, 1, [[1, DUID]]);
    fromVm(net, udp6(GW_LL, DHCP_GROUP, 546, 547, msg), multicastMac(addrBytes(DHCP_GROUP)));
    droppedAs(net, 'ipv6-src-spoofed');
  });

  test('DHCPv6 from the /64 address, not link-local, is dropped', () => {
    const net = setup();
    const msg = dhcp6Msg(11, 1, [[1, DUID]]);
    fromVm(net, udp6(VM_ADDR, DHCP_GROUP, 546, 547, msg), multicastMac(addrBytes(DHCP_GROUP)));
    droppedAs(net, 'ipv6-src-spoofed');
  });
});

// ---- No allocation per frame ----

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/**
 * Runs `frames` frames of each flooded port through the pipeline after a warm-up and a full collection;
 * returns the collections that ran and how much the heap grew meanwhile. 16 bytes a frame over 200k
 * frames is over 3 MB: it shows as collections or as growth.
 */
async function heapCost(run: (frames: number) => void, frames: number) {
  run(frames);
  gc();
  const { PerformanceObserver } = await import('node:perf_hooks');
  let collections = 0;
  const obs = new PerformanceObserver((list) => {
    collections += list.getEntries().length;
  });
  obs.observe({ entryTypes: ['gc'] });
  const before = process.memoryUsage().heapUsed;
  run(frames);
  const grown = process.memoryUsage().heapUsed - before;
  await new Promise((r) => setTimeout(r, 50));
  obs.disconnect();
  return { collections, grown };
}

/** A NAT66 TCP flow open and flooded both ways; `run(n)` passes n frames each way. */
function floodedFlow(allocate: boolean) {
  const net = setup();
  const o = outOne(net, tcp6(VM_ADDR, REMOTE6, 40000, 80, SYN));
  inOne(net, tcp6(REMOTE6, UPLINK6, 80, o.sport, SYN | ACK));
  net.io.keep = false;
  net.io.flood(VM, eth6(tcp6(VM_ADDR, REMOTE6, 40000, 80, ACK | PSH, {}, bytes(1000)), VM_MAC, GW_MAC));
  net.io.flood(CAPTURE6, capture6(tcp6(REMOTE6, UPLINK6, 80, o.sport, ACK | PSH, {}, bytes(1000))));
  const sink: unknown[] = [null];
  const count = (port: number) => net.io.sentCount.get(port) ?? 0;
  const run = (frames: number) => {
    const out = count(RAW6) + frames;
    const back = count(VM) + frames;
    while (count(RAW6) < out || count(VM) < back) {
      if (count(RAW6) < out) net.p.drain(net.vmPort);
      if (count(VM) < back) net.p.drain(net.capture6!);
      // The control: one small object a frame, as a careless per-frame path would make.
      if (allocate) for (let i = 0; i < 640; i++) sink[0] = { i };
    }
  };
  return { net, run };
}

test('a NAT66 TCP flow both ways allocates nothing: 100k frames each way, no collection, no growth', async () => {
  const { net, run } = floodedFlow(false);
  const cost = await heapCost(run, 100_000);
  assert.deepEqual(drops(net), {}, 'every frame went through');
  assert.ok((net.io.sentCount.get(VM) ?? 0) >= 200_000, 'the replies reached the VM');
  assert.equal(cost.collections, 0, `collections: ${JSON.stringify(cost)}`);
  assert.ok(cost.grown < 256 * 1024, `heap grew: ${JSON.stringify(cost)}`);
});

test('the allocation check can fail: the same flow with an object made per frame is caught', async () => {
  const { run } = floodedFlow(true);
  const cost = await heapCost(run, 100_000);
  assert.ok(cost.collections > 0 || cost.grown > 1024 * 1024, JSON.stringify(cost));
});
