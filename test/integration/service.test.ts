// `softnet serve` with the real binary: per-VM processes hand their VMs to it; named networks are added,
// listed, reserved in and removed; a reserved address reaches its VM by DHCP or as a static one; SIGHUP
// reloads the config file; and a SIGKILL of the service in the middle of traffic loses nothing.

import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Udhcpc } from '../lib/clients.js';
import { type Softnet, softnetCommand, softnetForVm, startSoftnet } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import {
  echoAcrossGo,
  GATEWAY,
  SERVER,
  startTcpEcho,
  UPLINK,
  until,
  vmOnline,
  WORLD_NET,
  World,
} from '../lib/world.js';

const NAT_ARGS = ['--uplink', UPLINK, '--allow', WORLD_NET];

async function pings(topo: Topology, ns: string, dst: string, count = 2): Promise<number> {
  const r = await topo.status(ns, 'ping', ['-n', '-c', String(count), '-i', '0.2', '-W', '1', dst], 20_000);
  return Number((r.stdout + r.stderr).match(/(\d+) received/)?.[1] ?? 0);
}

/** Starts `softnet serve` in the world's host namespace with the topology's state directory. */
async function serve(world: World, extra: string[] = []): Promise<Softnet> {
  const s = startSoftnet(world.topo, world.host, [
    'serve',
    '--state-dir',
    `${world.topo.dir}/state`,
    '--uplink',
    UPLINK,
    '--reattach-grace',
    '5',
    ...extra,
  ]);
  await s.waitFor(/softnet: serving /);
  return s;
}

