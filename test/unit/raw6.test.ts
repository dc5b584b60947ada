// The addon's NAT66 sockets, for real, in a network namespace of the test's own: whole IPv6 packets out of
// a raw IPv6 socket (a RAW6 port) each to the destination in its header, arriving byte for byte on the
// other end of a veth pair, where the uplink's IPv6 capture (packetSocket family 6, with captureFilter6,
// replaced by portSetFilter) takes those for its address and port range; and what the kernel does with a
// packet larger than the device's or the route's MTU: refuses it (EMSGSIZE), never fragments it. Needs
// root; skipped without it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { native } from '../../src/native.js';
import { captureFilter6 } from '../../src/ports/uplink.js';
import { Topology } from '../lib/topology.js';

const root = process.getuid?.() === 0;
const topo = new Topology();
after(() => topo.cleanup());

const uplinkJs = new URL('../../src/ports/uplink.js', import.meta.url).href;
const addon = fileURLToPath(new URL('../../../native/build/Release/softnet.node', import.meta.url));

/**
 * The child: sends the packets its argument lists out of a RAW6 port (from 2001:db8::2 on up0), then
 * reads what the capture on world0 (its veth peer) took and prints it as hex, with the kernel's fragmentation counters.
 * Neighbour entries on up0 make 2001:db8::99 and ::98 reachable with no NDP; the route to ::98 has MTU
 * 1280. The capture's filter is for ::99 and ports 61000-61999, replaced by one for ::98 with `refilter`.
 */
const CHILD = `
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { captureFilter6 } from '${uplinkJs}';
const native = createRequire(import.meta.url)(${JSON.stringify(addon)});
const spec = JSON.parse(process.argv[1]);
const arena = new ArrayBuffer(1 << 22);
native.setArena(arena);
const u8 = new Uint8Array(arena);
const dv = new DataView(arena);
const snmp = () => Object.fromEntries(readFileSync('/proc/net/snmp6', 'utf8').trim().split('\\n').map((l) => l.split(/\\s+/)).map(([k, v]) => [k, Number(v)]));
const before = snmp();
const filterFor = (w3) => captureFilter6(Uint32Array.of(0x20010db8, 0, 0, w3), 61000, 61999);
const cap = native.portOpen(native.packetSocket('world0', filterFor(0x99), 6), 0);
if (spec.refilter) native.portSetFilter(cap, filterFor(0x98));
const raw = native.portOpen(native.rawSocket6(), 5);
const offs = new Uint32Array(spec.packets.length);
const lens = new Uint32Array(spec.packets.length);
spec.packets.forEach((p, i) => {
  const at = 64 + i * 65536;
  offs[i] = at;
  lens[i] = p.len;
  u8.fill(0, at, at + p.len);
  dv.setUint32(at, 0x6e012345); // traffic class 0xe0, flow label 0x12345
  dv.setUint16(at + 4, p.plen ?? p.len - 40);
  u8[at + 6] = 17;
  u8[at + 7] = 3;
  dv.setUint32(at + 8, 0x20010db8);
  dv.setUint32(at + 20, 2);
  dv.setUint32(at + 24, 0x20010db8);
  dv.setUint32(at + 36, p.dst);
  dv.setUint16(at + 40, 4242);
  dv.setUint16(at + 42, p.dport);
  dv.setUint16(at + 44, p.len - 40);
  for (let j = 48; j < p.len; j++) u8[at + j] = (j * 13) & 0xff;
});
const sent = native.send(raw, offs, lens, spec.packets.length);
await new Promise((r) => setTimeout(r, 300));
const got = [];
const rl = new Uint32Array(64);
for (let n; (n = native.recv(cap, 2 * 1024 * 1024 + 16, 9216, 64, rl)) > 0; )
  for (let i = 0; i < n; i++) {
    const at = 2 * 1024 * 1024 + 16 + i * 9216;
    got.push(Buffer.from(u8.subarray(at, at + rl[i])).toString('hex'));
  }
const after = snmp();
const sentHex = spec.packets.map((p, i) => Buffer.from(u8.subarray(offs[i], offs[i] + p.len)).toString('hex'));
console.log(JSON.stringify({ sent, got, sentHex, fragFails: after.Ip6FragFails - before.Ip6FragFails, fragCreates: after.Ip6FragCreates - before.Ip6FragCreates }));
`;

