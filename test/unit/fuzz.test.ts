// A short run of the fuzzers (make fuzz runs the long one): every frame from every side, and every DHCP
// message, is handled without a throw and without a frame escaping the rules; and the same for IPv6:
// frames from the VM (with and without virtio headers), the host link and the uplink's IPv6 capture of a
// network with its /48 and NAT66, each property checked on what leaves.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { Port } from '../../src/ports/port.js';
import { parseMac } from '../../src/wire/addr.js';
import { TcpFlag } from '../../src/wire/tcp.js';
import { fuzzDhcp } from '../fuzz/dhcp-fuzz.js';
import { fuzzPipeline } from '../fuzz/pipeline-fuzz.js';
import { externalMacOf } from '../lib/attachments.js';
import {
  addrBytes,
  addrText,
  capture6,
  checksum6,
  dhcp6Msg,
  echo6,
  eth6,
  fragments6,
  icmp6,
  linkLocalOf,
  multicastMac,
  NH,
  na6,
  ns6,
  options,
  parse6,
  ra6,
  redirect6,
  routing,
  rs6,
  solicitedNode,
  T6,
  tcp6,
  udp6,
  udpDgram6,
} from '../lib/frames6.js';
import { addVm, type InProcess, inProcessNetwork, PortId, policyOf } from '../lib/in-process.js';

test('20000 fuzzed frames from each side of the pipeline: no crash, no escape', (t) => {
  const sent = fuzzPipeline(20_000, 4787);
  t.diagnostic(`frames that left: ${JSON.stringify(sent)}`);
  // The fuzzer must get frames through, or the properties above were checked on nothing.
  assert.ok(
    sent.hostLink > 100 &&
      sent.uplink > 100 &&
      sent.vm > 100 &&
      sent.peer > 10 &&
      sent.forwardedIn > 10 &&
      sent.forwardedOut > 10 &&
      sent.lan > 100 &&
      sent.bridgedVm > 100,
    JSON.stringify(sent),
  );
});

test('20000 fuzzed DHCP messages through the decoder and the server: no crash', () => {
  fuzzDhcp(20_000, 2131);
});

// ---- IPv6 ----

const VM_MAC = parseMac('52:54:00:f6:00:01')!;
const PEER_MAC = parseMac('52:54:00:f6:00:02')!;
const GW_MAC = parseMac('02:00:00:00:00:fe')!;
const HOST_MAC = parseMac('02:00:00:00:00:11')!;
const EXT_MAC = externalMacOf(VM_MAC);
const PEER_EXT = externalMacOf(PEER_MAC);
const PEER = 5;
const ULA = 'fd00:5:f::/48';
const GW6 = 'fd00:5:f::1';
const GW_LL = 'fe80::1';
/** The VM's and the peer's /64s: the first and second attached. */
const VM_ADDR = 'fd00:5:f:1::a';
const VM_ADDR2 = 'fd00:5:f:1:5054:ff:fef6:1';
const PEER_ADDR = 'fd00:5:f:2::b';
const VM_LL = addrText(linkLocalOf(VM_MAC), 0);
const UPLINK6 = '2001:db8:1::2';
const WORLD6 = '2001:db8:2::10';
const WORLD6B = '2001:db8:2::11';
const BLOCKED6 = '2001:db8:3::1';
const ROUTER6 = '2001:db8:1::1';
const LO = 61000;
const HI = 61999;
const { HOST, VM, RAW, RAW6, CAPTURE6 } = PortId;
const { SYN, ACK, RST } = TcpFlag;

const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);
const hex = (f: Uint8Array) => Buffer.from(f).toString('hex');
const macAt = (f: Uint8Array, at: number) => hex(f.subarray(at, at + 6));
const macOf = (m: Uint8Array) => hex(m);
/** Whether the 16 bytes at b[at] begin with the 8 of `prefix` (a /64 given as an address text). */
const in64 = (b: Uint8Array, at: number, prefix: string) =>
  hex(b.subarray(at, at + 8)) === hex(addrBytes(prefix).subarray(0, 8));
