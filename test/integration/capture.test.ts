// softnet capture: a VM's frames, as the VM sent and got them, in a pcap file tcpdump reads; -c, -w - into
// tcpdump, two captures of one VM at once, the capture ending when its VM goes away, and bad command lines.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LINKTYPE_ETHERNET, readPcapFile } from '../../src/capture/pcap.js';
import { Udhcpc } from '../lib/clients.js';
import { SOFTNET, Softnet, softnetForVm } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';

const MAC = '52:54:00:ca:00:01';
const MAC_B = '52:54:00:ca:00:02';
const GATEWAY = '192.168.64.1';

/** Starts `softnet capture ARGS` in `ns` against the engine at control socket `sock`. */
function capture(topo: Topology, ns: string, sock: string, args: string[]): Softnet {
  return new Softnet(
    topo.spawn(ns, process.execPath, [SOFTNET, 'capture', ...args, '--control-socket', sock]),
  );
}

/** What tcpdump prints for a file, one line a frame (-e: with MACs). */
async function tcpdump(topo: Topology, ns: string, file: string, verbose = false): Promise<string> {
  const out = await topo.exec(ns, 'tcpdump', ['-n', '-e', ...(verbose ? ['-v'] : []), '-r', file]);
  return out.stdout;
}

/** The counts of a capture's last line. */
async function summary(cap: Softnet): Promise<{ reason: string; written: number; dropped: string }> {
  const m = await cap.waitFor(/ended \((.+)\): (\d+) frames written, (\S+) dropped by the engine/);
  return { reason: m[1], written: Number(m[2]), dropped: m[3] };
}

