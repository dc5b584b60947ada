// The bridge network's frame paths in-process: a VM's frames to the LAN from its external MAC, the LAN's to
// the VM at its own, DHCP relayed and snooped both ways, broadcast fan-out and VM-to-VM switching, the
// source checks, the offloads of the capture socket, and snooped leases surviving a restart.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, test } from 'node:test';
import type { Attachment } from '../../src/net/attachment.js';
import { DestinationPolicy } from '../../src/policy/destinations.js';
import { RuleTable, Verdict } from '../../src/policy/rules.js';
import type { Port } from '../../src/ports/port.js';
import { DROP_NAMES, dropsByName } from '../../src/stats/drops.js';
import { monotonicMs } from '../../src/util/clock.js';
import { formatMac, parseCidr, parseMac } from '../../src/wire/addr.js';
import { ArpOp } from '../../src/wire/arp.js';
import { checksum, pseudoHeader } from '../../src/wire/checksum.js';
import { DhcpOption, DhcpType } from '../../src/wire/dhcp.js';
import * as ipv4 from '../../src/wire/ipv4.js';
import { IpProto } from '../../src/wire/ipv4.js';
import { TcpFlag } from '../../src/wire/tcp.js';
import { VNET, VNET_F_NEEDS_CSUM } from '../../src/wire/vnet.js';
import { externalMacOf } from '../lib/attachments.js';
import { arpFrame, dhcpFrame, dhcpReply, dhcpRequest, dhcpServerFrame, ipFrame } from '../lib/frames.js';
import {
  addBridgedVm,
  fromLanFrame,
  type InProcessBridge,
  inProcessBridge,
  LAN_SERVER,
  LanId,
} from '../lib/in-process.js';

const VM_MAC = parseMac('52:54:00:b0:00:01')!;
const EXT = externalMacOf(VM_MAC);
const LAN_HOST_MAC = parseMac('02:33:00:00:00:0a')!;
const LAN_HOST = 0x0a4d000a; // 10.77.0.10
const VM_IP = 0x0a4d0064; // 10.77.0.100
const BCAST = parseMac('ff:ff:ff:ff:ff:ff')!;
const VM = 31;
const PEER = 32;
const { TX, RX } = LanId;

const mac = (f: Uint8Array, at: number) => formatMac(f, at);
const u16 = (f: Uint8Array, at: number) => new DataView(f.buffer, f.byteOffset).getUint16(at);
const u32 = (f: Uint8Array, at: number) => new DataView(f.buffer, f.byteOffset).getUint32(at);
const be = (v: number) => [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];

/** Whether the UDP datagram of an Ethernet/IPv4 frame has a valid checksum. */
function udpChecksumOk(f: Uint8Array): boolean {
  const dv = new DataView(f.buffer, f.byteOffset);
  const l4 = 14 + ipv4.headerLen(dv, 14);
  const len = dv.getUint16(l4 + 4);
  return checksum(f, l4, len, pseudoHeader(ipv4.src(dv, 14), ipv4.dst(dv, 14), IpProto.UDP, len)) === 0;
}