const in48 = (b: Uint8Array, at: number) =>
  hex(b.subarray(at, at + 6)) === hex(addrBytes(GW6).subarray(0, 6));
const isAddr = (b: Uint8Array, at: number, a: string) => hex(b.subarray(at, at + 16)) === hex(addrBytes(a));

/** The network: IPv6 with NAT66, reject mode, the world's 2001:db8:2::/64 allowed; and a peer VM. */
function setup6(): InProcess & { peer: InProcess['att']; peerPort: Port } {
  const net = inProcessNetwork({
    vmMac: VM_MAC,
    gatewayMac: GW_MAC,
    ipv6: ULA,
    domain: 'fuzz6.internal',
    allow: ['203.0.113.0/24', '2001:db8:2::/64'],
    reject: true,
    nat: { addr: 0xc6336402, lo: LO, hi: HI, perVm: 64, v6: { addr: UPLINK6, mtu: 1400 } },
  });
  const peer = addVm(net, PEER, PEER_MAC, 'peer', { policy: policyOf(net.cfg, ['fd00:5:f:1::/64']) });
  return { ...net, peer: peer.att, peerPort: peer.port };
}

/** Frames a VM sends: every kind softnet answers, drops or forwards, with forged variants. */
function vmTemplates6(): Uint8Array[] {
  const out: Uint8Array[] = [];
  const gwGroup = solicitedNode(GW_LL);
  const ownGroup = solicitedNode(VM_ADDR);
  const dhcpGroup = 'ff02::1:2';
  for (const src of [VM_ADDR, VM_ADDR2, VM_LL, '::', PEER_ADDR, WORLD6, GW_LL]) {
    for (const dst of [GW_LL, GW6, WORLD6, BLOCKED6, PEER_ADDR, 'ff02::1', 'fd00:5:f:9::1']) {
      out.push(
        eth6(udp6(src, dst, 5000, 53, new Uint8Array(24)), VM_MAC, GW_MAC),
        eth6(tcp6(src, dst, 40000, 80, SYN), VM_MAC, GW_MAC),
        eth6(echo6(src, dst, 7, 1), VM_MAC, GW_MAC),
      );
    }
    out.push(
      eth6(rs6(src, 'ff02::2', VM_MAC), VM_MAC, multicastMac(addrBytes('ff02::2'))),
      eth6(ns6(src, gwGroup.ip, GW_LL, VM_MAC), VM_MAC, gwGroup.mac),
      eth6(ns6(src, GW_LL, GW_LL, VM_MAC), VM_MAC, GW_MAC),
      eth6(ns6(src, ownGroup.ip, VM_ADDR), VM_MAC, ownGroup.mac),
      eth6(na6(src, 'ff02::1', src === '::' ? VM_ADDR : src, 0x20, VM_MAC), VM_MAC, GW_MAC),
    );
    const info = dhcp6Msg(11, 1, [[1, [0, 3, 0, 1, ...VM_MAC]]]);
    out.push(eth6(udp6(src, dhcpGroup, 546, 547, info), VM_MAC, GW_MAC));
  }
  const duid: [number, number[]] = [1, [0, 3, 0, 1, ...VM_MAC]];
  const ia: [number, number[]] = [3, [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]];
  const dgram = udpDgram6(VM_ADDR, WORLD6, 40002, 9999, new Uint8Array(2000));
  out.push(
    eth6(udp6(VM_LL, GW_LL, 546, 547, dhcp6Msg(1, 2, [duid, ia, [8, [0, 0]]])), VM_MAC, GW_MAC),
    eth6(udp6(VM_LL, GW_LL, 547, 546, dhcp6Msg(2, 3, [duid])), VM_MAC, GW_MAC),
    eth6(ra6(VM_LL, 'ff02::1', '2001:db8:66::', VM_MAC), VM_MAC, GW_MAC),
    eth6(redirect6(VM_LL, 'ff02::1', VM_LL, WORLD6), VM_MAC, GW_MAC),
    eth6(
      icmp6(VM_LL, 'ff02::16', T6.MLD2_REPORT, 0, 0, new Uint8Array(8), { ext: [options(NH.HOP)] }),
      VM_MAC,
      GW_MAC,
    ),
    eth6(udp6(VM_ADDR, WORLD6, 5000, 53, new Uint8Array(24), { hop: 1 }), VM_MAC, GW_MAC),
    eth6(udp6(VM_ADDR, WORLD6, 5000, 53, new Uint8Array(1400)), VM_MAC, GW_MAC),
    eth6(udp6(VM_ADDR, WORLD6, 5000, 53, new Uint8Array(24), { ext: [routing(0)] }), VM_MAC, GW_MAC),
    eth6(
      udp6(VM_ADDR, WORLD6, 5000, 53, new Uint8Array(24), {
        ext: [options(NH.HOP), options(NH.DEST), routing(2), options(NH.DEST)],
      }),
      VM_MAC,
      GW_MAC,
    ),
    eth6(tcp6(VM_ADDR, WORLD6, 40000, 80, ACK, {}, new Uint8Array(1300)), VM_MAC, GW_MAC),
    eth6(tcp6(VM_ADDR, WORLD6, 40000, 80, RST | ACK), VM_MAC, GW_MAC),
    ...fragments6(NH.UDP, VM_ADDR, WORLD6, dgram, 1232, 0x51).map((p) => eth6(p, VM_MAC, GW_MAC)),
  );
  return out;
}

