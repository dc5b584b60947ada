// The NAT tests' world works by the kernel's own path, with the host namespace as the client: if a NAT test
// fails while these pass, the world is not to blame. No softnet here.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Topology } from '../lib/topology.js';
import {
  capture,
  dig,
  fetchSha256,
  HOST_IP,
  iperf3,
  learnedMtu,
  OUTSIDE,
  PORTS,
  ROUTER_HOST_SIDE,
  SERVER,
  SERVER_SMALL_MTU,
  SMALL_MTU,
  UPLINK,
  udpEcho,
  udpReceivedByServer,
  WORLD_NAME,
  World,
} from '../lib/world.js';

const mbit = (bps: number) => (bps / 1e6).toFixed(0);

describe('the world, reached from the host namespace by the kernel', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  after(() => world.cleanup());
  before(() => world.start(), { timeout: 60_000 });

  test('only the router forwards', async () => {
    const get = async (ns: string) =>
      (await topo.exec(ns, 'sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim();
    assert.equal(await get(world.router), '1');
    assert.equal(await get(world.host), '0');
  });

  test('curl fetches the 100 MB file with its sha256', { timeout: 120_000 }, async (t) => {
    const got = await fetchSha256(topo, world.host, world.file.url);
    t.diagnostic(`${mbit(got.speed * 8)} Mbit/s`);
    assert.equal(got.bytes, world.file.bytes);
    assert.equal(got.sha256, world.file.sha256);
  });

  test('iperf3 TCP both ways and UDP', { timeout: 60_000 }, async (t) => {
    const up = await iperf3(topo, world.host, 1);
    const down = await iperf3(topo, world.host, 1, ['-R']);
    const udp = await iperf3(topo, world.host, 1, ['-u', '-b', '20M']);
    t.diagnostic(`up ${mbit(up.end.sum_received!.bits_per_second)} Mbit/s`);
    t.diagnostic(`down ${mbit(down.end.sum_received!.bits_per_second)} Mbit/s`);
    assert.ok(up.end.sum_received!.bytes > 0);
    assert.ok(down.end.sum_received!.bytes > 0);
    const server = udpReceivedByServer(udp);
    t.diagnostic(`udp: the server got ${server.received} of ${server.total} datagrams`);
    assert.ok(server.received > 0);
  });

  test('ping and traceroute through the router', async () => {
    const ping = await topo.exec(world.host, 'ping', ['-n', '-c', '2', '-i', '0.2', '-W', '2', SERVER]);
    assert.match(ping.stdout, /2 received/);
    const tr = await topo.exec(world.host, 'traceroute', ['-n', '-q', '1', '-w', '2', SERVER], 30_000);
    const hops = tr.stdout.split('\n').slice(1).filter(Boolean);
    assert.match(hops[0], new RegExp(`^\\s*1\\s+${ROUTER_HOST_SIDE.replace(/\./g, '\\.')}\\s`), tr.stdout);
    assert.match(hops[hops.length - 1], new RegExp(`\\s${SERVER.replace(/\./g, '\\.')}\\s`), tr.stdout);
  });

  test('dnsmasq answers over UDP and TCP, and is the host namespace resolver', async () => {
    assert.equal(await dig(topo, world.host, SERVER, WORLD_NAME), SERVER);
    assert.equal(await dig(topo, world.host, SERVER, WORLD_NAME, true), SERVER);
    assert.equal(await dig(topo, world.host, null, WORLD_NAME), SERVER);
    const hosts = await topo.exec(world.host, 'getent', ['hosts', WORLD_NAME]);
    assert.match(hosts.stdout, new RegExp(`^${SERVER.replace(/\./g, '\\.')}\\s`));
    assert.match(world.dnsLog(), /query\[A\] world\.test/);
  });

  test('the servers see the host uplink address', async () => {
    const peer = await topo.exec(world.host, 'curl', ['-sS', '-m', '5', `http://${SERVER}:${PORTS.peer}/`]);
    assert.match(peer.stdout, new RegExp(`^${HOST_IP.replace(/\./g, '\\.')} \\d+\\n$`));
    assert.ok(world.peers().includes(peer.stdout.trim()));
    const probe = `probe-${process.pid}`;
    await topo.exec(world.host, 'curl', [
      '-sS',
      '-m',
      '5',
      '-o',
      '/dev/null',
      `http://${SERVER}:${PORTS.http}/small.txt?${probe}`,
    ]);
    const line = world.httpLog().find((l) => l.includes(probe));
    assert.ok(line?.startsWith(`${HOST_IP} `), world.httpLog().join('\n'));
  });

  test('UDP echo returns the payload', async () => {
    const payload = Buffer.from(`echo ${process.pid} ${Date.now()}`);
    const r = await udpEcho(topo, world.host, payload);
    assert.deepEqual(r.reply, payload);
    assert.equal(r.from, SERVER);
    assert.ok(world.echoes().some((l) => l.startsWith(`${HOST_IP} `)));
  });

  test('fragments both ways, and a path MTU the router teaches', async () => {
    const big = Buffer.alloc(4000, 7);
    assert.deepEqual((await udpEcho(topo, world.host, big)).reply, big);
    const ping = await topo.exec(world.host, 'ping', ['-n', '-c', '1', '-W', '2', '-s', '3000', SERVER]);
    assert.match(ping.stdout, /1 received/);
    await topo.exec(world.host, 'ip', ['route', 'flush', 'cache']);
    assert.equal(await learnedMtu(topo, world.host, SERVER_SMALL_MTU), null);
    const dgram = Buffer.alloc(1400, 9);
    assert.deepEqual((await udpEcho(topo, world.host, dgram, SERVER_SMALL_MTU)).reply, dgram);
    assert.equal(await learnedMtu(topo, world.host, SERVER_SMALL_MTU), SMALL_MTU);
    assert.equal(await learnedMtu(topo, world.host, SERVER), null);
  });

  test(`${OUTSIDE} is reachable by the kernel's path, and a capture on the uplink sees it`, async () => {
    const cap = await capture(topo, world.host, UPLINK, `host ${OUTSIDE}`);
    const r = await topo.exec(world.host, 'curl', [
      '-sS',
      '-m',
      '5',
      `http://${OUTSIDE}:${PORTS.http}/small.txt`,
    ]);
    assert.equal(r.stdout, 'small\n');
    const seen = await cap.stop();
    assert.match(
      seen,
      new RegExp(
        `${HOST_IP.replace(/\./g, '\\.')}\\.\\d+ > ${OUTSIDE.replace(/\./g, '\\.')}\\.${PORTS.http}:`,
      ),
    );
  });
});

describe('a world cleans up after itself', () => {
  test('no namespace, process, resolver file or temp file is left', { timeout: 60_000 }, async () => {
    const world = new World(new Topology());
    try {
      await world.start({ fileMb: 1 });
    } catch (e) {
      await world.cleanup();
      throw e;
    }
    const names = [world.host, world.router, world.world];
    const pids = world.serverPids();
    const dirs = world.resolverDirs();
    assert.equal(pids.length, 6);
    assert.equal(dirs.length, 2);
    assert.ok(dirs.every((d) => existsSync(`${d}/resolv.conf`)));
    await world.cleanup();
    for (const ns of names) assert.ok(!existsSync(`/run/netns/${ns}`), ns);
    for (const d of dirs) assert.ok(!existsSync(d), d);
    for (const pid of pids) assert.throws(() => process.kill(pid, 0), /ESRCH/, `pid ${pid}`);
    assert.ok(!existsSync(world.topo.dir));
  });
});
