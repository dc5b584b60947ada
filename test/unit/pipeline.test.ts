// The whole per-frame path in-process: a network segment behind the real pipeline, driven by a fake port.

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import type { NetworkSegment } from '../../src/engine/segment.js';
import { BATCH, Pipeline, STRIDE } from '../../src/pipeline/pipeline.js';
import type { FakeIo } from '../../src/ports/fake.js';
import { Port } from '../../src/ports/port.js';
import { Drop, dropsByName } from '../../src/stats/drops.js';
import { parseMac } from '../../src/wire/addr.js';
import { ArpOp } from '../../src/wire/arp.js';
import { checksum } from '../../src/wire/checksum.js';
import { DhcpType } from '../../src/wire/dhcp.js';
import { EtherType } from '../../src/wire/ethernet.js';
import { IcmpType } from '../../src/wire/icmp.js';
import { IpProto } from '../../src/wire/ipv4.js';
import { externalMacOf } from '../lib/attachments.js';
import { arpFrame, dhcpFrame, ipFrame } from '../lib/frames.js';
import { inProcessNetwork } from '../lib/in-process.js';

const VM_MAC = parseMac('52:54:00:00:00:01')!;
const OTHER_MAC = parseMac('52:54:00:00:00:99')!;
const GW_MAC = parseMac('02:00:00:00:00:fe')!;
const EXT_MAC = externalMacOf(VM_MAC);
const GATEWAY = 0xc0a84001;
const HOST = 1;
const VM = 2;