/** Frames the host sends: neighbor solicitations for the VMs and others, packets for each VM's MACs. */
function hostTemplates6(): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const target of [VM_ADDR, PEER_ADDR, GW6, 'fd00:5:f:9::1', VM_LL]) {
    const g = solicitedNode(target);
    out.push(eth6(ns6(GW6, g.ip, target, HOST_MAC), HOST_MAC, g.mac));
  }
  for (const [dst, dstMac] of [
    [VM_ADDR, EXT_MAC],
    [VM_ADDR, VM_MAC],
    [PEER_ADDR, PEER_EXT],
    [PEER_ADDR, EXT_MAC],
    ['fd00:5:f:9::1', EXT_MAC],
  ] as const) {
    out.push(
      eth6(udp6(GW6, dst, 53, 5000), HOST_MAC, dstMac),
      eth6(tcp6(GW6, dst, 53, 5000, SYN | ACK), HOST_MAC, dstMac),
      eth6(echo6(GW6, dst, 9, 9), HOST_MAC, dstMac),
    );
  }
  out.push(
    eth6(
      ra6('fe80::11', 'ff02::1', ULA.replace('::/48', ':1::'), HOST_MAC),
      HOST_MAC,
      multicastMac(addrBytes('ff02::1')),
    ),
  );
  return out;
}

/**
 * Frames the uplink's capture reads, for the mappings `sent` (packets NAT66 sent): replies from their
 * remote and from another, ICMPv6 errors quoting them, a fragmented reply, and packets not for softnet.
 */
function captureTemplates6(sent: Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const raw of sent) {
    const p = parse6(raw, 0, true);
    const port = p.frag === null ? p.sport : 0;
    for (const from of [WORLD6, WORLD6B]) {
      out.push(
        udp6(from, UPLINK6, 9999, port),
        tcp6(from, UPLINK6, 80, port, SYN | ACK),
        echo6(from, UPLINK6, p.id, 1, {}, T6.ECHO_REPLY),
      );
    }
    for (const type of [T6.TOO_BIG, T6.UNREACHABLE, T6.TIME_EXCEEDED])
      out.push(icmp6(ROUTER6, UPLINK6, type, 0, 1280, raw.subarray(0, Math.min(raw.length, 1232))));
    const dgram = udpDgram6(WORLD6, UPLINK6, 9999, port, new Uint8Array(2000));
    out.push(...fragments6(NH.UDP, WORLD6, UPLINK6, dgram, 1232, 0x77));
  }
  out.push(
    udp6(WORLD6, '2001:db8:1::3', 9999, LO),
    udp6(WORLD6, UPLINK6, 9999, LO, new Uint8Array(8), { hop: 1 }),
  );
  return out.map(capture6);
}

