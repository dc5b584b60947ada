// Port forwards: the forward table alone (nat/forwards.ts), then through the whole pipeline in-process,
// as the uplink's capture socket hands in what the world sends to uplink:EXT and as the VM answers from INT.

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import { NatProto } from '../../src/nat/flows.js';
import {
  type ForwardOwner,
  ForwardTable,
  MAX_FORWARDS,
  MAX_REMOTES,
  type PortForward,
} from '../../src/nat/forwards.js';
import type { NatUplink } from '../../src/nat/uplink.js';
import type { Attachment } from '../../src/net/attachment.js';
import type { Pipeline } from '../../src/pipeline/pipeline.js';
import type { FakeIo } from '../../src/ports/fake.js';
import type { Port } from '../../src/ports/port.js';
import { dropsByName } from '../../src/stats/drops.js';
import { parseMac } from '../../src/wire/addr.js';
import { IpProto } from '../../src/wire/ipv4.js';
import { TcpFlag } from '../../src/wire/tcp.js';
import { DhcpOption, DhcpType, dhcpFrame } from '../lib/frames.js';
import { inProcessNetwork, PortId } from '../lib/in-process.js';
import {
  assertChecksums,
  bytes,
  captureFrame,
  ethFrame,
  icmpMsg,
  ipv4,
  type Parsed,
  parse,
  tcp,
  udp,
  udpDgram,
  view,
} from '../lib/packets.js';

const VM_MAC = parseMac('52:54:00:00:0f:01')!;
const GW_MAC = parseMac('02:00:00:00:00:fe')!;
const UPLINK = 0xc6336402; // 198.51.100.2
const CLIENT = 0xcb00710a; // 203.0.113.10, allowed by the VM's rules
const LAN_CLIENT = 0x0a010203; // 10.1.2.3, blocked by the VM's rules
const LAN_OTHER = 0x0a010204; // 10.1.2.4, blocked, never talked to the forward
const ROUTER = 0xc6336401; // 198.51.100.1
const LO = 61000;
const HI = 61999;
const EXT = 8080;
const INT = 80;
const UEXT = 5353;
const UINT = 53;
const { SYN, ACK, RST, PSH } = TcpFlag;
const { VM, RAW, CAPTURE, HOST } = PortId;

let owners = 0;
/** A VM as the forward table sees it. */
function owner(name = `vm${owners}`): ForwardOwner {
  owners++;
  return {
    name,
    ip: 0xc0a84002 + owners,
    mac: Uint8Array.of(0x52, 0x54, 0, 0, 1, owners & 0xff),
    gatewayMac: GW_MAC,
    port: { id: 200 + owners, closed: false } as unknown as Port,
    natIndex: new Map(),
    natCount: new Int32Array(3),
    p0: 0,
    p1: 0,
    nat6Index: new Map(),
    nat6Count: new Int32Array(3),
    nat64Index: new Map(),
    forwardIndex: new Map(),
    forward6Index: new Map(),
  };
}

