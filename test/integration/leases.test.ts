// Lease life: renewal keeps the address, release frees it for another VM, a restart (clean or SIGKILL)
// keeps it, it expires when not renewed, and a full pool gets no offer.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Udhcpc } from '../lib/clients.js';
import { SOFTNET, softnetForVm, withControl } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';

const esc = (ip: string) => ip.replace(/\./g, '\\.');

describe('leases', () => {
  const topo = new Topology();
  after(() => topo.cleanup());

  test('a renewal keeps the address', async () => {
    const host = await topo.netns('h1');
    const vm = await topo.netns('v1');
    const softnet = await softnetForVm(topo, host, vm, '52:54:00:00:01:01', [
      '--state-dir',
      `${topo.dir}/s1`,
    ]);
    const client = new Udhcpc(topo, vm);
    const daemon = client.daemon();
    const bound = await softnet.waitFor(/lease bound ip=(\S+)/);
    await waitUntil(() => client.events().some((e) => e.event === 'bound'));
    daemon.kill('SIGUSR1');
    await softnet.waitFor(new RegExp(`lease renewed ip=${esc(bound[1])} `));
    await waitUntil(() => client.events().some((e) => e.event === 'renew'));
    assert.equal(client.last().ip, bound[1]);
    daemon.kill('SIGTERM');
    await once(daemon, 'exit');
  });

  test('a release frees the address, and a VM with another MAC then gets it', async () => {
    const state = `${topo.dir}/s2`;
    const host = await topo.netns('h2');
    const a = await topo.netns('a2');
    let softnet = await softnetForVm(topo, host, a, '52:54:00:00:02:01', ['--state-dir', state]);
    const client = new Udhcpc(topo, a);
    const daemon = client.daemon();
    await waitUntil(() => client.events().some((e) => e.event === 'bound'));
    const first = client.last();
    // udhcpc sends its RELEASE through the kernel and flushes the address at once: with no neighbour entry
    // for the gateway yet, the RELEASE waits for ARP and dies with the address (seen under load). A VM that
    // has talked to its gateway has the entry, as this one does now.
    await topo.exec(a, 'ping', ['-c', '1', '-W', '2', '192.168.64.1']);
    daemon.kill('SIGUSR2');
    await softnet.waitFor(new RegExp(`lease released ip=${esc(first.ip)} `));
    daemon.kill('SIGTERM');
    await once(daemon, 'exit');
    await softnet.stop();
    const b = await topo.netns('b2');
    softnet = await softnetForVm(topo, host, b, '52:54:00:00:02:02', ['--state-dir', state]);
    const second = await new Udhcpc(topo, b).once();
    assert.equal(second.ip, first.ip);
  });

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    test(`a restart after ${signal} keeps the lease and gives another VM another address`, async () => {
      const state = `${topo.dir}/s-${signal}`;
      const host = await topo.netns(`h-${signal}`);
      const a = await topo.netns(`a-${signal}`);
      let softnet = await softnetForVm(topo, host, a, '52:54:00:00:03:01', ['--state-dir', state]);
      const lease = await new Udhcpc(topo, a).once();
      await softnet.stop(signal);
      softnet = await softnetForVm(topo, host, a, '52:54:00:00:03:01', ['--state-dir', state]);
      await softnet.waitFor(new RegExp(`vm attached .* ip=${esc(lease.ip)}$`));
      // The VM's NIC came back with softnet; the address it still holds works before any DHCP.
      await topo.exec(a, 'ip', ['addr', 'add', `${lease.ip}/24`, 'dev', 'eth0']);
      await topo.exec(a, 'ping', ['-c', '1', '-W', '2', '192.168.64.1']);
      const again = await new Udhcpc(topo, a).once(['-r', lease.ip]);
      assert.equal(again.ip, lease.ip);
      await softnet.stop();
      const b = await topo.netns(`b-${signal}`);
      softnet = await softnetForVm(topo, host, b, '52:54:00:00:03:02', ['--state-dir', state]);
      const other = await new Udhcpc(topo, b).once(['-r', lease.ip]);
      assert.notEqual(other.ip, lease.ip);
      await softnet.stop();
    });
  }

  test('a lease that is not renewed expires', async () => {
    const host = await topo.netns('h4');
    const vm = await topo.netns('v4');
    const softnet = await softnetForVm(topo, host, vm, '52:54:00:00:04:01', [
      '--state-dir',
      `${topo.dir}/s4`,
      '--lease-time',
      '10',
    ]);
    const lease = await new Udhcpc(topo, vm).once();
    assert.equal(lease.lease, 10);
    await softnet.waitFor(new RegExp(`lease expired ip=${esc(lease.ip)} `), 20_000);
    const file = JSON.parse(readFileSync(`${topo.dir}/s4/softnet0.leases.json`, 'utf8'));
    assert.deepEqual(file.leases, []);
    // Without a lease the VM's address is no longer its own: its ARP and IP are dropped and counted.
    const ping = await topo.status(vm, 'ping', ['-c', '1', '-W', '1', '192.168.64.1']);
    assert.notEqual(ping.code, 0);
    const c = await softnet.counters();
    assert.ok(
      (c.drops['arp-sender-spoofed'] ?? 0) + (c.drops['ipv4-before-lease'] ?? 0) > 0,
      JSON.stringify(c.drops),
    );
  });

  test('a full pool gets no offer, a log line and a counted reason, and softnet goes on', async () => {
    const state = `${topo.dir}/s5`;
    mkdirSync(state, { recursive: true });
    const expires = new Date(Date.now() + 3600_000).toISOString();
    const leases = [2, 3, 4, 5, 6].map((n) => ({
      key: `vm:other-${n}`,
      mac: `52:54:00:00:05:0${n}`,
      ip: `192.168.77.${n}`,
      expires,
    }));
    writeFileSync(`${state}/softnet0.leases.json`, JSON.stringify({ version: 1, leases }));
    const host = await topo.netns('h5');
    const vm = await topo.netns('v5');
    const softnet = await softnetForVm(topo, host, vm, '52:54:00:00:05:01', [
      '--state-dir',
      state,
      '--subnet',
      '192.168.77.0/29',
    ]);
    const client = await topo.status(vm, 'busybox', [
      'udhcpc',
      '-i',
      'eth0',
      '-f',
      '-q',
      '-n',
      '-t',
      '2',
      '-T',
      '1',
      '-s',
      '/bin/true',
    ]);
    assert.notEqual(client.code, 0, 'udhcpc got no lease');
    await softnet.waitFor(/dhcp pool exhausted/);
    const c = await softnet.counters();
    assert.ok(c.drops['dhcp-pool-exhausted'] >= 2, JSON.stringify(c.drops));
    assert.equal(softnet.child.exitCode, null);
  });
});