/**
 * The same frame behind a virtio header leaving its TCP or UDP checksum to offload: the field holds the
 * pseudo-header's sum, as a sender on the host writes it.
 */
function withVnet6(f: Uint8Array): Uint8Array {
  const out = new Uint8Array(10 + f.length);
  out.set(f, 10);
  if (f.length < 54 || dv(f).getUint16(12) !== 0x86dd) return out;
  const p = parse6(f, 14, true);
  if ((p.proto !== NH.TCP && p.proto !== NH.UDP) || p.frag !== null) return out;
  const l4 = p.l4.byteOffset - f.byteOffset;
  const field = p.proto === NH.TCP ? 16 : 6;
  if (l4 + field + 2 > f.length) return out;
  const pseudo = ~checksum6(p.srcBytes, p.dstBytes, p.proto, new Uint8Array(p.l4.length)) & 0xffff;
  dv(out).setUint16(10 + l4 + field, pseudo);
  out[0] = 1;
  dv(out).setUint16(6, l4, true);
  dv(out).setUint16(8, field, true);
  return out;
}

type Recipe6 = { raw: Uint8Array } | { t: number; edits: Array<[number, number]>; len: number | undefined };

function recipes6(count: number): fc.Arbitrary<Recipe6> {
  const mutated = fc.record({
    t: fc.nat(count - 1),
    edits: fc.array(fc.tuple(fc.nat(149), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
    len: fc.option(fc.integer({ min: 0, max: 1600 }), { freq: 4, nil: undefined }),
  });
  return fc.oneof(
    { weight: 6, arbitrary: mutated },
    { weight: 1, arbitrary: fc.record({ raw: fc.uint8Array({ maxLength: 1600 }) }) },
  );
}

/** The frame of a recipe, still IPv6 at the Ethernet type at `typeAt`. */
function cook6(r: Recipe6, tpls: Uint8Array[], typeAt: number): Uint8Array {
  let f: Uint8Array;
  if ('raw' in r) f = Uint8Array.from(r.raw);
  else {
    const t = tpls[r.t];
    f = new Uint8Array(r.len ?? t.length);
    f.set(t.subarray(0, f.length));
    for (const [at, v] of r.edits) if (at < f.length) f[at] = v;
  }
  if (f.length >= typeAt + 2) dv(f).setUint16(typeAt, 0x86dd);
  return f;
}

/**
 * Whether the transport checksum of the whole (unfragmented) IPv6 packet at b[at] is right; a UDP
 * datagram is what its own length says (RFC 8200 8.1), the rest of the payload ignored as a receiver does.
 */
function checksumOk(b: Uint8Array, at: number): boolean {
  const p = parse6(b, at);
  if (p.frag !== null) return true;
  const ulen = p.proto === NH.UDP && p.l4.length >= 8 ? dv(p.l4).getUint16(4) : p.l4.length;
  return ulen <= p.l4.length && checksum6(p.srcBytes, p.dstBytes, p.proto, p.l4.subarray(0, ulen)) === 0;
}

test('IPv6: 20000 fuzzed frames from the VM, the host link and the uplink: no crash, no escape', (t) => {
  const s = setup6();
  assert.deepEqual(
    [s.att.p1 & 0xffff, s.peer.p1 & 0xffff],
    [1, 2],
    'the VM and the peer hold the /64s named above',
  );
  const sent = { hostLink: 0, uplink: 0, vm: 0, peer: 0, answers: 0, translatedIn: 0 };
  let side = '';
  /** Properties of what left; `checksums`: what the VM sent was whole and checksummed by it. */
  const check = (checksums: boolean) => {
    if (s.io.take(RAW).length > 0) throw new Error(`${side}: an IPv4 packet left from IPv6 frames`);
    for (const f of s.io.take(RAW6)) {
      sent.uplink++;
      if (f[0] >>> 4 !== 6 || !isAddr(f, 8, UPLINK6))
        throw new Error(`${side}: a packet left the uplink without the NAT66 address: ${hex(f)}`);
      const w = (i: number) => dv(f).getInt32(24 + 4 * i);
      if (!s.policy.allows6(w(0), w(1), w(2), w(3)))
        throw new Error(`${side}: a packet left for a blocked destination: ${hex(f)}`);
      if (f.length > 1400) throw new Error(`${side}: a packet over the uplink MTU left`);
      const p = parse6(f, 0);
      const port = p.proto === NH.ICMP6 ? p.id : p.sport;
      if (port >= 0 && (port < LO || port > HI))
        throw new Error(`${side}: a packet left from a port outside the range: ${hex(f)}`);
      if (checksums && !checksumOk(f, 0))
        throw new Error(`${side}: a bad checksum left the uplink: ${hex(f)}`);
    }
    for (const taken of s.io.take(VM)) {
      const f = s.vmPort.vnet ? taken.subarray(10) : taken;
      sent.vm++;
      if (macAt(f, 0) !== macOf(VM_MAC)) throw new Error(`${side}: a frame for another MAC reached the VM`);
      if (dv(f).getUint16(12) !== 0x86dd || f.length < 54)
        throw new Error(`${side}: not IPv6 to the VM: ${hex(f)}`);
      const ip = 14;
      const toVm = in64(f, ip + 24, VM_ADDR) || isAddr(f, ip + 24, 'ff02::1');
      const toLinkLocal = in64(f, ip + 24, 'fe80::') && !isAddr(f, ip + 24, GW_LL);
      if (!toVm && !toLinkLocal && side !== 'host')
        throw new Error(`${side}: a frame reached the VM for another address: ${hex(f)}`);
      if (side === 'host') continue;
      const p = parse6(f, ip);
      const ours = isAddr(f, ip + 8, GW_LL) || isAddr(f, ip + 8, GW6);
      if (side === 'capture') {
        sent.translatedIn++;
        // Whoever quotes a packet may send an ICMPv6 error; any other packet comes from a remote the VM sent to.
        const error = p.proto === NH.ICMP6 && p.sport < 128;
        if (in48(f, ip + 8) && !error)
          throw new Error(
            `${side}: a frame from the network's own addresses came in from the world: ${hex(f)}`,
          );
        continue;
      }
      // From the VM's own frames, only softnet's answers come back, each checksummed from scratch: its
      // own, and in reject mode a RST from the address refused.
      sent.answers++;
      const rst = p.proto === NH.TCP && (p.l4[13] & RST) !== 0;
      if (!ours && !rst) throw new Error(`${side}: an answer from a stranger: ${hex(f)}`);
      if (!checksumOk(f, ip)) throw new Error(`${side}: an answer with a bad checksum: ${hex(f)}`);
    }
    for (const f of s.io.take(PEER)) {
      sent.peer++;
      if (side !== 'host') throw new Error(`${side}: the VM reached the peer it may not: ${hex(f)}`);
      if (macAt(f, 0) !== macOf(PEER_MAC))
        throw new Error(`${side}: a frame for another MAC reached the peer`);
    }
    for (const f of s.io.take(HOST)) {
      sent.hostLink++;
      if (dv(f).getUint16(12) !== 0x86dd || f.length < 54)
        throw new Error(`${side}: not IPv6 on the host link`);
      const src = macAt(f, 6);
      const p = parse6(f, 14);
      if (p.proto === NH.ICMP6 && p.sport === T6.NA && isAddr(f, 14 + 8, addrText(p.l4, 8))) {
        const [mac, prefix] = src === macOf(EXT_MAC) ? [EXT_MAC, VM_ADDR] : [PEER_EXT, PEER_ADDR];
        if (src !== macOf(mac) || !in64(p.l4, 8, prefix) || macAt(p.l4, 26) !== macOf(mac))
          throw new Error(`${side}: an NA on the host link for an address not at its VM's MAC: ${hex(f)}`);
        if (!checksumOk(f, 14)) throw new Error(`${side}: an NA with a bad checksum: ${hex(f)}`);
        continue;
      }
      if (side !== 'vm' && side !== 'vnet')
        throw new Error(`${side}: a packet reached the host link: ${hex(f)}`);
      if (src !== macOf(EXT_MAC))
        throw new Error(`${side}: a frame on the host link not from the VM's external MAC`);
      if (!in64(f, 14 + 8, VM_ADDR)) throw new Error(`${side}: a forged source on the host link: ${hex(f)}`);
      if (!isAddr(f, 14 + 24, GW6))
        throw new Error(`${side}: a packet for someone else on the host link: ${hex(f)}`);
    }
  };
  const run = (
    port: Port,
    portId: number,
    tpls: Uint8Array[],
    typeAt: number,
    salt: number,
    checksums: boolean,
  ) => {
    fc.assert(
      fc.property(recipes6(tpls.length), (r) => {
        s.io.deliver(portId, cook6(r, tpls, typeAt));
        s.p.drain(port);
        check(checksums && !('raw' in r));
      }),
      { numRuns: 20_000, seed: 6001 + salt, endOnFailure: true, includeErrorInReport: true },
    );
  };
  const vmTpls = vmTemplates6();
  side = 'vm';
  run(s.vmPort, VM, vmTpls, 12, 0, true);
  side = 'host';
  run(s.hostPort, HOST, hostTemplates6(), 12, 1, false);
  // Mappings for the capture's templates: one of each kind, and a fragmented datagram.
  side = 'seed';
  const seeds = [
    eth6(udp6(VM_ADDR, WORLD6, 5353, 53), VM_MAC, GW_MAC),
    eth6(tcp6(VM_ADDR, WORLD6, 40001, 80, SYN), VM_MAC, GW_MAC),
    eth6(echo6(VM_ADDR, WORLD6, 0x4242, 1), VM_MAC, GW_MAC),
    ...fragments6(
      NH.UDP,
      VM_ADDR,
      WORLD6,
      udpDgram6(VM_ADDR, WORLD6, 5354, 53, new Uint8Array(2000)),
      1232,
      9,
    ).map((p) => eth6(p, VM_MAC, GW_MAC)),
  ];
  for (const f of seeds) {
    s.io.deliver(VM, f);
    s.p.drain(s.vmPort);
  }
  const seeded = s.io.take(RAW6);
  assert.equal(seeded.length, seeds.length, 'every seed left');
  side = 'capture';
  run(s.capture6!, CAPTURE6, captureTemplates6(seeded), 10 + 12, 2, false);
  // The VM again behind virtio headers: TCP and UDP leave their checksum to offload.
  side = 'vnet';
  s.vmPort.vnet = true;
  s.vmPort.big = true;
  s.io.vnet.add(VM);
  run(s.vmPort, VM, vmTpls.map(withVnet6), 10 + 12, 3, false);
  t.diagnostic(`IPv6 frames that left: ${JSON.stringify(sent)}`);
  assert.ok(
    sent.hostLink > 100 &&
      sent.uplink > 100 &&
      sent.vm > 100 &&
      sent.peer > 10 &&
      sent.answers > 100 &&
      sent.translatedIn > 100,
    JSON.stringify(sent),
  );
});