describe('bridge network', () => {
  let net: InProcessBridge;
  let vmPort: Port;
  let att: Attachment;
  const drops = () => dropsByName(net.p.drops);
  const fromVm = (f: Uint8Array, port = vmPort) => {
    net.io.deliver(port.id, f);
    net.p.drain(port);
  };
  const fromLan = (f: Uint8Array) => {
    net.io.deliver(RX, fromLanFrame(f));
    net.p.drain(net.rx);
  };

  beforeEach(() => {
    net = inProcessBridge();
    ({ port: vmPort, att } = addBridgedVm(net, VM, VM_MAC, 'vm', VM_IP));
    net.p.drops.fill(0);
  });

  test('the VM gets its address from the LAN server, which sees its external MAC only', () => {
    const fresh = inProcessBridge();
    fresh.io.keep = true;
    const { port } = addBridgedVm(fresh, VM, VM_MAC, 'vm', 0);
    fresh.io.deliver(VM, dhcpFrame(VM_MAC, 77, DhcpType.DISCOVER, [[DhcpOption.CLIENT_ID, [1, ...VM_MAC]]]));
    fresh.p.drain(port);
    const [out] = fresh.io.take(TX);
    assert.equal(mac(out, 6), formatMac(EXT));
    const msg = dhcpRequest(out)!;
    assert.equal(formatMac(msg.chaddr), formatMac(EXT));
    // A client identifier made of the MAC names the external one too, so clones are two clients.
    assert.deepEqual([...msg.options.get(DhcpOption.CLIENT_ID)!], [1, ...EXT]);
    assert.ok(udpChecksumOk(out));
    // The server's broadcast OFFER comes back to the VM at its own MAC, still broadcast.
    fresh.io.deliver(
      RX,
      fromLanFrame(
        dhcpServerFrame(LAN_SERVER.mac, LAN_SERVER.ip, EXT, 77, DhcpType.OFFER, VM_IP, [
          [DhcpOption.LEASE_TIME, be(120)],
          [DhcpOption.CLIENT_ID, [1, ...EXT]],
        ]),
      ),
    );
    fresh.p.drain(fresh.rx);
    const [offer] = fresh.io.take(VM);
    assert.equal(mac(offer, 0), 'ff:ff:ff:ff:ff:ff');
    const reply = dhcpReply(offer)!.msg;
    assert.equal(formatMac(reply.chaddr), formatMac(VM_MAC));
    assert.deepEqual([...reply.options.get(DhcpOption.CLIENT_ID)!], [1, ...VM_MAC]);
    assert.ok(udpChecksumOk(offer));
  });

  test('an ACK binds the address until the lease time and is logged; the table holds the external MAC', () => {
    assert.equal(att.ip, VM_IP);
    const lease = net.seg.leases.get('vm')!;
    assert.equal(lease.mac, formatMac(EXT));
    assert.ok(Math.abs(lease.expires - (monotonicMs() + LAN_SERVER.lease * 1000)) < 2000);
    assert.match(net.log.join(''), /lease bound ip=10\.77\.0\.100 .*server=10\.77\.0\.1/);
    assert.deepEqual(net.memberships, [[formatMac(EXT), true]]);
  });

  test("the VM's IPv4 goes to the LAN from its external MAC, unchanged otherwise", () => {
    const f = ipFrame(VM_MAC, LAN_HOST_MAC, VM_IP, LAN_HOST, IpProto.UDP);
    fromVm(f);
    const expected = Uint8Array.from(f);
    expected.set(EXT, 6);
    assert.deepEqual(net.io.take(TX), [expected]);
  });

  test('private destinations are allowed; a --block rule still applies', () => {
    fromVm(ipFrame(VM_MAC, LAN_HOST_MAC, VM_IP, 0xc0a80105, IpProto.UDP));
    assert.equal(net.io.take(TX).length, 1);
    const rules = new RuleTable();
    rules.add(parseCidr('192.168.0.0/16')!, Verdict.BLOCK);
    const { port } = addBridgedVm(net, PEER, parseMac('52:54:00:b0:00:02')!, 'blocked', VM_IP + 1, {
      policy: new DestinationPolicy(rules, net.cfg.gateway),
    });
    fromVm(ipFrame(parseMac('52:54:00:b0:00:02')!, LAN_HOST_MAC, VM_IP + 1, 0xc0a80105, IpProto.UDP), port);
    assert.equal(net.io.take(TX).length, 0);
    assert.equal(drops()['dst-blocked-by-policy'], 1);
  });

  test('with --reject a blocked destination answers the VM itself, and nothing reaches the LAN', () => {
    const rules = new RuleTable();
    rules.add(parseCidr('10.77.0.10/32')!, Verdict.BLOCK);
    const mac2 = parseMac('52:54:00:b0:00:0f')!;
    const { port } = addBridgedVm(net, PEER, mac2, 'rejecting', VM_IP + 1, {
      policy: new DestinationPolicy(rules, net.cfg.gateway, true),
    });
    net.io.deliver(PEER, ipFrame(mac2, LAN_HOST_MAC, VM_IP + 1, LAN_HOST, IpProto.ICMP));
    net.p.drain(port);
    assert.deepEqual(net.io.take(TX), []);
    const [answer] = net.io.take(PEER);
    assert.equal(mac(answer, 0), formatMac(mac2));
    assert.equal(u32(answer, 26), LAN_HOST);
    assert.equal(answer[34], 3); // destination unreachable
    assert.equal(answer[35], 13); // administratively prohibited
  });

  const bad: Array<[string, () => Uint8Array, string]> = [
    [
      'a forged IPv4 source',
      () => ipFrame(VM_MAC, LAN_HOST_MAC, VM_IP + 9, LAN_HOST, IpProto.UDP),
      'ipv4-src-spoofed',
    ],
    [
      'a forged Ethernet source',
      () => ipFrame(LAN_HOST_MAC, LAN_HOST_MAC, VM_IP, LAN_HOST, IpProto.UDP),
      'src-mac-spoofed',
    ],
    ['ARP for another sender address', () => arpFrame(VM_MAC, VM_IP + 9, LAN_HOST), 'arp-sender-spoofed'],
    ['an ARP reply from 0.0.0.0', () => arpFrame(VM_MAC, 0, LAN_HOST, ArpOp.REPLY), 'arp-sender-spoofed'],
    [
      'a DHCP server in the VM',
      () => {
        const f = dhcpFrame(VM_MAC, 1, DhcpType.OFFER);
        f[35] = 67;
        f[37] = 68;
        return f;
      },
      'dhcp-server-message-from-vm',
    ],
    [
      'DHCP with a foreign chaddr',
      () => {
        const f = dhcpFrame(VM_MAC, 1, DhcpType.DISCOVER).fill(0x77, 14 + 28 + 28, 14 + 28 + 34);
        // No UDP checksum, rather than a wrong one.
        f[14 + 20 + 6] = 0;
        f[14 + 20 + 7] = 0;
        return f;
      },
      'dhcp-chaddr-spoofed',
    ],
    [
      'IPv6',
      () => {
        const f = ipFrame(VM_MAC, LAN_HOST_MAC, VM_IP, LAN_HOST, IpProto.UDP);
        f[12] = 0x86;
        f[13] = 0xdd;
        return f;
      },
      'ipv6-unsupported',
    ],
  ];
  for (const [what, frame, reason] of bad) {
    test(`${what} never reaches the LAN (${reason})`, () => {
      fromVm(frame());
      assert.deepEqual(net.io.take(TX), []);
      assert.deepEqual(drops(), { [reason]: 1 });
    });
  }

  test('before a lease, only DHCP and ARP probes leave', () => {
    const other = parseMac('52:54:00:b0:00:03')!;
    const { port } = addBridgedVm(net, PEER, other, 'new', 0);
    fromVm(ipFrame(other, LAN_HOST_MAC, 0, LAN_HOST, IpProto.UDP), port);
    assert.equal(drops()['ipv4-before-lease'], 1);
    fromVm(arpFrame(other, 0, VM_IP + 5), port);
    const [probe] = net.io.take(TX);
    assert.equal(mac(probe, 6), formatMac(externalMacOf(other)));
    assert.equal(mac(probe, 22), formatMac(externalMacOf(other)));
  });

  test('the VM asks and answers ARP on the LAN as its external MAC', () => {
    fromVm(arpFrame(VM_MAC, VM_IP, LAN_HOST));
    const [request] = net.io.take(TX);
    assert.equal(mac(request, 6), formatMac(EXT));
    assert.equal(mac(request, 22), formatMac(EXT));
    // The LAN host asks for the VM: every VM hears the broadcast as it is.
    const ask = arpFrame(LAN_HOST_MAC, LAN_HOST, VM_IP);
    fromLan(ask);
    assert.deepEqual(net.io.take(VM), [ask.subarray(0, 42)]);
    // The VM's answer: a reply from its own address, at the LAN host's MAC.
    const answer = arpFrame(VM_MAC, VM_IP, LAN_HOST, ArpOp.REPLY);
    answer.set(LAN_HOST_MAC, 0);
    answer.set(LAN_HOST_MAC, 32);
    fromVm(answer);
    const [out] = net.io.take(TX);
    assert.equal(mac(out, 0), formatMac(LAN_HOST_MAC));
    assert.equal(mac(out, 22), formatMac(EXT));
    assert.equal(u16(out, 20), ArpOp.REPLY);
  });

  test("the LAN's unicast reaches the VM at its own MAC; an ARP reply's target too", () => {
    const f = ipFrame(LAN_HOST_MAC, EXT, LAN_HOST, VM_IP, IpProto.UDP);
    fromLan(f);
    const expected = Uint8Array.from(f);
    expected.set(VM_MAC, 0);
    assert.deepEqual(net.io.take(VM), [expected]);
    const reply = arpFrame(LAN_HOST_MAC, LAN_HOST, VM_IP, ArpOp.REPLY);
    reply.set(EXT, 0);
    reply.set(EXT, 32);
    fromLan(reply);
    const [got] = net.io.take(VM);
    assert.equal(mac(got, 0), formatMac(VM_MAC));
    assert.equal(mac(got, 32), formatMac(VM_MAC));
  });

  test('what the LAN sends to nobody, or from a VM, or of another kind, is dropped and counted', () => {
    fromLan(ipFrame(LAN_HOST_MAC, VM_MAC, LAN_HOST, VM_IP, IpProto.UDP));
    fromLan(ipFrame(EXT, BCAST, VM_IP, 0xffffffff, IpProto.UDP));
    const v6 = ipFrame(LAN_HOST_MAC, EXT, LAN_HOST, VM_IP, IpProto.UDP);
    v6[12] = 0x86;
    v6[13] = 0xdd;
    fromLan(v6);
    fromLan(new Uint8Array(8));
    assert.deepEqual(net.io.take(VM), []);
    assert.deepEqual(drops(), {
      'lan-dst-not-a-vm': 1,
      'lan-src-is-a-vm': 1,
      'ipv6-unsupported': 1,
      'frame-too-short': 1,
    });
  });

  test('two clones with one internal MAC are two clients with two addresses', () => {
    const ext2 = parseMac('02:00:00:00:ca:fe')!;
    const clone = addBridgedVm(net, PEER, VM_MAC, 'vm#2', VM_IP + 1, { extMac: ext2 });
    assert.equal(att.ip, VM_IP);
    assert.equal(clone.att.ip, VM_IP + 1);
    // An OFFER for one clone's transaction never reaches the other.
    fromVm(dhcpFrame(VM_MAC, 99, DhcpType.DISCOVER), clone.port);
    net.io.take(TX);
    fromLan(dhcpServerFrame(LAN_SERVER.mac, LAN_SERVER.ip, ext2, 99, DhcpType.OFFER, VM_IP + 1));
    assert.equal(net.io.take(VM).length, 0);
    assert.equal(net.io.take(PEER).length, 1);
  });

  test('a reply to no transaction of the VM is dropped and binds nothing', () => {
    fromLan(
      dhcpServerFrame(LAN_SERVER.mac, LAN_SERVER.ip, EXT, 12345, DhcpType.ACK, VM_IP + 7, [
        [DhcpOption.LEASE_TIME, be(60)],
      ]),
    );
    fromLan(
      dhcpServerFrame(LAN_SERVER.mac, LAN_SERVER.ip, parseMac('02:99:00:00:00:01')!, 1, DhcpType.ACK, 1),
    );
    assert.equal(att.ip, VM_IP);
    assert.deepEqual(net.io.take(VM), []);
    assert.deepEqual(drops(), { 'dhcp-reply-unsolicited': 1, 'lan-dhcp-reply-not-for-a-vm': 1 });
  });

  test('RELEASE, DECLINE and NAK end the binding; the VM is cut off until it has another', () => {
    const release = dhcpFrame(VM_MAC, 5, DhcpType.RELEASE);
    new DataView(release.buffer).setUint32(14 + 28 + 12, VM_IP);
    // ciaddr changed: the UDP checksum is made again by zeroing it (no checksum).
    new DataView(release.buffer).setUint16(14 + 20 + 6, 0);
    fromVm(release);
    assert.equal(att.ip, 0);
    assert.equal(net.seg.leases.get('vm'), undefined);
    assert.equal(dhcpRequest(net.io.take(TX)[0])?.type, DhcpType.RELEASE);
    fromVm(ipFrame(VM_MAC, LAN_HOST_MAC, VM_IP, LAN_HOST, IpProto.UDP));
    assert.equal(drops()['ipv4-before-lease'], 1);

    const again = addBridgedVm(net, PEER, parseMac('52:54:00:b0:00:04')!, 'again', VM_IP + 2);
    fromVm(
      dhcpFrame(parseMac('52:54:00:b0:00:04')!, 6, DhcpType.DECLINE, [
        [DhcpOption.REQUESTED_IP, be(VM_IP + 2)],
      ]),
      again.port,
    );
    assert.equal(again.att.ip, 0);
    assert.equal(dhcpRequest(net.io.take(TX)[0])?.type, DhcpType.DECLINE);

    const third = parseMac('52:54:00:b0:00:05')!;
    const t = addBridgedVm(net, 33, third, 'third', VM_IP + 3);
    fromVm(dhcpFrame(third, 7, DhcpType.REQUEST), t.port);
    fromLan(dhcpServerFrame(LAN_SERVER.mac, LAN_SERVER.ip, externalMacOf(third), 7, DhcpType.NAK, 0));
    assert.equal(t.att.ip, 0);
    assert.equal(dhcpReply(net.io.take(33).at(-1)!)?.msg.type, DhcpType.NAK);
  });

  test('a VM that goes away has its lease released to the server that gave it, under its client identifier', () => {
    const fresh = inProcessBridge();
    fresh.io.keep = true;
    const { port, att: a } = addBridgedVm(fresh, VM, VM_MAC, 'vm', 0);
    const id: Array<[number, number[]]> = [[DhcpOption.CLIENT_ID, [1, ...VM_MAC]]];
    for (const [type, reply] of [
      [DhcpType.DISCOVER, DhcpType.OFFER],
      [DhcpType.REQUEST, DhcpType.ACK],
    ] as const) {
      fresh.io.deliver(VM, dhcpFrame(VM_MAC, 78, type, id));
      fresh.p.drain(port);
      fresh.io.deliver(
        RX,
        fromLanFrame(
          dhcpServerFrame(LAN_SERVER.mac, LAN_SERVER.ip, EXT, 78, reply, VM_IP, [
            [DhcpOption.LEASE_TIME, be(120)],
          ]),
        ),
      );
      fresh.p.drain(fresh.rx);
    }
    assert.equal(a.ip, VM_IP);
    fresh.io.take(TX);
    fresh.seg.detach(a, true);
    const sent = fresh.io.take(TX);
    assert.equal(sent.length, 1);
    const [out] = sent;
    assert.equal(mac(out, 0), formatMac(LAN_SERVER.mac));
    assert.equal(mac(out, 6), formatMac(EXT));
    assert.equal(u32(out, 14 + 12), VM_IP);
    assert.equal(u32(out, 14 + 16), LAN_SERVER.ip);
    assert.ok(udpChecksumOk(out));
    const msg = dhcpRequest(out)!;
    assert.equal(msg.type, DhcpType.RELEASE);
    assert.equal(msg.ciaddr, VM_IP);
    assert.equal(formatMac(msg.chaddr.subarray(0, 6)), formatMac(EXT));
    assert.deepEqual([...msg.options.get(DhcpOption.SERVER_ID)!], be(LAN_SERVER.ip));
    assert.deepEqual([...msg.options.get(DhcpOption.CLIENT_ID)!], [1, ...EXT]);
    assert.match(fresh.log.join(''), /lease released on the LAN ip=10\.77\.0\.100 server=10\.77\.0\.1/);
  });

  test('a VM detached for a restart keeps its lease: nothing is released', () => {
    net.io.keep = true;
    net.seg.detach(att, false);
    assert.deepEqual(net.io.take(TX), []);
    assert.equal(net.seg.leases.get('vm')?.ip, VM_IP);
  });

  test('a binding ends when its lease runs out', () => {
    net.seg.tick(Date.now() + (LAN_SERVER.lease + 1) * 1000, 0);
    assert.equal(att.ip, 0);
    assert.match(net.log.join(''), /lease expired ip=10\.77\.0\.100/);
  });

  test('an address the server gives another VM is taken from the one that had it', () => {
    const other = parseMac('52:54:00:b0:00:06')!;
    const o = addBridgedVm(net, PEER, other, 'other', VM_IP);
    assert.equal(o.att.ip, VM_IP);
    assert.equal(att.ip, 0);
    assert.equal(net.seg.vmAt(VM_IP), o.att);
  });

  test('a broadcast from one VM reaches the LAN and every other VM, from the same bytes', () => {
    const peerMac = parseMac('52:54:00:b0:00:07')!;
    const peer = addBridgedVm(net, PEER, peerMac, 'peer', VM_IP + 4);
    fromVm(arpFrame(VM_MAC, VM_IP, VM_IP + 4));
    const [lan] = net.io.take(TX);
    assert.deepEqual(net.io.take(PEER), [lan]);
    assert.deepEqual(net.io.take(VM), []);
    // The peer answers at the VM's external MAC: switched to the VM at its own, never onto the LAN.
    const answer = arpFrame(peerMac, VM_IP + 4, VM_IP, ArpOp.REPLY);
    answer.set(EXT, 0);
    answer.set(EXT, 32);
    fromVm(answer, peer.port);
    assert.deepEqual(net.io.take(TX), []);
    const [got] = net.io.take(VM);
    assert.equal(mac(got, 0), formatMac(VM_MAC));
    assert.equal(mac(got, 6), formatMac(externalMacOf(peerMac)));
    assert.equal(mac(got, 32), formatMac(VM_MAC));
  });

  test('a frame too big for the LAN is dropped; one for another VM is not', () => {
    const small = inProcessBridge({ mtu: 1000 });
    small.io.keep = true;
    const a = addBridgedVm(small, VM, VM_MAC, 'a', VM_IP);
    small.io.deliver(VM, ipFrame(VM_MAC, LAN_HOST_MAC, VM_IP, LAN_HOST, IpProto.UDP, 1514));
    small.p.drain(a.port);
    assert.deepEqual(small.io.take(TX), []);
    assert.equal(small.p.drops[DROP_NAMES.indexOf('too-big-for-lan')], 1);
  });

  test('a checksum the LAN sender left to offload is filled in; an aggregate is cut into segments', () => {
    const f = ipFrame(LAN_HOST_MAC, EXT, LAN_HOST, VM_IP, IpProto.UDP, 200);
    const l4 = 34;
    const dv = new DataView(f.buffer);
    dv.setUint16(l4 + 6, (pseudoHeader(LAN_HOST, VM_IP, IpProto.UDP, 200 - l4) % 0xffff) & 0xffff);
    const withHdr = fromLanFrame(f);
    withHdr[VNET.FLAGS] = VNET_F_NEEDS_CSUM;
    new DataView(withHdr.buffer).setUint16(VNET.CSUM_START, l4, true);
    new DataView(withHdr.buffer).setUint16(VNET.CSUM_OFFSET, 6, true);
    net.io.deliver(RX, withHdr);
    net.p.drain(net.rx);
    assert.ok(udpChecksumOk(net.io.take(VM)[0]));

    // A TCP aggregate of 3000 bytes of payload with an MSS of 1000, as a veth peer's TSO sends it.
    const big = ipFrame(LAN_HOST_MAC, EXT, LAN_HOST, VM_IP, IpProto.TCP, 54 + 3000, TcpFlag.ACK);
    const agg = fromLanFrame(big);
    const adv = new DataView(agg.buffer);
    agg[VNET.GSO_TYPE] = 1;
    adv.setUint16(VNET.HDR_LEN, 54, true);
    adv.setUint16(VNET.GSO_SIZE, 1000, true);
    net.io.deliver(RX, agg);
    net.p.drain(net.rx);
    const segs = net.io.take(VM);
    assert.deepEqual(
      segs.map((s) => s.length),
      [1054, 1054, 1054],
    );
    for (const s of segs) {
      assert.equal(mac(s, 0), formatMac(VM_MAC));
      assert.equal(checksum(s, 14, 20), 0);
    }
  });
});

