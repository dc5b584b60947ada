// One engine for many VMs, with the real binary: per-VM processes handing their VMs to the engine of their
// control socket, VMs apart unless their rules say otherwise, the hand-over when the engine's own VM goes,
// a VM whose tool died, and ten clones of one MAC side by side.

import assert from 'node:assert/strict';
import { closeSync, openSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { connectEngine } from '../../src/control/client.js';
import { ControlError, type Message } from '../../src/control/protocol.js';
import { native } from '../../src/native.js';
import { type Neighbour, neighbours } from '../lib/lan.js';
import { controlSocket, type Softnet, softnetCommand, softnetForVm } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import {
  capture,
  fetchSha256,
  GATEWAY,
  SERVER,
  UPLINK,
  until,
  vmOnline,
  WORLD_NET,
  World,
} from '../lib/world.js';

const NAT_ARGS = ['--uplink', UPLINK, '--allow', WORLD_NET];
/** NAT_ARGS for a VM whose rules also allow the other VMs of its subnet. */
const NAT_AND_PEERS = ['--uplink', UPLINK, '--allow', `${WORLD_NET},192.168.64.0/24`];

/** Pings `dst` from `ns` `count` times; how many answers came. */
async function pings(topo: Topology, ns: string, dst: string, count = 2): Promise<number> {
  const r = await topo.status(ns, 'ping', ['-n', '-c', String(count), '-i', '0.2', '-W', '1', dst], 20_000);
  return Number((r.stdout + r.stderr).match(/(\d+) received/)?.[1] ?? 0);
}

/** The engine pid a per-VM softnet names in its `started` line ('self' when it runs the engine). */
async function engineOf(s: Softnet): Promise<string> {
  return (await s.waitFor(/ started .*engine=(\w+)$/))[1];
}

describe('per-VM processes share one engine', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  after(() => world.cleanup());
  const vms: Record<string, { ns: string; softnet: Softnet; ip: string; mac: string }> = {};

  async function vm(name: string, mac: string, args = NAT_ARGS) {
    const ns = await topo.netns(name);
    const softnet = await softnetForVm(topo, world.host, ns, mac, args);
    const lease = await vmOnline(topo, ns);
    vms[name] = { ns, softnet, ip: lease.ip, mac };
    return vms[name];
  }

  before(() => world.start({ fileMb: 1 }), { timeout: 60_000 });

  test("the second VM is handed to the first one's engine; both get leases and reach the world", {
    timeout: 90_000,
  }, async () => {
    const a = await vm('a', '52:54:00:e0:00:0a');
    const b = await vm('b', '52:54:00:e0:00:0b');
    assert.equal(await engineOf(a.softnet), 'self');
    assert.equal(await engineOf(b.softnet), String(a.softnet.child.pid));
    assert.notEqual(a.ip, b.ip);
    for (const v of [a, b]) {
      const got = await fetchSha256(topo, v.ns, world.file.url, 30);
      assert.equal(got.sha256, world.file.sha256);
    }
    // B's own events reach B's process, though A's runs the engine.
    await b.softnet.waitFor(new RegExp(`lease bound ip=${b.ip.replaceAll('.', '\\.')} `));
  });

  test('network list-attached and show describe both VMs; the host sees each at its external MAC', async () => {
    const { a, b } = vms;
    const r = await softnetCommand(topo, world.host, ['network', 'list-attached', 'default', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as Array<Record<string, string>>;
    assert.deepEqual(list.map((v) => v.ip).sort(), [a.ip, b.ip].sort());
    for (const v of list) {
      assert.equal(v.hostDevice, 'softnet0');
      assert.match(v.externalMac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      assert.ok(v.leaseExpires && Date.parse(v.leaseExpires) > Date.now());
      assert.match(v.ipv6Prefix, /^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}:[12]::\/64$/);
    }
    assert.notEqual(list[0].ipv6Prefix, list[1].ipv6Prefix, 'each VM has its own /64');
    const text = await softnetCommand(topo, world.host, ['network', 'list-attached', 'default']);
    assert.match(
      text.stdout,
      /^VM\s+INTERNAL MAC\s+EXTERNAL MAC\s+IP\s+IPV6 PREFIX\s+LEASE EXPIRY\s+HOST DEVICE\n/,
    );
    const show = await softnetCommand(topo, world.host, ['show', b.ip, '--json']);
    const info = JSON.parse(show.stdout) as Record<string, unknown>;
    assert.equal(info.mac, b.mac);
    assert.equal(info.externalMac, await b.softnet.externalMac());
    assert.equal(info.type, 'shared');
    assert.ok((info.counters as Record<string, number>).rx_frames > 0);
    await pings(topo, world.host, a.ip);
    await pings(topo, world.host, b.ip);
    const neigh = await neighbours(topo, world.host);
    for (const v of [a, b]) {
      const entry = neigh.find((n: Neighbour) => n.dst === v.ip);
      assert.equal(entry?.lladdr, await v.softnet.externalMac(), JSON.stringify(neigh));
    }
    const none = await softnetCommand(topo, world.host, ['show', '10.9.9.9']);
    assert.equal(none.code, 1);
    assert.match(none.stderr, /^softnet: no VM 10\.9\.9\.9 is attached\n$/);
  });

  test('bad requests on the control socket are refused one by one, and the engine goes on', async () => {
    const ch = connectEngine(controlSocket(topo), { message() {}, closed() {} })!;
    const refusal = async (op: string, args: Message, fd = -1) => {
      try {
        await ch.request(op, args, fd);
      } catch (e) {
        if (e instanceof ControlError) return `${e.flag ?? ''} ${e.message}`;
        throw e;
      }
      return 'accepted';
    };
    const vm = { mac: '52:54:00:e0:00:99', port: 'bad' };
    const network = { cidr: '192.168.64.0/24' };
    assert.match(await refusal('attach', { vm, network }), /needs the VM port fd/);
    const file = openSync(`${topo.dir}/not-a-port`, 'w');
    assert.match(await refusal('attach', { vm, network }, file), /^--vm-fd fd \d+ is neither/);
    closeSync(file);
    const [mine, theirs] = native.socketpair('dgram');
    assert.match(
      await refusal('attach', { vm, network: { cidr: '300.1.2.0/24' } }, theirs),
      /^--subnet '300\.1\.2\.0\/24' is not an IPv4 CIDR/,
    );
    assert.match(await refusal('attach', { vm: { mac: 'zz' }, network }, theirs), /^--vm-mac-address 'zz'/);
    assert.match(
      await refusal('attach', { vm: { ...vm, shell: 'rm -rf /' }, network }, theirs),
      /^--shell is not a VM setting/,
    );
    assert.match(await refusal('frobnicate', {}), /unknown request 'frobnicate'/);
    assert.match(await refusal('show', {}), /'vm' must be a string/);
    assert.match(
      await refusal('network.add', { spec: { name: 'x', cidr: '10.1.0.0/24' } }),
      /needs the softnet service/,
    );
    native.closeFd(mine);
    native.closeFd(theirs);
    ch.close();
    assert.equal(await pings(topo, vms.a.ns, GATEWAY), 2, 'the engine still serves');
  });

  test('VMs of one engine do not reach each other unless their rules allow it', {
    timeout: 60_000,
  }, async () => {
    const { a, b } = vms;
    assert.equal(await pings(topo, a.ns, b.ip), 0, 'A reached B with no rule allowing it');
    const c = await vm('c', '52:54:00:e0:00:0c', NAT_AND_PEERS);
    const d = await vm('d', '52:54:00:e0:00:0d', NAT_AND_PEERS);
    assert.equal(await pings(topo, c.ns, d.ip), 2, 'C and D, both allowing the subnet');
    const neigh = await neighbours(topo, c.ns);
    assert.equal(neigh.find((n) => n.dst === d.ip)?.lladdr, await d.softnet.externalMac());
    assert.equal(await pings(topo, c.ns, a.ip), 0, 'C reaches A, whose rules do not allow C');
  });

  test("when the engine's own VM stops, another per-VM process takes over and every VM keeps its address", {
    timeout: 90_000,
  }, async () => {
    const { a, b, c, d } = vms;
    const exit = await a.softnet.stop('SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null });
    for (const v of [b, c, d]) await v.softnet.waitFor(/vm handed over /, 20_000);
    const hosts = await Promise.all([b, c, d].map((v) => v.softnet.waitFor(/vm handed over .*engine=(\w+)/)));
    assert.equal(hosts.filter((m) => m[1] === 'self').length, 1, 'exactly one became the engine');
    // No DHCP since: each VM goes on with the address it had.
    for (const v of [b, c, d]) {
      await until(
        `${v.ns} reaches the gateway again`,
        async () => (await pings(topo, v.ns, GATEWAY, 1)) === 1,
        15_000,
      );
      const got = await fetchSha256(topo, v.ns, world.file.url, 30);
      assert.equal(got.sha256, world.file.sha256);
    }
    assert.equal(await pings(topo, c.ns, d.ip), 2, 'C and D still reach each other');
  });

  test('a VM whose per-VM process dies without a word is detached and its lease freed', {
    timeout: 60_000,
  }, async () => {
    const { b, c, d } = vms;
    const engine = [b, c, d].find((v) =>
      v.softnet.lines.some((l) => /vm handed over .*engine=self/.test(l)),
    )!;
    const victim = [b, c, d].find((v) => v !== engine)!;
    victim.softnet.child.kill('SIGKILL');
    await engine.softnet.waitFor(
      new RegExp(`lease released ip=${victim.ip.replaceAll('.', '\\.')} .*reason=vm-gone`),
    );
    const r = await softnetCommand(topo, world.host, ['network', 'list-attached', 'default', '--json']);
    const ips = (JSON.parse(r.stdout) as Array<{ ip: string }>).map((v) => v.ip);
    assert.ok(!ips.includes(victim.ip), ips.join(' '));
  });

  test("a freed address given to another VM is reached at once: the host's entry follows the new owner", {
    timeout: 60_000,
  }, async () => {
    const freed = await vm('e', '52:54:00:e0:00:0e');
    assert.equal(await pings(topo, world.host, freed.ip), 2);
    freed.softnet.child.kill('SIGKILL');
    await until('the freed lease', async () => {
      const r = await softnetCommand(topo, world.host, ['network', 'list-attached', 'default', '--json']);
      return !(JSON.parse(r.stdout) as Array<{ ip: string }>).some((v) => v.ip === freed.ip);
    });
    const next = await vm('f', '52:54:00:e0:00:0f', [...NAT_ARGS]);
    assert.equal(next.ip, freed.ip, 'the lowest free address again');
    // No waiting for the host's old entry to go stale: the new owner was announced.
    assert.equal(await pings(topo, world.host, next.ip, 1), 1);
    const entry = (await neighbours(topo, world.host)).find((n) => n.dst === next.ip);
    assert.equal(entry?.lladdr, await next.softnet.externalMac());
  });
});

describe('ten clones of one image side by side', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  after(() => world.cleanup());
  const MAC = '52:54:00:c1:0e:01';

  test('each gets its own lease and external MAC, reaches the world and the host, and no frame of one reaches another', {
    timeout: 240_000,
  }, async () => {
    await world.start({ fileMb: 1 });
    const clones: Array<{ ns: string; softnet: Softnet; ip: string }> = [];
    for (let i = 0; i < 10; i++) {
      const ns = await topo.netns(`clone${i}`);
      clones.push({ ns, softnet: await softnetForVm(topo, world.host, ns, MAC, NAT_ARGS), ip: '' });
    }
    await Promise.all(
      clones.map(async (c) => {
        c.ip = (await vmOnline(topo, c.ns)).ip;
      }),
    );
    assert.equal(new Set(clones.map((c) => c.ip)).size, 10, clones.map((c) => c.ip).join(' '));
    const exts = await Promise.all(clones.map((c) => c.softnet.externalMac()));
    assert.equal(new Set(exts).size, 10, exts.join(' '));
    for (const c of clones) assert.equal(await pings(topo, world.host, c.ip, 1), 1, `host -> ${c.ip}`);
    const neigh = await neighbours(topo, world.host);
    const seen = clones.map((c) => neigh.find((n) => n.dst === c.ip)?.lladdr);
    assert.deepEqual(seen, exts, 'the host knows each clone by its own external MAC');
    assert.ok(!neigh.some((n) => n.lladdr === MAC), 'the shared internal MAC never reaches the host');
    // Clone 0 listens on its NIC while the others talk to the host and the world.
    const nic = await capture(topo, clones[0].ns, 'eth0', 'not ip6');
    await pings(topo, clones[0].ns, GATEWAY, 1);
    await Promise.all(
      clones.slice(1).map(async (c) => {
        assert.equal(await pings(topo, c.ns, GATEWAY, 1), 1, `${c.ip} -> gateway`);
        const got = await fetchSha256(topo, c.ns, `http://${SERVER}:8080/small.txt`, 20);
        assert.ok(got.bytes > 0, `${c.ip} -> world`);
      }),
    );
    const heard = await nic.stop();
    assert.match(
      heard,
      new RegExp(`${clones[0].ip.replaceAll('.', '\\.')} > ${GATEWAY.replaceAll('.', '\\.')}: ICMP`),
    );
    for (const c of clones.slice(1)) {
      assert.doesNotMatch(
        heard,
        new RegExp(`\\b${c.ip.replaceAll('.', '\\.')}\\b`),
        `clone ${c.ip} reached clone 0`,
      );
    }
  });
});

describe('the host and disconnected types', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  after(() => world.cleanup());
  before(() => world.start({ fileMb: 1 }), { timeout: 60_000 });

  test('a host VM gets its lease and reaches the host, never the world', { timeout: 90_000 }, async () => {
    const ns = await topo.netns('h');
    const softnet = await softnetForVm(topo, world.host, ns, '52:54:00:e0:01:01', [
      '--vm-net-type',
      'host',
      ...NAT_ARGS,
    ]);
    const lease = await vmOnline(topo, ns);
    assert.equal(await pings(topo, ns, GATEWAY), 2, 'the VM -> the host');
    assert.equal(await pings(topo, world.host, lease.ip), 2, 'the host -> the VM');
    const uplink = await capture(topo, world.host, UPLINK, `host ${SERVER}`);
    assert.equal(await pings(topo, ns, SERVER), 0, 'the VM -> the world');
    const curl = await topo.status(ns, 'curl', ['-sS', '-m', '3', `http://${SERVER}:8080/small.txt`], 15_000);
    assert.notEqual(curl.code, 0, 'a fetch from the world');
    assert.equal((await uplink.stop()).trim(), '', 'nothing of the VM on the uplink');
    assert.ok((await softnet.counters()).drops['dst-beyond-host-only-vm'] >= 2);
  });

  test('a disconnected VM shows no carrier, gets no lease and no answer, and softnet says why', {
    timeout: 90_000,
  }, async () => {
    const ns = await topo.netns('d');
    const softnet = await softnetForVm(topo, world.host, ns, '52:54:00:e0:01:02', [
      '--vm-net-type',
      'disconnected',
      ...NAT_ARGS,
    ]);
    await softnet.waitFor(/vm is disconnected/);
    const link = await topo.exec(ns, 'ip', ['link', 'show', 'eth0']);
    assert.match(link.stdout, /NO-CARRIER/);
    await assert.rejects(vmOnline(topo, ns), 'a lease');
    await topo.exec(ns, 'ip', ['addr', 'add', '192.168.64.77/24', 'dev', 'eth0']);
    assert.equal(await pings(topo, ns, GATEWAY), 0, 'the VM -> the gateway');
    assert.equal(await pings(topo, world.host, '192.168.64.77'), 0, 'the host -> the VM');
    const listed = await softnetCommand(topo, world.host, ['network', 'list-attached', 'default', '--json']);
    const vm = (JSON.parse(listed.stdout) as Array<{ ip: string | null; mac: string }>).find(
      (v) => v.mac === '52:54:00:e0:01:02',
    );
    assert.ok(vm && !vm.ip, `the disconnected VM holds no address: ${listed.stdout}`);
  });
});