describe('softnet capture', () => {
  const topo = new Topology();
  after(() => topo.cleanup());

  test("a VM's DHCP and pings, twice at once, one of them stopping after -c frames", async () => {
    const host = await topo.netns('host');
    const vm = await topo.netns('vm');
    const sock = join(topo.dir, 'c1.sock');
    const softnet = await softnetForVm(topo, host, vm, MAC, [
      '--state-dir',
      join(topo.dir, 'state1'),
      '--control-socket',
      sock,
    ]);
    const extMac = await softnet.externalMac();
    const file = join(topo.dir, 'vm.pcap');
    const four = join(topo.dir, 'four.pcap');
    // By internal MAC, and by the external one the host knows it by.
    // The second starts once the first captures, so that its frames are a run of the first's.
    const all = capture(topo, host, sock, [MAC, '-w', file]);
    await all.waitFor(/capturing vm-525400ca0001 \(52:54:00:ca:00:01\) to /);
    const first = capture(topo, host, sock, [extMac, '-w', four, '-c', '4']);
    await first.waitFor(/capturing /);

    const lease = await new Udhcpc(topo, vm).once();
    assert.equal(lease.ip, '192.168.64.2');
    await topo.exec(vm, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GATEWAY]);

    // -c 4: it stops by itself.
    assert.equal((await first.exited).code, 0);
    assert.deepEqual(await summary(first), { reason: 'count', written: 4, dropped: '0' });

    all.child.kill('SIGINT');
    assert.equal((await all.exited).code, 0);
    const s = await summary(all);
    assert.equal(s.reason, 'stopped');
    assert.equal(s.dropped, '0');
    const pcap = readPcapFile(file);
    assert.equal(pcap.header.linkType, LINKTYPE_ETHERNET);
    assert.equal(pcap.records.length, s.written);
    // The two captures saw the same frames. The second started a moment after the first, and the VM's
    // kernel may send a frame of its own (an MLD report) in that moment: its four are a run of the first's.
    assert.equal((await tcpdump(topo, host, four)).trimEnd().split('\n').length, 4);
    const hex = (records: Array<{ data: Uint8Array }>) =>
      records.map((r) => Buffer.from(r.data).toString('hex'));
    const ofFour = hex(readPcapFile(four).records);
    const ofAll = hex(pcap.records);
    const at = ofAll.indexOf(ofFour[0]);
    assert.ok(at >= 0, "the -c capture's first frame is one of the first capture's");
    assert.deepEqual(ofFour, ofAll.slice(at, at + 4));

    const types = (await tcpdump(topo, host, file, true)).match(/DHCP-Message \(53\), length 1: \w+/g);
    assert.deepEqual(
      types?.map((t) => t.split(': ')[1]),
      ['Discover', 'Offer', 'Request', 'ACK'],
    );
    const lines = (await tcpdump(topo, host, file)).trimEnd().split('\n');
    assert.equal(lines.length, s.written);
    const discover = lines.find((l) => l.includes('BOOTP/DHCP, Request'));
    assert.ok(
      discover?.includes(`${MAC} > ff:ff:ff:ff:ff:ff`),
      `the DISCOVER from the VM's own MAC:\n${lines.join('\n')}`,
    );
    const count = (re: RegExp) => lines.filter((l) => re.test(l)).length;
    assert.equal(
      count(new RegExp(`^\\S+ ${MAC} > \\S+, .*192\\.168\\.64\\.2 > ${GATEWAY}: ICMP echo request`)),
      3,
    );
    assert.equal(
      count(new RegExp(`^\\S+ \\S+ > ${MAC}, .*${GATEWAY} > 192\\.168\\.64\\.2: ICMP echo reply`)),
      3,
    );
    // The VM never sees the MAC the host knows it by.
    assert.ok(!lines.some((l) => l.includes(extMac)), lines.join('\n'));

    const run = (args: string[]) =>
      topo.status(host, process.execPath, [SOFTNET, 'capture', ...args, '--control-socket', sock]);
    const none = await run(['nosuch', '-w', join(topo.dir, 'none.pcap')]);
    assert.equal(none.code, 1);
    assert.equal(none.stderr, 'softnet: no VM nosuch is attached\n');
    const bad = await run([MAC, '-w', join(topo.dir, 'no/such/dir.pcap')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^softnet: -w: ENOENT[^\n]*\n$/);
    assert.equal(softnet.child.exitCode, null);
  });

  test('-w - into tcpdump -r -, which stops after two frames: the capture ends when its reader goes', async () => {
    const host = await topo.netns('host2');
    const vm = await topo.netns('vm2');
    const state = join(topo.dir, 'state2');
    const sock = join(topo.dir, 'c2.sock');
    await softnetForVm(topo, host, vm, MAC, ['--state-dir', state, '--control-socket', sock]);
    await new Udhcpc(topo, vm).once();
    // The VM knows its gateway's MAC already, so the two ICMP frames captured are an echo and its answer;
    // the filter leaves out what the VM's kernel sends on its own (IPv6 listener reports come at any time).
    await topo.exec(vm, 'ping', ['-c', '1', '-W', '2', GATEWAY]);
    const err = join(topo.dir, 'pipe.err');
    const pipeline = new Softnet(
      topo.spawn(host, 'bash', [
        '-c',
        `${process.execPath} ${SOFTNET} capture ${MAC} -w - --control-socket ${sock} 2>${err} | tcpdump -n -l -r - -c 2 icmp; echo "status \${PIPESTATUS[*]}" >&2`,
      ]),
    );
    const out: string[] = [];
    pipeline.child.stdout!.setEncoding('utf8');
    pipeline.child.stdout!.on('data', (d: string) => out.push(d));
    // Pings answered in a few milliseconds could all be over before the capture client is up.
    const capturing = () => existsSync(err) && readFileSync(err, 'utf8').includes('capturing');
    for (let i = 0; i < 200 && !capturing(); i++) await sleep(50);
    for (let i = 0; i < 30 && pipeline.child.exitCode === null; i++)
      await topo.status(vm, 'ping', ['-c', '1', '-W', '1', GATEWAY]);
    await pipeline.waitFor(/^status /);
    assert.match(pipeline.lines.join('\n'), /^status 0 0$/m);
    const packets = out.join('').trimEnd().split('\n');
    assert.equal(packets.length, 2, out.join(''));
    assert.match(packets[0], /ICMP echo request/);
    const errText = (await topo.exec(host, 'cat', [err])).stdout;
    assert.match(errText, /ended \(output-closed\)/);
  });

  test('a capture ends when its VM goes away, and the engine goes on', async () => {
    const host = await topo.netns('host3');
    const a = await topo.netns('a3');
    const b = await topo.netns('b3');
    const state = join(topo.dir, 'state3');
    const sock = join(topo.dir, 'c3.sock');
    const extra = ['--state-dir', state, '--control-socket', sock];
    const engine = await softnetForVm(topo, host, a, MAC, extra);
    const vmB = await softnetForVm(topo, host, b, MAC_B, extra);
    const lease = await new Udhcpc(topo, b).once();
    const file = join(topo.dir, 'b.pcap');
    // By address.
    const cap = capture(topo, host, sock, [lease.ip, '-w', file]);
    await cap.waitFor(/capturing vm-525400ca0002 /);
    await topo.exec(b, 'ping', ['-c', '1', '-W', '2', GATEWAY]);
    await topo.removeNetns(b);
    assert.equal((await cap.exited).code, 0);
    const s = await summary(cap);
    assert.equal(s.reason, 'vm-detached');
    assert.ok(s.written >= 2, `${s.written} frames`);
    assert.equal(readPcapFile(file).records.length, s.written);
    assert.equal((await vmB.exited).code, 0);
    assert.equal(engine.child.exitCode, null, 'the engine goes on');
    await new Udhcpc(topo, a).once();
  });

  test('bad command lines: one line naming the flag, exit 2; an unknown VM or no engine: one line, exit 1', async () => {
    const ns = await topo.netns('cli');
    const run = (args: string[]) => topo.status(ns, process.execPath, [SOFTNET, 'capture', ...args]);
    const sock = ['--control-socket', join(topo.dir, 'none.sock')];
    const cases: Array<[string[], number, RegExp]> = [
      [[MAC, ...sock], 2, /^softnet: -w: is required/],
      [[MAC, '-w', '/tmp/x.pcap', '-c', '0', ...sock], 2, /^softnet: -c: '0' is not a whole number/],
      [['-w', '/tmp/x.pcap', ...sock], 2, /^softnet: VM: capture needs a VM/],
      [[MAC, '-w', '/tmp/x.pcap', '--frobnicate', ...sock], 2, /^softnet: --frobnicate: unknown flag/],
      [[MAC, '-w', '/tmp/x.pcap', ...sock], 1, /^softnet: no softnet engine runs at /],
    ];
    for (const [args, code, re] of cases) {
      const r = await run(args);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, re);
    }
  });
});