describe('bridge leases across a restart', () => {
  test('a restarted softnet knows the snooped address before any DHCP', () => {
    const dir = mkdtempSync(join(tmpdir(), 'softnet-bridge-'));
    try {
      const file = join(dir, 'lan0.bridge-leases.json');
      const first = inProcessBridge({ leaseFile: file });
      const a = addBridgedVm(first, VM, VM_MAC, 'vm', VM_IP);
      first.seg.detach(a.att, false);
      const second = inProcessBridge({ leaseFile: file });
      second.io.keep = true;
      const b = addBridgedVm(second, VM, VM_MAC, 'vm', 0);
      assert.equal(b.att.ip, VM_IP);
      second.io.deliver(VM, ipFrame(VM_MAC, LAN_HOST_MAC, VM_IP, LAN_HOST, IpProto.ICMP));
      second.p.drain(b.port);
      assert.equal(second.io.take(TX).length, 1);
      // The VM went away: its binding is forgotten, its lease released to the server the file names, and
      // its membership dropped.
      second.seg.detach(b.att, true);
      assert.equal(second.seg.leases.get('vm'), undefined);
      const release = second.io.take(TX).map(dhcpRequest);
      assert.equal(release.length, 1);
      assert.equal(release[0]?.type, DhcpType.RELEASE);
      assert.equal(release[0]?.ciaddr, VM_IP);
      assert.deepEqual(second.memberships.at(-1), [formatMac(EXT), false]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('LAN lookups by external MAC', () => {
  test('VMs whose external MACs share their last four bytes are each found, also after one leaves', () => {
    const net = inProcessBridge();
    const a = addBridgedVm(net, VM, VM_MAC, 'a', 0, { extMac: parseMac('02:01:aa:bb:cc:dd')! });
    const b = addBridgedVm(net, PEER, VM_MAC, 'b', 0, { extMac: parseMac('02:02:aa:bb:cc:dd')! });
    const c = addBridgedVm(net, 33, VM_MAC, 'c', 0, { extMac: parseMac('02:03:aa:bb:cc:dd')! });
    for (const v of [a, b, c]) assert.equal(net.lan.vmWithMac(v.att.extMac, 0), v.att);
    net.seg.detach(a.att, true);
    assert.equal(net.lan.vmWithMac(a.att.extMac, 0), undefined);
    for (const v of [b, c]) assert.equal(net.lan.vmWithMac(v.att.extMac, 0), v.att);
    net.seg.detach(c.att, true);
    assert.equal(net.lan.vmWithMac(b.att.extMac, 0), b.att);
    assert.equal(net.lan.vmWithMac(parseMac('02:04:aa:bb:cc:dd')!, 0), undefined);
  });
});
