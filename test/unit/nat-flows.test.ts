// The NAT tables without a pipeline: the external port pool, the mapping table (endpoint-independent
// mapping, address-dependent filtering, per-VM shares, timeouts by state) and the fragment table.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  FlowTable,
  type Mapping,
  type NatOwner,
  NatProto,
  NoMapping,
  TcpState,
} from '../../src/nat/flows.js';
import { FragmentTable } from '../../src/nat/fragments.js';
import { PortPool } from '../../src/nat/ports.js';
import type { Port } from '../../src/ports/port.js';
import { prng } from '../lib/prng.js';

let owners = 0;
/** A VM as the flow table sees it. */
function owner(ip = 0xc0a84002 + owners): NatOwner {
  owners++;
  return {
    ip,
    mac: Uint8Array.of(0x52, 0x54, 0, 0, 0, owners & 0xff),
    gatewayMac: Uint8Array.of(2, 0, 0, 0, 0, 1),
    port: { id: 100 + owners, closed: false } as unknown as Port,
    natIndex: new Map(),
    natCount: new Int32Array(3),
    p0: 0,
    p1: 0,
    nat6Index: new Map(),
    nat6Count: new Int32Array(3),
    nat64Index: new Map(),
  };
}

/** create() that must succeed. */
function make(t: FlowTable, o: NatOwner, proto: number, vmPort: number, now = 1000): Mapping {
  const m = t.create(o, proto, vmPort, now);
  assert.equal(typeof m, 'object', `create(${proto}, ${vmPort}) gave ${m}`);
  return m as Mapping;
}

const R1 = 0xcb00710a; // 203.0.113.10
const R2 = 0xcb00710b; // 203.0.113.11
const HIGH = 0xfe000001; // an address above 2^31

describe('PortPool', () => {
  test('hands out every port of the range exactly once, then 0', () => {
    const pool = new PortPool(61000, 61999, prng(6056));
    assert.equal(pool.available, 1000);
    const seen = new Set<number>();
    for (let i = 0; i < 1000; i++) {
      const p = pool.take();
      assert.ok(p >= 61000 && p <= 61999, `${p}`);
      assert.ok(!seen.has(p), `${p} twice`);
      seen.add(p);
    }
    assert.equal(seen.size, 1000);
    assert.equal(pool.available, 0);
    assert.equal(pool.take(), 0);
    assert.equal(pool.take(), 0);
  });

  test('the order is not sequential (RFC 6056), and the default random source works too', () => {
    for (const pool of [new PortPool(1000, 1999, prng(1)), new PortPool(1000, 1999)]) {
      const order = Array.from({ length: 1000 }, () => pool.take());
      let ascending = 0;
      for (let i = 1; i < order.length; i++)
        if (order[i] === order[i - 1] + 1 || order[i] === order[i - 1] - 1) ascending++;
      assert.ok(ascending < 50, `${ascending} neighbours in a row`);
      assert.deepEqual(
        [...order].sort((a, b) => a - b),
        Array.from({ length: 1000 }, (_, i) => 1000 + i),
      );
    }
  });

  test('a range of one port', () => {
    const pool = new PortPool(5000, 5000);
    assert.equal(pool.take(), 5000);
    assert.equal(pool.take(), 0);
    pool.give(5000);
    assert.equal(pool.take(), 5000);
  });

  test('give() returns a port, which is handed out again', () => {
    const pool = new PortPool(2000, 2009, prng(2));
    const taken = Array.from({ length: 10 }, () => pool.take());
    assert.equal(pool.take(), 0);
    pool.give(taken[3]);
    assert.equal(pool.available, 1);
    assert.equal(pool.take(), taken[3]);
    assert.equal(pool.take(), 0);
    for (const p of taken) pool.give(p);
    assert.equal(pool.available, 10);
    assert.deepEqual(
      Array.from({ length: 10 }, () => pool.take()).sort((a, b) => a - b),
      [...taken].sort((a, b) => a - b),
    );
  });

  test('takeExact takes a free port once, and never a taken or foreign one', () => {
    const pool = new PortPool(3000, 3099, prng(3));
    assert.equal(pool.takeExact(3042), true);
    assert.equal(pool.available, 99);
    assert.equal(pool.takeExact(3042), false);
    assert.equal(pool.takeExact(2999), false);
    assert.equal(pool.takeExact(3100), false);
    assert.equal(pool.takeExact(0), false);
    const rest = new Set(Array.from({ length: 99 }, () => pool.take()));
    assert.equal(rest.size, 99);
    assert.ok(!rest.has(3042));
    assert.equal(pool.take(), 0);
    pool.give(3042);
    assert.equal(pool.takeExact(3042), true);
    assert.equal(pool.takeExact(3000), false);
  });
});