async function json(topo: Topology, ns: string, args: string[]): Promise<unknown> {
  const r = await softnetCommand(topo, ns, [...args, '--json']);
  assert.equal(r.code, 0, `softnet ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('softnet serve', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  const config = `${topo.dir}/softnet.json`;
  let service: Softnet;
  after(() => world.cleanup());

  before(
    async () => {
      await world.start({ fileMb: 1 });
      writeFileSync(config, JSON.stringify({ networks: [{ name: 'ci', cidr: '10.88.0.0/24' }] }));
      service = await serve(world, ['--config', config]);
    },
    { timeout: 60_000 },
  );

  test('a per-VM softnet hands its VM to the service, and the service stays when it goes', {
    timeout: 60_000,
  }, async () => {
    const ns = await topo.netns('a');
    const a = await softnetForVm(topo, world.host, ns, '52:54:00:5e:00:0a', NAT_ARGS);
    assert.equal((await a.waitFor(/ started .*engine=(\S+)/))[1], String(service.child.pid));
    const lease = await vmOnline(topo, ns);
    await service.waitFor(new RegExp(`lease bound ip=${lease.ip.replaceAll('.', '\\.')} `));
    assert.equal(await pings(topo, ns, SERVER), 2);
    assert.deepEqual(await a.stop(), { code: 0, signal: null });
    await service.waitFor(/vm detached .*reason=per-vm-process-stopped/);
    assert.equal(service.child.exitCode, null, 'the service goes on');
    assert.deepEqual(await json(topo, world.host, ['network', 'list-attached', 'default']), []);
  });

  test('a VM with two NICs on two networks: a per-VM process for each, a lease on each', {
    timeout: 90_000,
  }, async () => {
    const ns = await topo.netns('m');
    const nic0 = await softnetForVm(topo, world.host, ns, '52:54:00:5e:00:1a', NAT_ARGS);
    const nic1 = await softnetForVm(topo, world.host, ns, '52:54:00:5e:00:1b', [
      '--network',
      'ci',
      '--vm-ifname',
      'eth1',
    ]);
    const lease0 = await vmOnline(topo, ns, 'eth0');
    const lease1 = await new Udhcpc(topo, ns, 'eth1').once();
    assert.match(lease0.ip, /^192\.168\.64\./);
    assert.match(lease1.ip, /^10\.88\.0\./);
    assert.equal(await pings(topo, ns, '10.88.0.1'), 2, "the VM -> the ci network's gateway, on eth1");
    assert.equal(await pings(topo, ns, SERVER), 2, 'the VM -> the world, through the default network');
    for (const ip of [lease0.ip, lease1.ip])
      assert.equal(await pings(topo, world.host, ip), 2, `host -> ${ip}`);
    const on = async (net: string) =>
      (
        (await json(topo, world.host, ['network', 'list-attached', net])) as Array<{
          ip: string;
          mac: string;
        }>
      )
        .filter((v) => v.mac.startsWith('52:54:00:5e:00:1'))
        .map((v) => `${v.mac} ${v.ip}`);
    assert.deepEqual(await on('default'), [`52:54:00:5e:00:1a ${lease0.ip}`]);
    assert.deepEqual(await on('ci'), [`52:54:00:5e:00:1b ${lease1.ip}`]);
    await nic0.stop();
    await nic1.stop();
  });

  test("networks: the default one, the config file's, and one added, listed, used, reserved in and removed", {
    timeout: 90_000,
  }, async () => {
    const add = await softnetCommand(topo, world.host, [
      'network',
      'add',
      'lab',
      '--cidr',
      '10.77.0.0/24',
      '--dhcp-range',
      '10.77.0.100-10.77.0.120',
    ]);
    assert.equal(add.code, 0, add.stderr);
    const nets = (await json(topo, world.host, ['network', 'ls'])) as Array<Record<string, unknown>>;
    assert.deepEqual(nets.map((n) => n.name).sort(), ['ci', 'default', 'lab']);
    const lab = nets.find((n) => n.name === 'lab')!;
    assert.equal(lab.hostLink, 'sn-lab');
    assert.equal(lab.gateway, '10.77.0.1');
    assert.equal(lab.dhcpRange, '10.77.0.100-10.77.0.120');
    const addrs = await topo.exec(world.host, 'ip', ['-4', '-br', 'addr', 'show', 'sn-lab']);
    assert.match(addrs.stdout, /10\.77\.0\.1\/24/);
    const text = await softnetCommand(topo, world.host, ['network', 'ls']);
    assert.match(text.stdout, /^NAME\s+TYPE\s+CIDR\s+GATEWAY/);

    const ns = await topo.netns('b');
    const b = await softnetForVm(topo, world.host, ns, '52:54:00:5e:00:0b', ['--network', 'lab']);
    const lease = await vmOnline(topo, ns);
    assert.match(lease.ip, /^10\.77\.0\.1(0\d|1\d|20)$/, 'from the DHCP range');
    assert.equal(lease.router, '10.77.0.1');
    const attached = (await json(topo, world.host, ['network', 'list-attached', 'lab'])) as Array<{
      ip: string;
    }>;
    assert.deepEqual(
      attached.map((v) => v.ip),
      [lease.ip],
    );

    // A network with a VM attached is not removed; the default network never is.
    const busy = await softnetCommand(topo, world.host, ['network', 'rm', 'lab']);
    assert.equal(busy.code, 2);
    assert.match(busy.stderr, /^softnet: NAME: network lab has 1 VMs attached\n$/);
    const dflt = await softnetCommand(topo, world.host, ['network', 'rm', 'default']);
    assert.equal(dflt.code, 2);
    await b.stop();
    await until('lab is empty', async () => {
      const list = (await json(topo, world.host, ['network', 'list-attached', 'lab'])) as unknown[];
      return list.length === 0;
    });
    const rm = await softnetCommand(topo, world.host, ['network', 'rm', 'lab']);
    assert.equal(rm.code, 0, rm.stderr);
    const links = await topo.exec(world.host, 'ip', ['-o', 'link']);
    assert.doesNotMatch(links.stdout, /sn-lab/);
    const saved = JSON.parse(readFileSync(`${topo.dir}/state/networks.json`, 'utf8')) as unknown[];
    assert.deepEqual(saved, []);
  });

  test('a reserved address: by DHCP to its VM, working at once for a static VM, never to another', {
    timeout: 90_000,
  }, async () => {
    for (const [mac, ip] of [
      ['52:54:00:5e:00:50', '192.168.64.50'],
      ['52:54:00:5e:00:51', '192.168.64.51'],
    ]) {
      const r = await softnetCommand(topo, world.host, ['network', 'reserve', 'default', mac, ip]);
      assert.equal(r.code, 0, r.stderr);
    }
    const taken = await softnetCommand(topo, world.host, [
      'network',
      'reserve',
      'default',
      '52:54:00:5e:00:52',
      '192.168.64.50',
    ]);
    assert.equal(taken.code, 2);
    assert.match(taken.stderr, /reserved for 52:54:00:5e:00:50/);

    const dyn = await topo.netns('dyn');
    await softnetForVm(topo, world.host, dyn, '52:54:00:5e:00:50', NAT_ARGS);
    assert.equal((await vmOnline(topo, dyn)).ip, '192.168.64.50');

    // The static guest never speaks DHCP: the source checks accept its reserved address from the start.
    const st = await topo.netns('static');
    await softnetForVm(topo, world.host, st, '52:54:00:5e:00:51', NAT_ARGS);
    await topo.exec(st, 'ip', ['addr', 'add', '192.168.64.51/24', 'dev', 'eth0']);
    await topo.exec(st, 'ip', ['route', 'add', 'default', 'via', GATEWAY]);
    assert.equal(await pings(topo, st, GATEWAY), 2, 'the static VM reaches the gateway');
    assert.equal(await pings(topo, world.host, '192.168.64.51'), 2, 'the host reaches the static VM');
    assert.equal(await pings(topo, st, SERVER), 2, 'and the world');

    // Another VM asking for a reserved address gets another.
    const other = await topo.netns('other');
    await softnetForVm(topo, world.host, other, '52:54:00:5e:00:53', NAT_ARGS);
    const lease = await new Udhcpc(topo, other).once(['-r', '192.168.64.51']);
    assert.notEqual(lease.ip, '192.168.64.51');
    assert.notEqual(lease.ip, '192.168.64.50');
    const kept = JSON.parse(readFileSync(`${topo.dir}/state/reservations.json`, 'utf8'));
    assert.deepEqual(kept.default, {
      '52:54:00:5e:00:50': '192.168.64.50',
      '52:54:00:5e:00:51': '192.168.64.51',
    });
  });

  test('--dhcp-host on the per-VM form reserves the address for its VM', { timeout: 60_000 }, async () => {
    const ns = await topo.netns('dh');
    await softnetForVm(topo, world.host, ns, '52:54:00:5e:00:77', [
      ...NAT_ARGS,
      '--dhcp-host',
      '52:54:00:5e:00:77=192.168.64.77',
    ]);
    assert.equal((await vmOnline(topo, ns)).ip, '192.168.64.77');
  });

  test('SIGHUP reloads the config file: a network it gained opens, one it lost closes', {
    timeout: 60_000,
  }, async () => {
    writeFileSync(config, JSON.stringify({ networks: [{ name: 'ci2', cidr: '10.89.0.0/24' }] }));
    const from = service.lines.length;
    service.child.kill('SIGHUP');
    await service.waitFor(/config reloaded/, 10_000, from);
    const nets = (await json(topo, world.host, ['network', 'ls'])) as Array<{ name: string }>;
    assert.deepEqual(nets.map((n) => n.name).sort(), ['ci2', 'default']);
  });
});

describe('a SIGKILL of the service in the middle of traffic, and a restart', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  const ECHO_PORT = 9010;
  after(() => world.cleanup());

  test('every VM keeps its address, its external MAC and its TCP connection; no address is handed out twice', {
    timeout: 150_000,
  }, async () => {
    await world.start({ fileMb: 1 });
    startTcpEcho(world, ECHO_PORT);
    let service = await serve(world);
    const vms: Array<{ ns: string; softnet: Softnet; ip: string; ext: string }> = [];
    for (const name of ['k1', 'k2']) {
      const ns = await topo.netns(name);
      const softnet = await softnetForVm(topo, world.host, ns, `52:54:00:4b:00:0${vms.length + 1}`, NAT_ARGS);
      vms.push({ ns, softnet, ip: (await vmOnline(topo, ns)).ip, ext: await softnet.externalMac() });
    }
    // A TCP connection through NAT that sends a line, then another when told.
    const go = `${topo.dir}/go`;
    const out = await echoAcrossGo(topo, vms[0].ns, ECHO_PORT, go);
    await until(
      'a flow snapshot',
      async () => existsSync(`${topo.dir}/state/nat-${UPLINK}-61000-64999.flows.json`),
      15_000,
    );
    // Traffic while the service dies: pings from the second VM, bounded in count.
    const pinger = topo.spawn(vms[1].ns, 'ping', ['-n', '-c', '100', '-i', '0.05', SERVER]);
    await new Promise((r) => setTimeout(r, 1000));
    await service.stop('SIGKILL');
    await new Promise((r) => pinger.once('exit', r));
    service = await serve(world);
    for (const v of vms) {
      await v.softnet.waitFor(/vm handed over /, 30_000);
      assert.equal(v.softnet.child.exitCode, null, 'the per-VM process waited for the service');
    }
    await service.waitFor(/nat mappings restored count=1 /, 20_000);
    // No DHCP since: the VMs go on with the addresses they had, at the external MACs they had.
    for (const v of vms) {
      await until(
        `${v.ns} reaches the world`,
        async () => (await pings(topo, v.ns, SERVER, 1)) === 1,
        20_000,
      );
    }
    const listed = (await JSON.parse(
      (
        await softnetCommand(topo, world.host, ['network', 'list-attached', 'default', '--json'])
      ).stdout,
    )) as Array<{ ip: string; externalMac: string }>;
    assert.deepEqual(listed.map((v) => v.ip).sort(), vms.map((v) => v.ip).sort());
    assert.deepEqual(listed.map((v) => v.externalMac).sort(), vms.map((v) => v.ext).sort());
    writeFileSync(go, '');
    await until('the echo after the restart', async () => out().includes('after'), 30_000);
    assert.equal(out(), 'before\nafter\n');
    // A new VM gets an address none of the others holds.
    const ns = await topo.netns('k3');
    await softnetForVm(topo, world.host, ns, '52:54:00:4b:00:03', NAT_ARGS);
    const third = await vmOnline(topo, ns);
    assert.ok(!vms.some((v) => v.ip === third.ip), `${third.ip} was handed out twice`);
  });

  test('a VM whose per-VM process died while the service was down is freed after the grace', {
    timeout: 90_000,
  }, async () => {
    // The service of the test above runs; one more VM, then the service and that VM's process both die.
    const ns = await topo.netns('gone');
    const softnet = await softnetForVm(topo, world.host, ns, '52:54:00:4b:00:0f', NAT_ARGS);
    const lease = await vmOnline(topo, ns);
    const list = await softnetCommand(topo, world.host, ['network', 'list-attached', 'default', '--json']);
    const engine = Number((await softnet.waitFor(/ started .*engine=(\d+)/))[1]);
    process.kill(engine, 'SIGKILL');
    softnet.child.kill('SIGKILL');
    assert.match(list.stdout, new RegExp(lease.ip.replaceAll('.', '\\.')));
    const service = await serve(world);
    await service.waitFor(/vm not back .*mac=52:54:00:4b:00:0f/, 20_000);
    await service.waitFor(
      new RegExp(`lease released ip=${lease.ip.replaceAll('.', '\\.')} .*reason=vm-not-back`),
    );
  });
});
