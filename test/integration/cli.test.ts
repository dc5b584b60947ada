// The real binary's command line: a bad one gets one line naming the flag and exit status 2, and a
// second engine never takes over a host link another one holds.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Udhcpc } from '../lib/clients.js';
import { SOFTNET, softnetForVm, withControl } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';

describe('command line', () => {
  const topo = new Topology();
  after(() => topo.cleanup());

  const cases: Array<[string, string[], string]> = [
    [
      'unknown flag',
      ['--vm-fd', '3', '--vm-mac-address', '52:54:00:00:00:01', '--frobnicate', '1'],
      '--frobnicate',
    ],
    ['bad MAC', ['--vm-fd', '3', '--vm-mac-address', '52:54:00:00:00'], '--vm-mac-address'],
    [
      'bad CIDR',
      ['--vm-fd', '3', '--vm-mac-address', '52:54:00:00:00:01', '--subnet', '192.168.64.0/40'],
      '--subnet',
    ],
    ['no VM port', ['--vm-mac-address', '52:54:00:00:00:01'], '--vm-fd'],
    [
      'two VM ports',
      ['--vm-fd', '3', '--vm-tap', 'tap0', '--vm-mac-address', '52:54:00:00:00:01'],
      '--vm-tap',
    ],
    ['an fd that is not open', ['--vm-fd', '77', '--vm-mac-address', '52:54:00:00:00:01'], '--vm-fd'],
    [
      'a namespace that does not exist',
      ['--vm-netns', '/run/netns/none-such', '--vm-mac-address', '52:54:00:00:00:01'],
      '--vm-netns',
    ],
  ];
  for (const [name, args, flag] of cases) {
    test(`${name}: one line naming ${flag}, exit 2`, async () => {
      const ns = await topo.netns(`c${cases.findIndex((c) => c[0] === name)}`);
      const r = await topo.status(
        ns,
        process.execPath,
        withControl(topo, [SOFTNET, ...args, '--state-dir', `${topo.dir}/state`]),
      );
      assert.equal(r.code, 2);
      const lines = r.stderr.trimEnd().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.ok(lines[0].startsWith(`softnet: ${flag}:`), lines[0]);
    });
  }

  test('a second engine finds the host link taken, says so in one line, exits 2, and the first goes on', async () => {
    const host = await topo.netns('host');
    const a = await topo.netns('a');
    const b = await topo.netns('b');
    await softnetForVm(topo, host, a, '52:54:00:00:00:0a');
    // Another control socket: another engine, which must not take the first one's host link.
    const r = await topo.status(host, process.execPath, [
      SOFTNET,
      '--vm-netns',
      `/run/netns/${b}`,
      '--vm-mac-address',
      '52:54:00:00:00:0b',
      '--state-dir',
      `${topo.dir}/state2`,
      '--control-socket',
      `${topo.dir}/other.sock`,
    ]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^softnet: --host-link: host link softnet0 is in use by another softnet.*\n$/);
    const lease = await new Udhcpc(topo, a).once();
    await topo.exec(a, 'ping', ['-c', '1', '-W', '2', '192.168.64.1']);
    assert.match(lease.ip, /^192\.168\.64\./);
  });

  test('a VM handed to an engine whose network differs from its flags: one line naming the flag, exit 2', async () => {
    const host = await topo.netns('host2');
    const a = await topo.netns('a2');
    const b = await topo.netns('b2');
    const state = `${topo.dir}/state3`;
    const first = await softnetForVm(topo, host, a, '52:54:00:00:00:1a', [
      '--state-dir',
      state,
      '--control-socket',
      `${topo.dir}/c3.sock`,
    ]);
    const r = await topo.status(host, process.execPath, [
      SOFTNET,
      '--vm-netns',
      `/run/netns/${b}`,
      '--vm-mac-address',
      '52:54:00:00:00:1b',
      '--subnet',
      '10.99.0.0/24',
      '--state-dir',
      state,
      '--control-socket',
      `${topo.dir}/c3.sock`,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^softnet: --subnet: network default runs with "192\.168\.64\.0\/24".*\n$/);
    assert.equal(first.child.exitCode, null, 'the engine goes on');
  });
});