describe('FlowTable', () => {
  test('endpoint-independent mapping: one VM endpoint, many destinations, one external port', () => {
    const t = new FlowTable(61000, 61999, 16);
    const vm = owner();
    const m = make(t, vm, NatProto.UDP, 40000);
    for (const r of [R1, R2, HIGH, 0x08080808]) {
      m.sentTo(r);
      assert.equal(t.outbound(vm, NatProto.UDP, 40000), m);
    }
    assert.equal(t.size, 1);
    assert.ok(m.extPort >= 61000 && m.extPort <= 61999);
    assert.equal(t.inbound(NatProto.UDP, m.extPort), m);
    assert.equal(m.vmPort, 40000);
    assert.equal(m.owner, vm);
    assert.equal(m.proto, NatProto.UDP);
  });

  test('different VMs, ports and protocols get different external ports', () => {
    const t = new FlowTable(61000, 61999, 100);
    const a = owner();
    const b = owner();
    const ms = [
      make(t, a, NatProto.UDP, 40000),
      make(t, b, NatProto.UDP, 40000),
      make(t, a, NatProto.UDP, 40001),
      make(t, b, NatProto.UDP, 40001),
    ];
    assert.equal(new Set(ms.map((m) => m.extPort)).size, 4);
    assert.equal(t.outbound(a, NatProto.UDP, 40000), ms[0]);
    assert.equal(t.outbound(b, NatProto.UDP, 40000), ms[1]);
    assert.equal(t.outbound(a, NatProto.TCP, 40000), undefined);
    // TCP, UDP and ICMP have a pool each: the same VM port in another protocol is another mapping.
    const tcp = make(t, a, NatProto.TCP, 40000);
    const icmp = make(t, a, NatProto.ICMP, 40000);
    assert.equal(t.outbound(a, NatProto.TCP, 40000), tcp);
    assert.equal(t.outbound(a, NatProto.ICMP, 40000), icmp);
    assert.equal(t.inbound(NatProto.TCP, tcp.extPort), tcp);
    assert.equal(t.inbound(NatProto.ICMP, icmp.extPort), icmp);
    assert.equal(t.size, 6);
  });

  test('inbound() finds by external port and protocol, and nothing outside the range', () => {
    const t = new FlowTable(61000, 61999, 2000);
    const vm = owner();
    const all = Array.from({ length: 1000 }, (_, i) => make(t, vm, NatProto.TCP, 1 + i));
    for (const m of all) assert.equal(t.inbound(NatProto.TCP, m.extPort), m);
    for (const p of [0, 1, 60999, 62000, 65535, -1, 70000])
      assert.equal(t.inbound(NatProto.TCP, p), undefined, `${p}`);
    assert.equal(t.inbound(NatProto.UDP, all[0].extPort), undefined);
    assert.equal(t.inbound(NatProto.ICMP, all[0].extPort), undefined);
  });

  test('address-dependent filtering: only remotes the mapping sent to are admitted', () => {
    const t = new FlowTable(61000, 61999, 16);
    const m = make(t, owner(), NatProto.UDP, 5353);
    assert.equal(m.admits(R1), false);
    m.sentTo(R1);
    m.sentTo(HIGH);
    assert.equal(m.admits(R1), true);
    assert.equal(m.admits(R1 | 0), true);
    assert.equal(m.admits(HIGH), true);
    assert.equal(m.admits(HIGH | 0), true);
    assert.equal(m.admits(R2), false);
    assert.equal(m.admits(0), false);
  });

  test('a mapping remembers at most 64 remotes, forgetting the oldest', () => {
    const t = new FlowTable(61000, 61999, 16);
    const m = make(t, owner(), NatProto.UDP, 5353);
    for (let i = 0; i < 64; i++) m.sentTo(0x08000000 + i);
    assert.equal(m.remotes.size, 64);
    for (let i = 0; i < 64; i++) assert.equal(m.admits(0x08000000 + i), true);
    m.sentTo(0x08000000); // again: nothing changes
    assert.equal(m.remotes.size, 64);
    m.sentTo(0x09000000);
    assert.equal(m.remotes.size, 64);
    assert.equal(m.admits(0x08000000), false, 'the oldest is forgotten');
    assert.equal(m.admits(0x08000001), true);
    assert.equal(m.admits(0x09000000), true);
    for (let i = 0; i < 200; i++) m.sentTo(0x0a000000 + i);
    assert.equal(m.remotes.size, 64);
    for (let i = 136; i < 200; i++) assert.equal(m.admits(0x0a000000 + i), true);
    assert.equal(m.admits(0x0a000000 + 135), false);
  });

  test("a VM's share is per protocol: beyond perVm it gets VM_SHARE_FULL while another VM still creates", () => {
    const t = new FlowTable(61000, 61999, 16);
    const a = owner();
    const b = owner();
    for (let i = 0; i < 16; i++) make(t, a, NatProto.UDP, 1000 + i);
    assert.equal(t.create(a, NatProto.UDP, 2000, 1000), NoMapping.VM_SHARE_FULL);
    assert.equal(t.create(a, NatProto.UDP, 2001, 1000), NoMapping.VM_SHARE_FULL);
    assert.equal(a.natCount[NatProto.UDP], 16);
    assert.equal(t.size, 16);
    make(t, a, NatProto.TCP, 2000);
    make(t, a, NatProto.ICMP, 2000);
    for (let i = 0; i < 16; i++) make(t, b, NatProto.UDP, 1000 + i);
    assert.equal(t.create(b, NatProto.UDP, 3000, 1000), NoMapping.VM_SHARE_FULL);
    // Existing mappings are untouched.
    for (let i = 0; i < 16; i++) assert.ok(t.outbound(a, NatProto.UDP, 1000 + i));
  });

  test('an exhausted range gives PORTS_EXHAUSTED, and the failed create leaves no trace', () => {
    const t = new FlowTable(1000, 1009, 100);
    const a = owner();
    const b = owner();
    for (let i = 0; i < 6; i++) make(t, a, NatProto.TCP, 100 + i);
    for (let i = 0; i < 4; i++) make(t, b, NatProto.TCP, 100 + i);
    assert.equal(t.create(a, NatProto.TCP, 200, 1000), NoMapping.PORTS_EXHAUSTED);
    assert.equal(t.create(b, NatProto.TCP, 200, 1000), NoMapping.PORTS_EXHAUSTED);
    assert.equal(a.natCount[NatProto.TCP], 6);
    assert.equal(b.natCount[NatProto.TCP], 4);
    assert.equal(t.outbound(a, NatProto.TCP, 200), undefined);
    assert.equal(t.size, 10);
    // The other protocols have their own ports.
    make(t, a, NatProto.UDP, 200);
  });

  test('create with an explicit external port (a restored mapping) takes that port or fails', () => {
    const t = new FlowTable(61000, 61999, 16);
    const a = owner();
    const m = t.create(a, NatProto.TCP, 40000, 1000, 61500) as Mapping;
    assert.equal(m.extPort, 61500);
    assert.equal(t.inbound(NatProto.TCP, 61500), m);
    assert.equal(t.create(owner(), NatProto.TCP, 40000, 1000, 61500), NoMapping.PORTS_EXHAUSTED);
    assert.equal(t.create(owner(), NatProto.TCP, 40000, 1000, 62000), NoMapping.PORTS_EXHAUSTED);
    assert.equal((t.create(owner(), NatProto.UDP, 40000, 1000, 61500) as Mapping).extPort, 61500);
  });

  test('remove and removeOwner free ports for reuse', () => {
    const t = new FlowTable(1000, 1003, 100);
    const a = owner();
    const b = owner();
    const ms = [make(t, a, NatProto.UDP, 1), make(t, a, NatProto.UDP, 2), make(t, a, NatProto.TCP, 3)];
    make(t, b, NatProto.UDP, 1);
    make(t, b, NatProto.UDP, 2);
    assert.equal(t.create(b, NatProto.UDP, 3, 1000), NoMapping.PORTS_EXHAUSTED);
    const changes = t.changes;
    t.remove(ms[0]);
    assert.equal(t.changes, changes + 1);
    assert.equal(t.outbound(a, NatProto.UDP, 1), undefined);
    assert.equal(t.inbound(NatProto.UDP, ms[0].extPort), undefined);
    assert.equal(a.natCount[NatProto.UDP], 1);
    t.remove(ms[0]); // twice: no effect
    assert.equal(t.changes, changes + 1);
    assert.equal(a.natCount[NatProto.UDP], 1);
    const again = make(t, b, NatProto.UDP, 3);
    assert.equal(again.extPort, ms[0].extPort);
    assert.equal(t.create(b, NatProto.UDP, 4, 1000), NoMapping.PORTS_EXHAUSTED);
    t.removeOwner(a);
    assert.equal(a.natIndex.size, 0);
    assert.deepEqual([...a.natCount], [0, 0, 0]);
    assert.equal(t.size, 3);
    assert.ok([...t.mappings()].every((m) => m.owner === b));
    const reused = make(t, b, NatProto.UDP, 4);
    assert.equal(reused.extPort, ms[1].extPort);
    make(t, b, NatProto.TCP, 4);
  });

  test('a VM at its share frees room when one of its mappings ends', () => {
    const t = new FlowTable(61000, 61999, 2);
    const a = owner();
    const m = make(t, a, NatProto.ICMP, 1);
    make(t, a, NatProto.ICMP, 2);
    assert.equal(t.create(a, NatProto.ICMP, 3, 1000), NoMapping.VM_SHARE_FULL);
    t.remove(m);
    make(t, a, NatProto.ICMP, 3);
  });

  describe('sweep() ends idle mappings by their timeout', () => {
    const cases: Array<[string, number, number | null, number]> = [
      ['UDP', NatProto.UDP, null, 300],
      ['ICMP', NatProto.ICMP, null, 60],
      ['TCP opening', NatProto.TCP, TcpState.OPENING, 240],
      ['TCP established', NatProto.TCP, TcpState.ESTABLISHED, 7440],
      ['TCP closing', NatProto.TCP, TcpState.CLOSING, 240],
      ['TCP reset', NatProto.TCP, TcpState.RESET, 10],
    ];
    for (const [name, proto, state, timeout] of cases) {
      test(`${name}: ${timeout} s`, () => {
        const t = new FlowTable(61000, 61999, 16);
        const a = owner();
        const m = make(t, a, proto, 4242, 10_000);
        if (state !== null) m.tcpState = state;
        assert.equal(m.timeout(), timeout);
        assert.equal(t.sweep(10_000), 0);
        assert.equal(t.sweep(10_000 + timeout), 0, 'idle exactly the timeout: kept');
        assert.equal(t.size, 1);
        // A packet refreshes the mapping.
        m.lastSeen = 10_000 + timeout;
        assert.equal(t.sweep(10_000 + timeout + 1), 0);
        assert.equal(t.sweep(10_000 + 2 * timeout + 1), 1);
        assert.equal(t.size, 0);
        assert.equal(t.outbound(a, proto, 4242), undefined);
        assert.equal(t.inbound(proto, m.extPort), undefined);
        assert.equal(a.natCount[proto], 0);
      });
    }

    test('a sweep ends only the idle ones, of several kinds at once', () => {
      const t = new FlowTable(61000, 61999, 16);
      const a = owner();
      const udp = make(t, a, NatProto.UDP, 1, 0);
      const icmp = make(t, a, NatProto.ICMP, 1, 0);
      const est = make(t, a, NatProto.TCP, 1, 0);
      est.tcpState = TcpState.ESTABLISHED;
      const rst = make(t, a, NatProto.TCP, 2, 0);
      rst.tcpState = TcpState.RESET;
      const opening = make(t, a, NatProto.TCP, 3, 0);
      assert.equal(t.sweep(11), 1);
      assert.equal(t.outbound(a, NatProto.TCP, 2), undefined);
      assert.equal(t.sweep(61), 1);
      assert.equal(t.outbound(a, NatProto.ICMP, 1), undefined);
      assert.equal(t.sweep(241), 1);
      assert.equal(t.outbound(a, NatProto.TCP, 3), undefined);
      assert.equal(t.sweep(301), 1);
      assert.equal(t.outbound(a, NatProto.UDP, 1), undefined);
      assert.equal(t.sweep(7440), 0);
      assert.equal(t.outbound(a, NatProto.TCP, 1), est);
      assert.equal(t.sweep(7441), 1);
      assert.equal(t.size, 0);
      for (const m of [udp, icmp, rst, opening]) assert.equal(t.inbound(m.proto, m.extPort), undefined);
      // Every port is free again.
      for (let i = 0; i < 16; i++) make(t, a, NatProto.TCP, 100 + i, 8000);
    });
  });
});

