// Several VMs on one network, in-process: external MACs, clones of one MAC, VM-to-VM only when a VM's rules
// allow it, host-only and disconnected VMs, and reserved addresses.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AttType } from '../../src/net/attachment.js';
import { DestinationPolicy } from '../../src/policy/destinations.js';
import { RuleTable, Verdict } from '../../src/policy/rules.js';
import { Port } from '../../src/ports/port.js';
import { dropsByName } from '../../src/stats/drops.js';
import { formatIpv4, formatMac, parseCidr, parseMac } from '../../src/wire/addr.js';
import { ArpOp } from '../../src/wire/arp.js';
import { DhcpType } from '../../src/wire/dhcp.js';
import { IcmpType } from '../../src/wire/icmp.js';
import { IpProto } from '../../src/wire/ipv4.js';
import { externalMacOf, identity } from '../lib/attachments.js';
import { arpFrame, dhcpFrame, ipFrame } from '../lib/frames.js';
import { addVm, type InProcess, inProcessNetwork, PortId } from '../lib/in-process.js';

const MAC_A = parseMac('52:54:00:00:0a:01')!;
const MAC_B = parseMac('52:54:00:00:0b:01')!;
const GW_MAC = parseMac('02:00:00:00:00:fe')!;
const GATEWAY = 0xc0a84001;
const WORLD = 0xcb00710a;
const B = 7;

function dropsOf(net: InProcess): Record<string, number> {
  return dropsByName(net.p.drops);
}

/** A policy allowing `cidrs` (and reject mode when asked). */
function allowing(cidrs: string[], reject = false): DestinationPolicy {
  const t = new RuleTable();
  for (const c of cidrs) t.add(parseCidr(c)!, Verdict.ALLOW);
  return new DestinationPolicy(t, GATEWAY, reject);
}

function send(net: InProcess, port: Port, frame: Uint8Array): void {
  net.io.deliver(port.id, frame);
  net.p.drain(port);
}

describe('two VMs on one network', () => {
  test('by default neither reaches the other: no ARP answer, no delivery', () => {
    const net = inProcessNetwork({ vmMac: MAC_A, gatewayMac: GW_MAC });
    const b = addVm(net, B, MAC_B, 'b');
    send(net, net.vmPort, arpFrame(MAC_A, net.att.ip, b.att.ip));
    send(net, net.vmPort, ipFrame(MAC_A, externalMacOf(MAC_B), net.att.ip, b.att.ip, IpProto.UDP));
    assert.deepEqual(net.io.take(PortId.VM), []);
    assert.deepEqual(net.io.take(B), []);
    assert.equal(dropsOf(net)['arp-target-not-gateway'], 1);
    assert.equal(dropsOf(net)['dst-other-vm'], 1);
  });

  test("a VM whose rules allow the other's address reaches it, as a switch would, by external MACs", () => {
    const net = inProcessNetwork({ vmMac: MAC_A, gatewayMac: GW_MAC, allow: ['192.168.64.0/24'] });
    const b = addVm(net, B, MAC_B, 'b', { policy: allowing([]) });
    send(net, net.vmPort, arpFrame(MAC_A, net.att.ip, b.att.ip));
    const [reply] = net.io.take(PortId.VM);
    assert.equal(new DataView(reply.buffer).getUint16(20), ArpOp.REPLY);
    assert.equal(formatMac(reply, 22), formatMac(externalMacOf(MAC_B)), 'B is known by its external MAC');
    const f = ipFrame(MAC_A, externalMacOf(MAC_B), net.att.ip, b.att.ip, IpProto.UDP);
    send(net, net.vmPort, f);
    const [got] = net.io.take(B);
    assert.equal(formatMac(got, 0), formatMac(MAC_B), "to B's own MAC");
    assert.equal(formatMac(got, 6), formatMac(externalMacOf(MAC_A)), "from A's external MAC");
    assert.deepEqual(got.subarray(12), f.subarray(12), 'the packet itself unchanged');
    // B's rules do not allow A: B's answer goes nowhere, so a conversation needs both to allow it.
    send(net, b.port, ipFrame(MAC_B, externalMacOf(MAC_A), b.att.ip, net.att.ip, IpProto.UDP));
    assert.deepEqual(net.io.take(PortId.VM), []);
    assert.equal(dropsOf(net)['dst-other-vm'], 1);
  });

  test("a frame for the other VM's internal MAC, or for an address no VM holds, is dropped", () => {
    const net = inProcessNetwork({ vmMac: MAC_A, gatewayMac: GW_MAC, allow: ['192.168.64.0/24'] });
    const b = addVm(net, B, MAC_B, 'b');
    send(net, net.vmPort, ipFrame(MAC_A, MAC_B, net.att.ip, b.att.ip, IpProto.UDP));
    send(net, net.vmPort, ipFrame(MAC_A, GW_MAC, net.att.ip, 0xc0a840c8, IpProto.UDP));
    assert.deepEqual(net.io.take(B), []);
    assert.equal(dropsOf(net)['dst-mac-not-gateway'], 1);
    assert.equal(dropsOf(net)['dst-no-such-vm'], 1);
  });

  test('in reject mode a blocked VM-to-VM packet is refused from the address it was sent to', () => {
    const net = inProcessNetwork({ vmMac: MAC_A, gatewayMac: GW_MAC, reject: true });
    const b = addVm(net, B, MAC_B, 'b');
    send(net, net.vmPort, ipFrame(MAC_A, GW_MAC, net.att.ip, b.att.ip, IpProto.ICMP));
    const [answer] = net.io.take(PortId.VM);
    const dv = new DataView(answer.buffer);
    assert.equal(answer[34], IcmpType.DEST_UNREACHABLE);
    assert.equal(answer[35], 13, 'administratively prohibited');
    assert.equal(formatIpv4(dv.getUint32(26)), formatIpv4(b.att.ip));
    assert.deepEqual(net.io.take(B), []);
  });
});

