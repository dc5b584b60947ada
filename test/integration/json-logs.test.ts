// --log-format json: every line softnet writes on stderr is one JSON object with time, level and event,
// from the service engine, from a per-VM process that runs the engine, from per-VM processes whose VM
// events the engine relays, for the counters (SIGUSR1 and at exit), and for an error at start.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Udhcpc } from '../lib/clients.js';
import { SOFTNET, type Softnet, startSoftnet } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';

interface Line {
  time: string;
  level: string;
  event: string;
  [field: string]: unknown;
}

/** Every stderr line of `s`, parsed; fails on a line that is not one JSON object with time, level and event. */
function parsed(s: Softnet): Line[] {
  return s.lines.map((text) => {
    let o: Line;
    try {
      o = JSON.parse(text);
    } catch {
      throw new Error(`not JSON: ${text}\n${s.lines.join('\n')}`);
    }
    assert.equal(typeof o, 'object', text);
    assert.ok(!Number.isNaN(Date.parse(o.time)) && o.time.endsWith('Z'), `time: ${text}`);
    assert.match(o.level, /^(info|warn|error)$/, text);
    assert.equal(typeof o.event, 'string', text);
    return o;
  });
}

/** The counters of the first `counters` line (SIGUSR1's, while the VM is attached): nested, not a string. */
function counters(lines: Line[]): Record<string, Record<string, number>> {
  const c = lines.find((l) => l.event === 'counters')?.counters;
  assert.equal(typeof c, 'object', JSON.stringify(lines));
  return c as Record<string, Record<string, number>>;
}

describe('--log-format json', () => {
  const topo = new Topology();
  after(() => topo.cleanup());

  test('the service, a per-VM process handed to it, relayed lease events and counters', async () => {
    const host = await topo.netns('host');
    const vm = await topo.netns('vm');
    const sock = join(topo.dir, 'svc.sock');
    const json = ['--log-format', 'json', '--control-socket', sock];
    const service = startSoftnet(topo, host, ['serve', '--state-dir', join(topo.dir, 'svc'), ...json]);
    await service.waitFor(/"event":"serving"/);
    const perVm = startSoftnet(topo, host, [
      '--vm-netns',
      `/run/netns/${vm}`,
      '--vm-mac-address',
      '52:54:00:d0:00:01',
      ...json,
    ]);
    await perVm.waitFor(/"event":"started"/);
    await new Udhcpc(topo, vm).once();
    await perVm.waitFor(/"event":"lease bound"/);
    await topo.exec(vm, 'ping', ['-c', '1', '-W', '2', '192.168.64.1']);

    service.child.kill('SIGUSR1');
    await service.waitFor(/"event":"counters"/);
    perVm.child.kill('SIGUSR1');
    await perVm.waitFor(/"event":"counters"/);
    assert.equal((await perVm.stop()).code, 0);
    assert.equal((await service.stop()).code, 0);

    const svc = parsed(service);
    const own = parsed(perVm);
    assert.ok(svc.some((l) => l.event === 'network up'));
    assert.ok(svc.some((l) => l.event === 'lease bound' && l.mac === '52:54:00:d0:00:01'));
    assert.ok(svc.some((l) => l.event === 'stopped'));
    // The VM's own events reach its per-VM process, relayed from the engine.
    const bound = own.find((l) => l.event === 'lease bound');
    assert.equal(bound?.ip, '192.168.64.2');
    assert.equal(bound?.lease, 600);
    assert.equal(own.find((l) => l.event === 'started')?.engine, String(service.child.pid));
    for (const c of [counters(svc), counters(own)]) {
      assert.equal(typeof c.drops, 'object');
      const port = Object.entries(c).find(([k]) => k.startsWith('port:') && k.includes(vm));
      assert.ok(port && port[1].rx_frames >= 5 && port[1].tx_frames >= 3, JSON.stringify(c));
    }
  });

  test('a per-VM process that runs the engine itself, and an error at start', async () => {
    const host = await topo.netns('host2');
    const vm = await topo.netns('vm2');
    const state = join(topo.dir, 'state2');
    const args = ['--state-dir', state, '--control-socket', join(state, 'c.sock'), '--log-format=json'];
    const s = startSoftnet(topo, host, [
      '--vm-netns',
      `/run/netns/${vm}`,
      '--vm-mac-address',
      '52:54:00:d0:00:02',
      ...args,
    ]);
    await s.waitFor(/"event":"started"/);
    await new Udhcpc(topo, vm).once();
    s.child.kill('SIGUSR1');
    await s.waitFor(/"event":"counters"/);
    assert.equal((await s.stop()).code, 0);
    const lines = parsed(s);
    assert.ok(lines.some((l) => l.event === 'lease offered'));
    assert.ok(lines.filter((l) => l.event === 'counters').length >= 2, 'on SIGUSR1 and at exit');
    assert.ok(counters(lines).drops !== undefined);

    const bad = await topo.status(host, process.execPath, [
      SOFTNET,
      '--vm-fd',
      '77',
      '--vm-mac-address',
      '52:54:00:d0:00:03',
      ...args,
    ]);
    assert.equal(bad.code, 2);
    const errLines = bad.stderr.trimEnd().split('\n');
    assert.equal(errLines.length, 1, bad.stderr);
    const e = JSON.parse(errLines[0]);
    assert.equal(e.level, 'error');
    assert.equal(e.event, 'failed');
    assert.equal(e.flag, '--vm-fd');
    assert.equal(typeof e.error, 'string');
  });
});