describe('ForwardTable', () => {
  test('finds a forward by external port inbound and by the VM port outbound, per protocol', () => {
    const t = new ForwardTable(LO, HI);
    const a = owner();
    const f = t.add(a, NatProto.TCP, EXT, INT);
    assert.equal(t.inbound(NatProto.TCP, EXT), f);
    assert.equal(t.inbound(NatProto.UDP, EXT), undefined);
    assert.equal(t.inbound(NatProto.TCP, EXT + 1), undefined);
    assert.equal(t.outbound(a, NatProto.TCP, INT), f);
    assert.equal(t.outbound(a, NatProto.UDP, INT), undefined);
    assert.equal(t.outbound(owner(), NatProto.TCP, INT), undefined, "another VM's port 80 is its own");
    assert.deepEqual([f.ext, f.int, f.proto, f.owner], [EXT, INT, NatProto.TCP, a]);
    // The same host port for the other protocol is another forward.
    const u = t.add(owner(), NatProto.UDP, EXT, INT);
    assert.equal(t.inbound(NatProto.UDP, EXT), u);
    assert.equal(t.size, 2);
  });

  test('refuses a port of the NAT range, a port held, and a VM port forwarded twice', () => {
    const t = new ForwardTable(LO, HI);
    const a = owner('first');
    t.add(a, NatProto.TCP, EXT, INT);
    assert.match(t.refusal(NatProto.TCP, LO) ?? '', /61000\/tcp is in the NAT port range 61000-61999/);
    assert.match(t.refusal(NatProto.UDP, HI) ?? '', /in the NAT port range/);
    assert.equal(t.refusal(NatProto.TCP, LO - 1), null);
    assert.equal(t.refusal(NatProto.TCP, HI + 1), null);
    assert.match(t.refusal(NatProto.TCP, EXT) ?? '', /8080\/tcp is forwarded to VM first already/);
    assert.equal(t.refusal(NatProto.UDP, EXT), null);
    assert.throws(() => t.add(owner(), NatProto.TCP, EXT, 81), /forwarded to VM first/);
    assert.throws(() => t.add(owner(), NatProto.TCP, LO + 5, 81), /NAT port range/);
    assert.throws(() => t.add(a, NatProto.TCP, 9090, INT), /port 80\/tcp of VM first is forwarded already/);
    assert.equal(t.size, 1);
  });

  test(`holds at most ${MAX_FORWARDS} forwards`, () => {
    const t = new ForwardTable(LO, HI);
    const a = owner();
    for (let i = 0; i < MAX_FORWARDS; i++) t.add(a, NatProto.UDP, 1 + i, 1 + i);
    assert.match(t.refusal(NatProto.TCP, 2000) ?? '', /1024 forwards/);
    assert.throws(() => t.add(a, NatProto.TCP, 2000, 2000));
  });

  test('remove() ends both lookups and frees the ports; removing twice is harmless', () => {
    const t = new ForwardTable(LO, HI);
    const a = owner();
    const f = t.add(a, NatProto.UDP, UEXT, UINT);
    t.remove(f);
    t.remove(f);
    assert.equal(t.inbound(NatProto.UDP, UEXT), undefined);
    assert.equal(t.outbound(a, NatProto.UDP, UINT), undefined);
    assert.equal(a.forwardIndex.size, 0);
    assert.equal(t.size, 0);
    const b = owner();
    assert.equal(t.add(b, NatProto.UDP, UEXT, UINT).owner, b);
  });

  test('ports() lists the external ports of one protocol, ascending', () => {
    const t = new ForwardTable(LO, HI);
    const a = owner();
    t.add(a, NatProto.TCP, 9000, 1);
    t.add(a, NatProto.TCP, 22, 2);
    t.add(a, NatProto.UDP, 5000, 3);
    t.add(owner(), NatProto.TCP, 443, 4);
    assert.deepEqual(t.ports(NatProto.TCP), [22, 443, 9000]);
    assert.deepEqual(t.ports(NatProto.UDP), [5000]);
  });

  test('remembers remotes it talked with, an address above 2^31 too, and sweeps idle ones by protocol', () => {
    const t = new ForwardTable(LO, HI);
    const a = owner();
    const f = t.add(a, NatProto.TCP, EXT, INT);
    const u = t.add(a, NatProto.UDP, UEXT, UINT);
    const high = 0xfe000001;
    f.touch(CLIENT, 1000);
    f.touch(high, 1000);
    u.touch(CLIENT, 1000);
    assert.ok(f.knows(CLIENT) && f.knows(high) && f.knows(high | 0));
    assert.ok(!f.knows(LAN_OTHER));
    t.sweep(1000 + 300);
    assert.ok(u.knows(CLIENT), 'UDP keeps a remote 300 s');
    t.sweep(1000 + 301);
    assert.ok(!u.knows(CLIENT), 'and forgets it after');
    assert.ok(f.knows(CLIENT), 'TCP keeps it longer');
    f.touch(CLIENT, 5000);
    t.sweep(1000 + 7441);
    assert.ok(f.knows(CLIENT), 'heard again at 5000');
    assert.ok(!f.knows(high), 'idle since 1000');
  });

  test(`keeps at most ${MAX_REMOTES} remotes, forgetting the oldest first`, () => {
    const t = new ForwardTable(LO, HI);
    const f = t.add(owner(), NatProto.TCP, EXT, INT);
    for (let i = 0; i < MAX_REMOTES + 3; i++) f.touch(0x0a000000 + i, 1000);
    assert.equal(f.remotes.size, MAX_REMOTES);
    assert.ok(!f.knows(0x0a000000) && !f.knows(0x0a000002));
    assert.ok(f.knows(0x0a000003) && f.knows(0x0a000000 + MAX_REMOTES + 2));
  });
});