describe('clones: VMs with one internal MAC', () => {
  test('each gets its own address and external MAC; the host reaches each, and only it', () => {
    const net = inProcessNetwork({ vmMac: MAC_A, gatewayMac: GW_MAC });
    const ext2 = Uint8Array.of(0x02, 0, 0, 0, 0, 0x22);
    const clone = addVm(net, B, MAC_A, 'vm#2', { extMac: ext2 });
    const offered = clone.att.ip;
    assert.notEqual(offered, net.att.ip, "not the first clone's address");
    // The host ARPs for each address and gets each clone's own external MAC.
    net.io.deliver(PortId.HOST, arpFrame(GW_MAC, GATEWAY, net.att.ip), arpFrame(GW_MAC, GATEWAY, offered));
    net.p.drain(net.hostPort);
    const answers = net.io.take(PortId.HOST).map((f) => formatMac(f, 22));
    assert.deepEqual(answers, [formatMac(externalMacOf(MAC_A)), formatMac(ext2)]);
    send(net, net.hostPort, ipFrame(GW_MAC, ext2, GATEWAY, offered, IpProto.UDP));
    assert.equal(net.io.take(B).length, 1);
    assert.deepEqual(net.io.take(PortId.VM), [], 'the other clone gets nothing');
  });
});

describe('VM types', () => {
  test('a host-only VM reaches the gateway but not the world', () => {
    const net = inProcessNetwork({
      vmMac: MAC_A,
      gatewayMac: GW_MAC,
      allow: ['203.0.113.0/24'],
      nat: { addr: 0xc6336402, lo: 61000, hi: 61999, perVm: 64 },
    });
    const b = addVm(net, B, MAC_B, 'b', { type: AttType.HOST });
    send(net, b.port, ipFrame(MAC_B, GW_MAC, b.att.ip, WORLD, IpProto.UDP));
    assert.deepEqual(net.io.take(PortId.RAW), []);
    assert.equal(dropsOf(net)['dst-beyond-host-only-vm'], 1);
    send(net, b.port, ipFrame(MAC_B, GW_MAC, b.att.ip, GATEWAY, IpProto.ICMP));
    assert.equal(net.io.take(B).length, 1, 'the gateway answers its ping');
    // A shared VM on the same network does reach the world.
    send(net, net.vmPort, ipFrame(MAC_A, GW_MAC, net.att.ip, WORLD, IpProto.UDP));
    assert.equal(net.io.take(PortId.RAW).length, 1);
  });

  test('a disconnected VM is answered nothing and reached by nothing', () => {
    const net = inProcessNetwork({ vmMac: MAC_A, gatewayMac: GW_MAC });
    const port = new Port(B, 'off', 1024, () => {});
    const off = net.seg.attach(port, identity(MAC_B, 'off', { type: AttType.DISCONNECTED }));
    send(net, port, dhcpFrame(MAC_B, 1, DhcpType.DISCOVER));
    send(net, port, arpFrame(MAC_B, 0, GATEWAY));
    assert.deepEqual(net.io.take(B), []);
    assert.equal(off.ip, 0);
    assert.equal(dropsOf(net)['vm-disconnected'], 2);
  });
});

describe('reservations', () => {
  test('the reserved address goes to its MAC at attach (static guests work without DHCP), never to another', () => {
    const net = inProcessNetwork({ vmMac: MAC_A, gatewayMac: GW_MAC });
    const reserved = 0xc0a84032; // 192.168.64.50
    net.seg.leases.reserve(formatMac(MAC_B), reserved);
    const port = new Port(B, 'b', 1024, () => {});
    const b = net.seg.attach(port, identity(MAC_B, 'b'));
    assert.equal(b.ip, reserved, 'usable at once, before any DHCP');
    send(net, port, ipFrame(MAC_B, GW_MAC, reserved, GATEWAY, IpProto.ICMP));
    assert.equal(net.io.take(B).length, 1, 'a static guest is answered');
    // DHCP gives it the same address.
    send(net, port, dhcpFrame(MAC_B, 9, DhcpType.DISCOVER));
    const [offer] = net.io.take(B);
    assert.equal(new DataView(offer.buffer).getUint32(42 + 16), reserved);
    // Another VM asking for it is not given it.
    const c = addVm(net, 8, parseMac('52:54:00:00:0c:01')!, 'c');
    assert.notEqual(c.att.ip, reserved);
    assert.equal(net.seg.leases.available('c', '52:54:00:00:0c:01', reserved, Date.now()), false);
  });

  test("an attached static VM's reservation does not expire: it never renews", () => {
    const net = inProcessNetwork({ vmMac: MAC_A, gatewayMac: GW_MAC });
    net.seg.leases.reserve(formatMac(MAC_B), 0xc0a84033);
    const b = net.seg.attach(new Port(B, 'b', 1024, () => {}), identity(MAC_B, 'b'));
    const later = Date.now() + 3600_000;
    net.seg.tick(later - 1000, Math.floor(later / 1000));
    net.seg.tick(later, Math.floor(later / 1000));
    assert.equal(b.ip, 0xc0a84033);
  });
});