interface Packet {
  len: number;
  dst: number;
  dport: number;
  plen?: number;
}
interface Result {
  sent: number;
  got: string[];
  sentHex: string[];
  fragFails: number;
  fragCreates: number;
}

test('packetSocket takes family 4 or 6 only', () => {
  const filter = captureFilter6([0x20010db8, 0, 0, 2], 61000, 61999);
  assert.throws(() => native.packetSocket('lo', filter, 5 as 6), /family must be 4 or 6/);
});

describe('the NAT66 sockets', { skip: root ? false : 'needs root (network namespaces)' }, () => {
  let ns = '';
  const run = async (packets: Packet[], refilter = false): Promise<Result> => {
    const r = await topo.exec(ns, process.execPath, [
      '--input-type=module',
      '-e',
      CHILD,
      JSON.stringify({ packets, refilter }),
    ]);
    return JSON.parse(r.stdout.trim().split('\n').pop()!);
  };
  /** The captured frame without its 10-byte virtio header and 14-byte Ethernet header, as hex. */
  const packetOf = (hex: string) => hex.slice(2 * 24);

  before(async () => {
    ns = await topo.netns('raw6');
    await topo.exec(ns, 'ip', ['link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'world0']);
    await topo.exec(ns, 'ip', ['link', 'set', 'up0', 'up']);
    await topo.exec(ns, 'ip', ['link', 'set', 'world0', 'up']);
    await topo.exec(ns, 'ip', ['addr', 'add', '2001:db8::2/64', 'dev', 'up0', 'nodad']);
    const mac = JSON.parse((await topo.exec(ns, 'ip', ['-j', 'link', 'show', 'world0'])).stdout)[0].address;
    for (const to of ['2001:db8::99', '2001:db8::98'])
      await topo.exec(ns, 'ip', ['-6', 'neigh', 'replace', to, 'lladdr', mac, 'dev', 'up0']);
    await topo.exec(ns, 'ip', ['-6', 'route', 'add', '2001:db8::98/128', 'dev', 'up0', 'mtu', '1280']);
  });

  test('whole packets out, each to its own destination, unchanged; the capture takes its own only', async () => {
    const r = await run([
      { len: 100, dst: 0x99, dport: 61000 },
      { len: 1500, dst: 0x99, dport: 61999 },
      { len: 200, dst: 0x99, dport: 62000 },
      { len: 200, dst: 0x98, dport: 61500 },
      // A payload length that does not match: the kernel leaves it as it is.
      { len: 300, dst: 0x99, dport: 61001, plen: 1000 },
    ]);
    assert.equal(r.sent, 5);
    assert.deepEqual(r.got.map(packetOf), [r.sentHex[0], r.sentHex[1], r.sentHex[4]]);
    for (const f of r.got) {
      assert.equal(f.slice(0, 20), '00'.repeat(10), 'a plain virtio header');
      assert.equal(f.slice(2 * 22, 2 * 24), '86dd');
    }
    assert.equal(r.fragCreates, 0);
  });

  test('portSetFilter: the other address from then on', async () => {
    const r = await run(
      [
        { len: 100, dst: 0x99, dport: 61000 },
        { len: 120, dst: 0x98, dport: 61000 },
      ],
      true,
    );
    assert.deepEqual(r.got.map(packetOf), [r.sentHex[1]]);
  });

  test("larger than the device's MTU, or than the route's: refused, not fragmented; the rest of the batch goes", async () => {
    const r = await run([
      { len: 1501, dst: 0x99, dport: 61000 },
      { len: 1281, dst: 0x98, dport: 61000 },
      { len: 1280, dst: 0x98, dport: 61001 },
      { len: 30, dst: 0x99, dport: 61002 },
      { len: 1400, dst: 0x99, dport: 61003 },
    ]);
    // send() counts a packet the kernel refused as done: it is dropped, the batch goes on.
    assert.equal(r.sent, 5);
    assert.deepEqual(r.got.map(packetOf), [r.sentHex[4]], 'only the one that fits, to ::99');
    assert.equal(r.fragCreates, 0, 'nothing fragmented');
    assert.equal(r.fragFails, 1, "the one over the route's MTU, refused by the fragmenter");
  });
});
