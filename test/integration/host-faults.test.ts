// The host changes under softnet (issue 13): its uplink goes down and comes back, changes address, is
// deleted and made again, the default route moves to another interface, and someone deletes, downs or
// strips the host link. softnet never exits: it holds NAT while it cannot work, says so once, and
// resumes by itself. Faults are injected with `ip` in the test's own namespaces (test/lib/world.ts's map).

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientLease } from '../lib/clients.js';
import { parseExposition } from '../lib/prometheus.js';
import { type Softnet, softnetCommand, softnetForVm } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import {
  capture,
  echoAcrossGo,
  GATEWAY,
  HOST_IP,
  HOST_IP2,
  PORTS,
  ROUTER_HOST_SIDE,
  ROUTER_IP2,
  SERVER,
  startTcpEcho,
  UPLINK,
  UPLINK2,
  until,
  vmOnline,
  WORLD_NET,
  World,
} from '../lib/world.js';

/** The uplink's address after the host's DHCP lease "moved" it. */
const HOST_IP_NEW = '198.51.100.9';
/** Where the uplink tests' softnet serves metrics, in the host namespace. */
const METRICS = '127.0.0.1:9471';

/** The last lines softnet logged, for assertion messages. */
function tail(s: Softnet, n = 40): string {
  return `softnet's last lines:\n${s.lines.slice(-n).join('\n')}`;
}

/** Lines softnet logged that match `re`. */
function logged(s: Softnet, re: RegExp): string[] {
  return s.lines.filter((l) => re.test(l));
}

/** The address the world's peer server saw a connection from `ns` come from. */
async function peerSeen(topo: Topology, ns: string): Promise<string> {
  const r = await topo.exec(ns, 'curl', ['-sS', '-m', '5', `http://${SERVER}:${PORTS.peer}/`], 15_000);
  return r.stdout.trim().split(' ')[0];
}

/** Whether `ns` gets an answer from `dst` to one ping. */
async function pings(topo: Topology, ns: string, dst: string): Promise<boolean> {
  return (await topo.status(ns, 'ping', ['-n', '-c', '1', '-W', '1', dst], 5000)).code === 0;
}

/** The samples of softnet's metrics at `addr`, scraped from inside `ns`. */
async function scrape(topo: Topology, ns: string, addr: string): Promise<Map<string, number>> {
  const r = await topo.exec(ns, 'curl', ['-sf', '--max-time', '5', `http://${addr}/metrics`]);
  return parseExposition(r.stdout);
}

/** The value of the one series of `family` whose labels include `part`. */
function sample(m: Map<string, number>, family: string, part = ''): number | undefined {
  const keys = [...m.keys()].filter((k) => k.startsWith(`${family}{`) && k.includes(part));
  assert.ok(keys.length <= 1, keys.join('\n'));
  return keys.length === 1 ? m.get(keys[0]) : undefined;
}

