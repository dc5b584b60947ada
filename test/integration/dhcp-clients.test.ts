// Real DHCP clients get a short lease from softnet through --vm-netns; the VM and the host reach each other.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Dhclient, dhcpcdOnce, Udhcpc } from '../lib/clients.js';
import { type Softnet, softnetForVm } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import { capture } from '../lib/world.js';

const GATEWAY = '192.168.64.1';

describe('busybox udhcpc', () => {
  const topo = new Topology();
  let host: string;
  let vm: string;
  let softnet: Softnet;
  after(() => topo.cleanup());

  before(async () => {
    host = await topo.netns('host');
    vm = await topo.netns('vm');
    softnet = await softnetForVm(topo, host, vm, '52:54:00:00:00:01');
  });

  test('gets a 600 s lease, and no DHCP frame reaches the host link', async () => {
    const sniffer = await capture(topo, host, 'softnet0', 'udp port 67 or udp port 68 or icmp');
    const lease = await new Udhcpc(topo, vm).once();
    assert.equal(lease.lease, 600);
    assert.equal(lease.router, GATEWAY);
    assert.match(lease.ip, /^192\.168\.64\.\d+$/);
    await softnet.waitFor(
      new RegExp(`lease bound ip=${lease.ip.replace(/\./g, '\\.')} mac=52:54:00:00:00:01 lease=600`),
    );
    // Traffic the host link does carry, so the capture is known to work while it sees no DHCP.
    await topo.exec(host, 'ping', ['-c', '1', '-W', '2', lease.ip]);
    const seen = await sniffer.stop();
    assert.match(seen, /ICMP echo request/, `the capture saw the ping, so it was running:\n${seen}`);
    assert.doesNotMatch(seen, /BOOTP|DHCP|\.6[78]:/, `DHCP leaked onto the host link:\n${seen}`);
    const file = JSON.parse(readFileSync(`${topo.dir}/state/softnet0.leases.json`, 'utf8'));
    assert.equal(file.leases.length, 1);
    assert.equal(file.leases[0].ip, lease.ip);
  });

  test('the VM pings the gateway and the host pings the VM', async () => {
    const ip = new Udhcpc(topo, vm).last().ip;
    const fromVm = await topo.exec(vm, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GATEWAY]);
    assert.match(fromVm.stdout, /3 received/);
    const fromHost = await topo.exec(host, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', ip]);
    assert.match(fromHost.stdout, /3 received/);
    // The host knows the VM by its external MAC, never by the guest's own.
    const neigh = await topo.exec(host, 'ip', ['neigh', 'show', ip]);
    assert.match(neigh.stdout, new RegExp(`lladdr ${await softnet.externalMac()}`));
    assert.doesNotMatch(neigh.stdout, /52:54:00:00:00:01/);
  });

  test('the VM reaches a TCP service of the host at the gateway address', async () => {
    mkdirSync(`${topo.dir}/www`);
    writeFileSync(`${topo.dir}/www/hello.txt`, 'hello from the host\n');
    topo.spawn(host, 'busybox', ['httpd', '-f', '-p', '8080', '-h', `${topo.dir}/www`]);
    let body = '';
    for (let i = 0; i < 50 && body === ''; i++) {
      const r = await topo.status(vm, 'curl', ['-sS', '-m', '2', `http://${GATEWAY}:8080/hello.txt`]);
      body = r.stdout;
      if (body === '') await sleep(100);
    }
    assert.equal(body, 'hello from the host\n');
  });

  test('the counters show both directions of each port', async () => {
    const c = await softnet.counters();
    const vmPort = Object.keys(c).find((k) => k.startsWith('port:/run/netns/'));
    assert.ok(vmPort, JSON.stringify(c));
    assert.ok(c[vmPort].rx_frames > 0 && c[vmPort].tx_frames > 0);
    assert.ok(c['port:softnet0'].rx_frames > 0 && c['port:softnet0'].tx_frames > 0);
  });
});

describe('ISC dhclient', () => {
  const topo = new Topology();
  after(() => topo.cleanup());

  test('gets a 600 s lease and its release frees it', async () => {
    const host = await topo.netns('host');
    const vm = await topo.netns('vm');
    const softnet = await softnetForVm(topo, host, vm, '52:54:00:00:00:02');
    const client = new Dhclient(topo, vm);
    const lease = await client.obtain();
    assert.equal(lease.lease, 600);
    assert.equal(lease.router, GATEWAY);
    await topo.exec(vm, 'ping', ['-c', '1', '-W', '2', GATEWAY]);
    await client.release();
    await softnet.waitFor(new RegExp(`lease released ip=${lease.ip.replace(/\./g, '\\.')}`));
    const file = JSON.parse(readFileSync(`${topo.dir}/state/softnet0.leases.json`, 'utf8'));
    assert.deepEqual(file.leases, []);
  });
});

describe('dhcpcd', () => {
  const topo = new Topology();
  after(() => topo.cleanup());

  test('gets a 600 s lease after probing the address', async () => {
    const host = await topo.netns('host');
    const vm = await topo.netns('vm');
    const ifname = `d${topo.id}`.slice(0, 15);
    const softnet = await softnetForVm(topo, host, vm, '52:54:00:00:00:03', ['--vm-ifname', ifname]);
    const out = await dhcpcdOnce(topo, vm, ifname);
    const m = out.match(/leased (\S+) for (\d+) seconds/);
    assert.ok(m, out);
    assert.equal(m[2], '600');
    await softnet.waitFor(new RegExp(`lease bound ip=${m[1].replace(/\./g, '\\.')}`));
    await topo.exec(vm, 'ping', ['-c', '1', '-W', '2', GATEWAY]);
  });
});