describe('pipeline with a fake port', () => {
  let io: FakeIo;
  let p: Pipeline;
  let seg: NetworkSegment;
  let vmIp: number;

  const drops = () => dropsByName(p.drops);
  let vmPort: Port;
  const fromVm = (f: Uint8Array) => {
    io.deliver(VM, f);
    p.drain(vmPort);
  };

  beforeEach(() => {
    const net = inProcessNetwork({ vmMac: VM_MAC, gatewayMac: GW_MAC });
    ({ io, p, seg, vmPort } = net);
    vmIp = net.att.ip;
  });

  test('the VM ARPs for the gateway and gets the host link MAC', () => {
    fromVm(arpFrame(VM_MAC, vmIp, GATEWAY));
    const [reply] = io.take(VM);
    assert.equal(reply.length, 42);
    assert.deepEqual([...reply.subarray(0, 6)], [...VM_MAC]);
    assert.deepEqual([...reply.subarray(22, 28)], [...GW_MAC]);
    assert.equal(new DataView(reply.buffer).getUint16(20), ArpOp.REPLY);
  });

  test('an echo to the gateway is answered with valid checksums', () => {
    fromVm(ipFrame(VM_MAC, GW_MAC, vmIp, GATEWAY, IpProto.ICMP));
    const [reply] = io.take(VM);
    const dv = new DataView(reply.buffer);
    assert.equal(reply[34], IcmpType.ECHO_REPLY);
    assert.equal(dv.getUint32(26), GATEWAY);
    assert.equal(dv.getUint32(30), vmIp);
    assert.equal(checksum(reply, 14, 20), 0);
    assert.equal(checksum(reply, 34, reply.length - 34), 0);
  });

  test('other traffic to the gateway goes to the host link from the VM external MAC, otherwise unchanged', () => {
    const f = ipFrame(VM_MAC, GW_MAC, vmIp, GATEWAY, IpProto.UDP);
    fromVm(f);
    const expected = Uint8Array.from(f);
    expected.set(EXT_MAC, 6);
    assert.deepEqual(io.take(HOST), [expected]);
  });

  test('the host ARPs for the VM and gets its external MAC; traffic to that MAC reaches the VM at its own', () => {
    io.deliver(HOST, arpFrame(GW_MAC, GATEWAY, vmIp));
    p.drain(seg.hostLink);
    const [reply] = io.take(HOST);
    assert.deepEqual([...reply.subarray(22, 28)], [...EXT_MAC]);
    assert.deepEqual([...reply.subarray(6, 12)], [...EXT_MAC]);
    const f = ipFrame(GW_MAC, EXT_MAC, GATEWAY, vmIp, IpProto.UDP);
    io.deliver(HOST, f);
    p.drain(seg.hostLink);
    const expected = Uint8Array.from(f);
    expected.set(VM_MAC, 0);
    assert.deepEqual(io.take(VM), [expected]);
    // The VM's internal MAC means nothing on the host link.
    io.deliver(HOST, ipFrame(GW_MAC, VM_MAC, GATEWAY, vmIp, IpProto.UDP));
    p.drain(seg.hostLink);
    assert.deepEqual(io.take(VM), []);
    assert.equal(drops()['host-dst-not-a-vm'], 1);
  });

  const bad: Array<[string, () => Uint8Array, string]> = [
    [
      'a forged Ethernet source',
      () => ipFrame(OTHER_MAC, GW_MAC, vmIp, GATEWAY, IpProto.UDP),
      'src-mac-spoofed',
    ],
    [
      'a forged IPv4 source',
      () => ipFrame(VM_MAC, GW_MAC, vmIp + 1, GATEWAY, IpProto.UDP),
      'ipv4-src-spoofed',
    ],
    ['ARP with a forged sender IP', () => arpFrame(VM_MAC, vmIp + 1, GATEWAY), 'arp-sender-spoofed'],
    ['ARP for another address', () => arpFrame(VM_MAC, vmIp, GATEWAY + 5), 'arp-target-not-gateway'],
    ['a runt', () => new Uint8Array(10), 'frame-too-short'],
    [
      'IPv6 on a network without it (--ipv6 off)',
      () => withType(ipFrame(VM_MAC, GW_MAC, vmIp, GATEWAY, IpProto.UDP), EtherType.IPV6),
      'ipv6-off',
    ],
    [
      'a VLAN tag',
      () => withType(ipFrame(VM_MAC, GW_MAC, vmIp, GATEWAY, IpProto.UDP), EtherType.VLAN),
      'vlan-tagged',
    ],
    ['LLDP', () => withType(ipFrame(VM_MAC, GW_MAC, vmIp, GATEWAY, IpProto.UDP), EtherType.LLDP), 'lldp'],
    [
      'an 802.3 frame (STP)',
      () => withType(ipFrame(VM_MAC, GW_MAC, vmIp, GATEWAY, IpProto.UDP), 0x26),
      'not-ethernet-ii',
    ],
    [
      'an unknown EtherType',
      () => withType(ipFrame(VM_MAC, GW_MAC, vmIp, GATEWAY, IpProto.UDP), 0x1234),
      'ethertype-unknown',
    ],
    [
      'a bad IPv4 checksum',
      () => corrupt(ipFrame(VM_MAC, GW_MAC, vmIp, GATEWAY, IpProto.UDP), 24),
      'ipv4-bad-checksum',
    ],
    [
      'a total length past the frame',
      () => setU16(ipFrame(VM_MAC, GW_MAC, vmIp, GATEWAY, IpProto.UDP), 16, 900),
      'ipv4-bad-total-length',
    ],
    [
      'a destination beyond the gateway',
      () => ipFrame(VM_MAC, GW_MAC, vmIp, 0x08080808, IpProto.UDP),
      'no-route',
    ],
    [
      'a DHCP message with a forged chaddr',
      () => forgeChaddr(dhcpFrame(VM_MAC, 3, DhcpType.DISCOVER)),
      'dhcp-chaddr-spoofed',
    ],
    [
      'a DHCP message with a bad UDP checksum',
      () => corrupt(dhcpFrame(VM_MAC, 3, DhcpType.DISCOVER), 300),
      'udp-bad-checksum',
    ],
    [
      'a relayed DHCP message',
      () => setU16(setU16(dhcpFrame(VM_MAC, 3, DhcpType.DISCOVER), 66, 0x0a00), 40, 0),
      'dhcp-relayed',
    ],
  ];
  for (const [name, make, reason] of bad) {
    test(`${name} is dropped as ${reason}, and nothing is sent`, () => {
      fromVm(make());
      assert.deepEqual(drops(), { [reason]: 1 });
      assert.deepEqual(io.take(VM), []);
      assert.deepEqual(io.take(HOST), []);
    });
  }

  test('a frame longer than a slot is dropped as too long', () => {
    const io2 = {
      recv: (_port: number, _b: number, _s: number, _m: number, lens: Uint32Array) => {
        lens[0] = STRIDE + 1;
        return 1;
      },
      send: () => 0,
    };
    const p2 = new Pipeline(io2);
    const port = new Port(7, 'x', BATCH, () => {});
    p2.add(port, { frame: () => assert.fail('handled'), failed: () => {} });
    p2.drain(port);
    assert.equal(p2.drops[Drop.OVERSIZE], 1);
  });
});

/** Puts another client's MAC in chaddr (UDP offset 28 of the BOOTP message) and drops the UDP checksum. */
function forgeChaddr(f: Uint8Array): Uint8Array {
  f.set(OTHER_MAC, 14 + 20 + 8 + 28);
  return setU16(f, 14 + 20 + 6, 0);
}

function withType(f: Uint8Array, type: number): Uint8Array {
  new DataView(f.buffer).setUint16(12, type);
  return f;
}

function corrupt(f: Uint8Array, at: number): Uint8Array {
  f[at] ^= 0xff;
  return f;
}

function setU16(f: Uint8Array, at: number, v: number): Uint8Array {
  new DataView(f.buffer).setUint16(at, v);
  return f;
}