/** The `softnet network ls --json` entry of the engine's one network. */
async function networkShown(topo: Topology, host: string): Promise<Record<string, unknown>> {
  const r = await softnetCommand(topo, host, ['network', 'ls', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const nets = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
  assert.equal(nets.length, 1, r.stdout);
  return nets[0];
}

describe('the uplink changes under softnet', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  let vm: string;
  let softnet: Softnet;
  const ip = (ns: string, ...args: string[]) => topo.exec(ns, 'ip', args);
  after(() => world.cleanup());

  before(
    async () => {
      await world.start({ fileMb: 1 });
      vm = await topo.netns('vm');
      softnet = await softnetForVm(topo, world.host, vm, '52:54:00:48:46:01', [
        '--uplink',
        UPLINK,
        '--allow',
        WORLD_NET,
        '--metrics',
        METRICS,
      ]);
      await vmOnline(topo, vm);
      assert.equal(await peerSeen(topo, vm), HOST_IP, tail(softnet));
    },
    { timeout: 90_000 },
  );

  test('an uplink down for 2 s holds NAT, says so once, and a TCP connection lives through it', {
    timeout: 90_000,
  }, async () => {
    startTcpEcho(world, 7101);
    const go = join(topo.dir, 'go-flap');
    const echoed = await echoAcrossGo(topo, vm, 7101, go);
    const from = softnet.lines.length;
    await ip(world.host, 'link', 'set', UPLINK, 'down');
    await softnet.waitFor(/uplink unavailable: NAT on hold uplink=up0 reason=interface-down/, 10_000, from);
    const shown = await networkShown(topo, world.host);
    assert.equal(shown.natHeld, 'interface-down', JSON.stringify(shown));
    assert.equal(await pings(topo, vm, SERVER), false);
    const drops = (await softnet.counters()).drops;
    assert.ok((drops['uplink-unavailable'] ?? 0) > 0, JSON.stringify(drops));
    const during = await scrape(topo, world.host, METRICS);
    assert.equal(sample(during, 'softnet_uplink_usable', 'reason="interface-down"'), 0);
    assert.equal(sample(during, 'softnet_uplink_outages_total'), 1);
    await sleep(2000);
    await ip(world.host, 'link', 'set', UPLINK, 'up');
    // The kernel flushed the routes through the link as it went down; the host's network manager puts the
    // default route back, as this does.
    await ip(world.host, 'route', 'replace', 'default', 'via', ROUTER_HOST_SIDE);
    await softnet.waitFor(/uplink usable: NAT resumed uplink=up0 /, 10_000, from);
    writeFileSync(go, '');
    await until('the echo after the outage', async () => echoed().includes('after'), 20_000);
    assert.equal(await peerSeen(topo, vm), HOST_IP);
    assert.equal((await networkShown(topo, world.host)).natHeld, null);
    assert.equal(sample(await scrape(topo, world.host, METRICS), 'softnet_uplink_usable', 'reason=""'), 1);
    const since = softnet.lines.slice(from);
    assert.equal(since.filter((l) => l.includes('NAT on hold')).length, 1, since.join('\n'));
    assert.equal(since.filter((l) => l.includes('NAT resumed')).length, 1, since.join('\n'));
    assert.equal(softnet.child.exitCode, null);
  });

  test('a new address on the uplink: new flows leave from it, nothing from the old one, the guard follows', {
    timeout: 90_000,
  }, async () => {
    const from = softnet.lines.length;
    const old = await capture(topo, world.router, 'h0', `src host ${HOST_IP}`);
    // As a DHCP client renumbering the link does it: the new address first, then the old one goes, and the
    // new one, added second, becomes the primary.
    await topo.exec(world.host, 'sysctl', ['-qw', `net.ipv4.conf.${UPLINK}.promote_secondaries=1`]);
    await ip(world.host, 'addr', 'add', `${HOST_IP_NEW}/24`, 'dev', UPLINK);
    await ip(world.host, 'addr', 'del', `${HOST_IP}/24`, 'dev', UPLINK);
    await ip(world.host, 'route', 'replace', 'default', 'via', ROUTER_HOST_SIDE);
    await softnet.waitFor(
      new RegExp(`uplink address changed: its mappings end uplink=up0 from=${HOST_IP} to=${HOST_IP_NEW} `),
      10_000,
      from,
    );
    assert.equal(await peerSeen(topo, vm), HOST_IP_NEW, tail(softnet));
    assert.equal(await pings(topo, vm, SERVER), true);
    const seen = await old.stop();
    assert.equal(seen.trim(), '', `packets left from the old address:\n${seen}`);
    const tables = await topo.exec(world.host, 'nft', ['list', 'ruleset']);
    assert.match(tables.stdout, new RegExp(`ip daddr ${HOST_IP_NEW.replace(/\./g, '\\.')} tcp dport`));
    assert.doesNotMatch(tables.stdout, new RegExp(`ip daddr ${HOST_IP.replace(/\./g, '\\.')} `));
    assert.equal((await networkShown(topo, world.host)).natAddress, HOST_IP_NEW);
    // Back as it was, for the tests after this one.
    await ip(world.host, 'addr', 'add', `${HOST_IP}/24`, 'dev', UPLINK);
    await ip(world.host, 'addr', 'del', `${HOST_IP_NEW}/24`, 'dev', UPLINK);
    await ip(world.host, 'route', 'replace', 'default', 'via', ROUTER_HOST_SIDE);
    await softnet.waitFor(new RegExp(`uplink address changed: .* to=${HOST_IP} `), 10_000, from);
    assert.equal(await peerSeen(topo, vm), HOST_IP);
  });

  test('a new MTU on the uplink: a larger packet gets "fragmentation needed" with it', {
    timeout: 60_000,
  }, async () => {
    const from = softnet.lines.length;
    await ip(world.host, 'link', 'set', UPLINK, 'mtu', '1400');
    await softnet.waitFor(/uplink mtu changed uplink=up0 from=1500 to=1400/, 10_000, from);
    const r = await topo.status(
      vm,
      'ping',
      ['-n', '-c', '1', '-W', '2', '-M', 'do', '-s', '1400', SERVER],
      10_000,
    );
    assert.match(
      r.stdout + r.stderr,
      /mtu = 1400|Frag needed and DF set \(mtu = 1400\)/,
      r.stdout + r.stderr,
    );
    await ip(world.host, 'link', 'set', UPLINK, 'mtu', '1500');
    await softnet.waitFor(/uplink mtu changed uplink=up0 from=1400 to=1500/, 10_000, from);
    assert.equal(await pings(topo, vm, SERVER), true);
  });

  test('an uplink deleted and made again: NAT held while it is gone, resumed on the new one', {
    timeout: 90_000,
  }, async () => {
    const from = softnet.lines.length;
    await ip(world.host, 'link', 'del', UPLINK);
    await softnet.waitFor(/uplink unavailable: NAT on hold uplink=up0 reason=interface-gone/, 10_000, from);
    assert.equal(await pings(topo, vm, GATEWAY), true, 'the VM lost its gateway');
    await ip(world.host, 'link', 'add', UPLINK, 'type', 'veth', 'peer', 'name', 'h0', 'netns', world.router);
    await ip(world.host, 'addr', 'add', `${HOST_IP}/24`, 'dev', UPLINK);
    await ip(world.host, 'link', 'set', UPLINK, 'up');
    await ip(world.router, 'addr', 'add', `${ROUTER_HOST_SIDE}/24`, 'dev', 'h0');
    await ip(world.router, 'link', 'set', 'h0', 'up');
    await ip(world.host, 'route', 'replace', 'default', 'via', ROUTER_HOST_SIDE);
    await softnet.waitFor(
      /uplink usable: NAT resumed uplink=up0 .*was=(interface-gone|interface-down|no-carrier)/,
      10_000,
      from,
    );
    await until(
      'the world answers again',
      async () => (await peerSeen(topo, vm).catch(() => '')) === HOST_IP,
      20_000,
    );
    assert.equal(softnet.child.exitCode, null);
  });
});

describe('the default route moves to another interface', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  let vm: string;
  let softnet: Softnet;
  const ip = (ns: string, ...args: string[]) => topo.exec(ns, 'ip', args);
  after(() => world.cleanup());

  before(
    async () => {
      await world.start({ fileMb: 1 });
      await world.addSecondLink();
      vm = await topo.netns('vm');
      // No --uplink: the default route's interface, followed.
      softnet = await softnetForVm(topo, world.host, vm, '52:54:00:48:46:02', ['--allow', WORLD_NET]);
      await vmOnline(topo, vm);
    },
    { timeout: 90_000 },
  );

  test('NAT follows the default route, and holds while there is none', { timeout: 90_000 }, async () => {
    assert.equal(await peerSeen(topo, vm), HOST_IP, tail(softnet));
    const from = softnet.lines.length;
    await ip(world.host, 'route', 'replace', 'default', 'via', ROUTER_IP2, 'dev', UPLINK2);
    await softnet.waitFor(/uplink moved from=up0 to=up1/, 10_000, from);
    assert.equal(await peerSeen(topo, vm), HOST_IP2, tail(softnet));
    // up0 keeps its address: a late reply to a flow of before still reaches the host there, and must be
    // dropped, not answered with a RST (curl: a timeout, 28, not "connection refused", 7).
    const late = await topo.status(
      world.world,
      'curl',
      ['-sS', '-m', '2', `http://${HOST_IP}:61500/`],
      10_000,
    );
    assert.equal(late.code, 28, `${late.stderr}\n${tail(softnet)}`);
    const shown = await networkShown(topo, world.host);
    assert.equal(shown.uplink, UPLINK2);
    assert.equal(shown.natAddress, HOST_IP2);
    await ip(world.host, 'route', 'del', 'default');
    await softnet.waitFor(
      /uplink unavailable: NAT on hold uplink=none reason=no-default-route/,
      10_000,
      from,
    );
    assert.equal(await pings(topo, vm, SERVER), false);
    await ip(world.host, 'route', 'add', 'default', 'via', ROUTER_HOST_SIDE, 'dev', UPLINK);
    await softnet.waitFor(/uplink usable: NAT resumed uplink=up0 /, 10_000, from);
    assert.equal(await peerSeen(topo, vm), HOST_IP, tail(softnet));
  });

  test('a renamed uplink: NAT follows the default route to its new name', { timeout: 60_000 }, async () => {
    const from = softnet.lines.length;
    // A link is renamed only while it is down; its routes go with it, and come back as its manager adds them.
    await ip(world.host, 'link', 'set', UPLINK, 'down');
    await ip(world.host, 'link', 'set', UPLINK, 'name', 'wan0');
    await ip(world.host, 'link', 'set', 'wan0', 'up');
    await ip(world.host, 'route', 'replace', 'default', 'via', ROUTER_HOST_SIDE, 'dev', 'wan0');
    await softnet.waitFor(/uplink usable: NAT resumed uplink=wan0 /, 10_000, from);
    assert.equal(await peerSeen(topo, vm), HOST_IP, tail(softnet));
    assert.equal((await networkShown(topo, world.host)).uplink, 'wan0');
  });
});