describe('port forwards through the pipeline', () => {
  let io: FakeIo;
  let p: Pipeline;
  let nat: NatUplink;
  let att: Attachment;
  let vmPort: Port;
  let capture: Port;
  let fwd: PortForward;
  let ufwd: PortForward;

  const drops = () => dropsByName(p.drops);
  const fromVm = (f: Uint8Array) => {
    io.deliver(VM, f);
    p.drain(vmPort);
  };
  /** The VM sends `pkt` to the gateway's MAC; returns what left on the raw port. */
  const out = (pkt: Uint8Array) => {
    fromVm(ethFrame(pkt, VM_MAC, GW_MAC));
    return io.take(RAW);
  };
  /** A packet arrives on the capture port; returns what the VM received. */
  const inbound = (pkt: Uint8Array) => {
    io.deliver(CAPTURE, captureFrame(pkt));
    p.drain(capture);
    return io.take(VM);
  };
  const inOne = (pkt: Uint8Array): Parsed & { frame: Uint8Array } => {
    const got = inbound(pkt);
    assert.equal(got.length, 1, `one frame to the VM; drops ${JSON.stringify(drops())}`);
    return { ...parse(got[0], 14), frame: got[0] };
  };
  const outOne = (pkt: Uint8Array): Parsed & { raw: Uint8Array } => {
    const sent = out(pkt);
    assert.equal(sent.length, 1, `one packet out; drops ${JSON.stringify(drops())}`);
    return { ...parse(sent[0], 0), raw: sent[0] };
  };
  /** The VM asks DHCP for `ip` (an address move when it holds another) or declines its own (it has none). */
  const dhcp = (type: number, ip: number) => {
    const b = [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255];
    fromVm(dhcpFrame(VM_MAC, 0x77, type, [[DhcpOption.REQUESTED_IP, b]]));
    io.take(VM);
  };

  beforeEach(() => {
    const net = inProcessNetwork({
      vmMac: VM_MAC,
      gatewayMac: GW_MAC,
      allow: ['203.0.113.0/24'],
      nat: { addr: UPLINK, lo: LO, hi: HI, perVm: 16 },
    });
    ({ io, p, vmPort, att } = net);
    nat = net.nat!;
    capture = net.capture!;
    fwd = nat.forwards.add(att, NatProto.TCP, EXT, INT);
    ufwd = nat.forwards.add(att, NatProto.UDP, UEXT, UINT);
  });

  test("a SYN from the world to uplink:EXT reaches the VM at INT from the client's own address", () => {
    const got = inOne(tcp(CLIENT, UPLINK, 45000, EXT, SYN, { ttl: 50 }));
    assert.deepEqual([...got.frame.subarray(0, 6)], [...VM_MAC]);
    assert.deepEqual([...got.frame.subarray(6, 12)], [...GW_MAC]);
    assert.equal(got.src, CLIENT, 'the real source address is kept');
    assert.equal(got.dst, att.ip);
    assert.equal(got.sport, 45000);
    assert.equal(got.dport, INT);
    assert.equal(got.ttl, 49);
    assertChecksums(got.frame, 14);
    assert.ok(fwd.knows(CLIENT));
    assert.equal(nat.flows.size, 0, 'a forward makes no dynamic mapping');
    assert.deepEqual(drops(), {});
  });

  test('the VM answers from INT: it leaves from uplink:EXT, and data flows both ways', () => {
    inOne(tcp(CLIENT, UPLINK, 45000, EXT, SYN));
    const synAck = outOne(tcp(att.ip, CLIENT, INT, 45000, SYN | ACK, { ttl: 64 }));
    assert.equal(synAck.src, UPLINK);
    assert.equal(synAck.sport, EXT);
    assert.equal(synAck.dst, CLIENT);
    assert.equal(synAck.dport, 45000);
    assert.equal(synAck.ttl, 63);
    assertChecksums(synAck.raw, 0);
    const data = inOne(tcp(CLIENT, UPLINK, 45000, EXT, ACK | PSH, {}, bytes(700, 3)));
    assertChecksums(data.frame, 14);
    assert.deepEqual([...data.l4.subarray(20)], [...bytes(700, 3)]);
    const back = outOne(tcp(att.ip, CLIENT, INT, 45000, ACK | PSH, {}, bytes(1400, 9)));
    assertChecksums(back.raw, 0);
    assert.equal(nat.flows.size, 0);
    assert.deepEqual(drops(), {});
  });

  test('UDP to uplink:EXT reaches the VM and its answer comes back from EXT', () => {
    const got = inOne(udp(CLIENT, UPLINK, 40001, UEXT, bytes(33)));
    assert.equal(got.dport, UINT);
    assert.equal(got.src, CLIENT);
    assertChecksums(got.frame, 14);
    assert.ok(ufwd.knows(CLIENT));
    const reply = outOne(udp(att.ip, CLIENT, UINT, 40001, bytes(33)));
    assert.equal(reply.src, UPLINK);
    assert.equal(reply.sport, UEXT);
    assertChecksums(reply.raw, 0);
    // A datagram sent without a checksum stays without one.
    const bare = ipv4(IpProto.UDP, CLIENT, UPLINK, udpDgram(CLIENT, UPLINK, 40001, UEXT, bytes(8), true));
    assert.equal(view(inOne(bare).l4).getUint16(6), 0);
    assert.deepEqual(drops(), {});
  });

  test('a TCP forward takes no UDP and a UDP forward no TCP; other ports outside the range are no-mapping', () => {
    assert.deepEqual(inbound(udp(CLIENT, UPLINK, 40001, EXT)), []);
    assert.deepEqual(inbound(tcp(CLIENT, UPLINK, 40001, UEXT, SYN)), []);
    assert.deepEqual(inbound(tcp(CLIENT, UPLINK, 40001, 22, SYN)), []);
    assert.deepEqual(drops(), { 'uplink-no-mapping': 3 });
  });

  test('the forward follows the address: a VM that moves gets the next packet at its new address', () => {
    const first = att.ip;
    inOne(tcp(CLIENT, UPLINK, 45000, EXT, SYN));
    dhcp(DhcpType.REQUEST, first + 7);
    assert.equal(att.ip, first + 7, 'the VM moved');
    const got = inOne(tcp(CLIENT, UPLINK, 45001, EXT, SYN));
    assert.equal(got.dst, first + 7);
    assertChecksums(got.frame, 14);
    assert.equal(outOne(tcp(first + 7, CLIENT, INT, 45001, SYN | ACK)).sport, EXT);
  });

  test('while the VM has no address, packets for its forward are dropped as forward-vm-without-address', () => {
    dhcp(DhcpType.DECLINE, att.ip);
    assert.equal(att.ip, 0);
    assert.deepEqual(inbound(tcp(CLIENT, UPLINK, 45000, EXT, SYN)), []);
    assert.deepEqual(inbound(udp(CLIENT, UPLINK, 40001, UEXT)), []);
    assert.deepEqual(drops(), { 'forward-vm-without-address': 2 });
    assert.deepEqual(io.take(HOST), []);
  });

  test('a removed forward takes nothing more', () => {
    nat.forwards.remove(fwd);
    assert.deepEqual(inbound(tcp(CLIENT, UPLINK, 45000, EXT, SYN)), []);
    assert.deepEqual(drops(), { 'uplink-no-mapping': 1 });
    // The VM's port 80 is an ordinary port again: its SYN-ACK has no flow to leave by.
    assert.deepEqual(out(tcp(att.ip, CLIENT, INT, 45000, SYN | ACK)), []);
  });

  test('a client the VM may not reach (a private address) gets its answers, and only those', () => {
    const got = inOne(tcp(LAN_CLIENT, UPLINK, 45000, EXT, SYN));
    assert.equal(got.src, LAN_CLIENT);
    const synAck = outOne(tcp(att.ip, LAN_CLIENT, INT, 45000, SYN | ACK));
    assert.equal(synAck.dst, LAN_CLIENT);
    assert.equal(synAck.sport, EXT);
    assert.equal(outOne(tcp(att.ip, LAN_CLIENT, INT, 45000, RST)).sport, EXT);
    // The VM cannot start anything with that network: a SYN from INT, anything to another address, or
    // from another port, is up to its rules, which block it.
    assert.deepEqual(out(tcp(att.ip, LAN_CLIENT, INT, 45001, SYN)), []);
    assert.deepEqual(out(tcp(att.ip, LAN_OTHER, INT, 45000, SYN | ACK)), []);
    assert.deepEqual(out(udp(att.ip, LAN_OTHER, UINT, 40001)), []);
    assert.deepEqual(out(tcp(att.ip, LAN_CLIENT, 40000, 45000, SYN | ACK)), []);
    assert.deepEqual(out(udp(att.ip, LAN_CLIENT, UINT, 40001)), [], 'the UDP forward never heard it');
    assert.deepEqual(drops(), { 'dst-blocked-by-policy': 5 });
    // Once the client is forgotten, the answers stop too.
    nat.forwards.sweep(p.clock + 7441);
    assert.deepEqual(out(tcp(att.ip, LAN_CLIENT, INT, 45000, ACK)), []);
  });

  test('what the VM starts from INT to an allowed address leaves from EXT, and may be answered', () => {
    const syn = outOne(tcp(att.ip, CLIENT, INT, 443, SYN));
    assert.equal(syn.sport, EXT);
    assert.equal(nat.flows.size, 0);
    assert.ok(fwd.knows(CLIENT));
    assert.equal(inOne(tcp(CLIENT, UPLINK, 443, EXT, SYN | ACK)).dport, INT);
  });

  test('an ICMP error quoting what the VM sent from INT comes back translated; one about another address is filtered', () => {
    inOne(udp(CLIENT, UPLINK, 40001, UEXT));
    const left = outOne(udp(att.ip, CLIENT, UINT, 40001, bytes(64))).raw;
    const err = (to: Uint8Array) =>
      ipv4(IpProto.ICMP, ROUTER, UPLINK, icmpMsg(3, 3, 0, to.subarray(0, 28)), { frag: 0 });
    const got = inOne(err(left));
    assert.equal(got.dst, att.ip);
    assertChecksums(got.frame, 14);
    const quoted = parse(got.frame, 14 + 20 + 8);
    assert.equal(quoted.src, att.ip);
    assert.equal(quoted.sport, UINT);
    // The same error about a packet to an address the forward never talked with.
    const forged = Uint8Array.from(left);
    view(forged).setUint32(16, LAN_OTHER);
    assert.deepEqual(inbound(err(forged)), []);
    assert.deepEqual(drops(), { 'uplink-filtered': 1 });
  });

  test('a fragmented datagram to a UDP forward: both fragments reach the VM', () => {
    const whole = udpDgram(CLIENT, UPLINK, 40001, UEXT, bytes(64));
    const first = inOne(
      ipv4(IpProto.UDP, CLIENT, UPLINK, whole.subarray(0, 40), { id: 0x5151, frag: 0x2000 }),
    );
    assert.equal(first.dport, UINT);
    const later = inOne(ipv4(IpProto.UDP, CLIENT, UPLINK, whole.subarray(40), { id: 0x5151, frag: 5 }));
    assert.equal(later.dst, att.ip);
    assert.deepEqual(drops(), {});
  });

  test('NAT-range ports still go by their mappings', () => {
    const ext = outOne(udp(att.ip, CLIENT, 40000, 7007)).sport;
    assert.ok(ext >= LO && ext <= HI);
    assert.equal(inOne(udp(CLIENT, UPLINK, 7007, ext)).dport, 40000);
    assert.deepEqual(drops(), {});
  });
});