describe('FragmentTable', () => {
  const SRC = 0xcb00710a;

  test('remember / find by (source, protocol, id)', () => {
    const f = new FragmentTable();
    const a = owner();
    const b = owner();
    f.remember(SRC, 17, 0x1234, a, 100);
    f.remember(SRC, 6, 0x1234, b, 100);
    f.remember(HIGH, 17, 0xffff, b, 100);
    assert.equal(f.find(SRC, 17, 0x1234), a);
    assert.equal(f.find(SRC | 0, 17, 0x1234), a);
    assert.equal(f.find(SRC, 6, 0x1234), b);
    assert.equal(f.find(HIGH, 17, 0xffff), b);
    assert.equal(f.find(HIGH | 0, 17, 0xffff), b);
    assert.equal(f.find(SRC, 17, 0x1235), undefined);
    assert.equal(f.find(SRC, 1, 0x1234), undefined);
    assert.equal(f.find(SRC + 1, 17, 0x1234), undefined);
    // The same key again goes to the newer owner.
    f.remember(SRC, 17, 0x1234, b, 100);
    assert.equal(f.find(SRC, 17, 0x1234), b);
  });

  test('sweep by time: a train is remembered for 30 s', () => {
    const f = new FragmentTable();
    const a = owner();
    f.remember(SRC, 17, 1, a, 100);
    f.remember(SRC, 17, 2, a, 110);
    f.sweep(129);
    assert.equal(f.find(SRC, 17, 1), a);
    f.sweep(130);
    assert.equal(f.find(SRC, 17, 1), undefined);
    assert.equal(f.find(SRC, 17, 2), a);
    f.sweep(140);
    assert.equal(f.find(SRC, 17, 2), undefined);
    // A table emptied by sweeps works as new.
    f.remember(SRC, 17, 1, a, 200);
    assert.equal(f.find(SRC, 17, 1), a);
  });

  test('sweep by owner: a VM that went away takes its trains, and only its trains', () => {
    const f = new FragmentTable();
    const a = owner();
    const b = owner();
    f.remember(SRC, 17, 1, a, 100);
    f.remember(SRC, 17, 2, b, 100);
    f.remember(R2, 6, 3, a, 100);
    f.sweep(100, a);
    assert.equal(f.find(SRC, 17, 1), undefined);
    assert.equal(f.find(R2, 6, 3), undefined);
    assert.equal(f.find(SRC, 17, 2), b);
    f.sweep(100, owner());
    assert.equal(f.find(SRC, 17, 2), b);
  });
});