describe('the host link is repaired', () => {
  const topo = new Topology();
  let host: string;
  let vm: string;
  let softnet: Softnet;
  let lease: ClientLease;
  after(() => topo.cleanup());

  before(
    async () => {
      host = await topo.netns('host');
      vm = await topo.netns('vm');
      softnet = await softnetForVm(topo, host, vm, '52:54:00:48:46:03', ['--metrics', METRICS]);
      lease = await vmOnline(topo, vm);
      assert.equal(await pings(topo, host, lease.ip), true, tail(softnet));
    },
    { timeout: 60_000 },
  );

  const cases: Array<[string, string[], string]> = [
    ['deleted', ['link', 'del', 'softnet0'], 'deleted'],
    ['set down', ['link', 'set', 'softnet0', 'down'], 'down'],
    ['stripped of its address', ['addr', 'del', `${GATEWAY}/24`, 'dev', 'softnet0'], 'address-missing'],
  ];
  for (const [what, cmd, found] of cases) {
    test(`a host link ${what} is put back, and the host reaches the VM again`, {
      timeout: 60_000,
    }, async () => {
      const from = softnet.lines.length;
      await topo.exec(host, 'ip', cmd);
      await softnet.waitFor(
        new RegExp(`host link repaired network=\\S+ host_link=softnet0 found=${found}$`),
        10_000,
        from,
      );
      const link = await topo.exec(host, 'ip', ['-4', 'addr', 'show', 'dev', 'softnet0']);
      assert.match(link.stdout, new RegExp(`inet ${GATEWAY.replace(/\./g, '\\.')}/24 `), link.stdout);
      assert.match(link.stdout, /state UP|,UP/, link.stdout);
      await until('the host pings the VM', () => pings(topo, host, lease.ip), 20_000);
      assert.equal(await pings(topo, vm, GATEWAY), true);
      assert.equal(softnet.child.exitCode, null);
      assert.equal((await networkShown(topo, host)).hostLinkProblem, null);
      const repairs = cases.findIndex((c) => c[2] === found) + 1;
      assert.equal(logged(softnet, /host link repaired/).length, repairs);
      const m = await scrape(topo, host, METRICS);
      assert.equal(sample(m, 'softnet_host_link_repairs_total'), repairs);
      assert.equal(sample(m, 'softnet_host_link_usable'), 1);
    });
  }
});