async function waitUntil(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(50);
  }
}

describe('--user and --group', () => {
  const topo = new Topology();
  after(() => topo.cleanup());

  test('softnet drops root after set-up and still serves and stores leases', async () => {
    const host = await topo.netns('h');
    const vm = await topo.netns('v');
    const state = `${topo.dir}/state`;
    // Under a directory only root may enter, the dropped user could not write its leases: softnet says so.
    const refused = await topo.status(
      host,
      process.execPath,
      withControl(topo, [
        SOFTNET,
        '--vm-netns',
        `/run/netns/${vm}`,
        '--vm-mac-address',
        '52:54:00:00:06:01',
        '--state-dir',
        state,
        '--user',
        'nobody',
        '--group',
        'nogroup',
      ]),
    );
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /^softnet: --state-dir: .*EACCES.*\n$/);
    chmodSync(topo.dir, 0o711);
    const softnet = await softnetForVm(topo, host, vm, '52:54:00:00:06:01', [
      '--state-dir',
      state,
      '--user',
      'nobody',
      '--group',
      'nogroup',
    ]);
    const status = readFileSync(`/proc/${softnet.child.pid}/status`, 'utf8');
    assert.match(status, /^Uid:\s+65534\s+65534\s+65534\s+65534$/m);
    const lease = await new Udhcpc(topo, vm).once();
    const file = JSON.parse(readFileSync(`${state}/softnet0.leases.json`, 'utf8'));
    assert.equal(file.leases[0].ip, lease.ip);
    await softnet.stop();
    const links = await topo.exec(host, 'ip', ['-o', 'link']);
    assert.doesNotMatch(links.stdout, /softnet0/, 'the host link went away with softnet');
  });
});
