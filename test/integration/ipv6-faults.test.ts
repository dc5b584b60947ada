// IPv6 when the host changes under softnet, and across restarts (docs/reliability.md): the uplink loses its
// IPv6 address, is renumbered, or has no IPv4 at all; someone strips the host link's ULA address; softnet is
// stopped (SIGTERM) or killed (SIGKILL) and started again on the same state directory. softnet never exits:
// it holds NAT66 while it cannot work, says so once in the log, a metric and `show`, leaves IPv4 alone, and
// resumes by itself. The VMs are namespaces doing the kernel's SLAAC; faults are injected with `ip` in the
// test's own namespaces (test/lib/world.ts with { ipv6: true } has the map). Every test looks at the broken
// state before the recovery, so a softnet that never held, or never resumed, fails it.

import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NatProto } from '../../src/nat/flows.js';
import { acceptRa, addrs6, inPrefix, ping6, same6, testUla, vm64 } from '../lib/ipv6.js';
import {
  echoAcrossGo6,
  lease4,
  NIC,
  peerSeen6,
  slaacAddress,
  slaacVm,
  startTcpEcho6,
} from '../lib/ipv6-flows.js';
import { parseExposition } from '../lib/prometheus.js';
import { type Softnet, softnetCommand, softnetForVm } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import {
  capture,
  HOST_IP,
  HOST_IP6,
  PORTS,
  ROUTER_HOST_SIDE,
  ROUTER_HOST_SIDE6,
  SERVER,
  SERVER6,
  UPLINK,
  until,
  WORLD_NET,
  WORLD_NET6,
  World,
} from '../lib/world.js';

/** The uplink's IPv6 address after the host's network "renumbered" it. */
const HOST_IP6_NEW = '2001:db8:1::3';
/** Where softnet serves metrics, in the host namespace. */
const METRICS = '127.0.0.1:9476';
/** softnet's host link in the host namespace (the default network's). */
const HOST_LINK = 'softnet0';
/** The router's end of the host<->router link: what it receives there is what left the host. */
const ROUTER_UPLINK_SIDE = 'h0';
/** softnet's default NAT port range, which names the snapshot files. */
const NAT_PORTS = '61000-64999';
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The last lines softnet logged, for assertion messages. */
function tail(s: Softnet, n = 40): string {
  return `softnet's last lines:\n${s.lines.slice(-n).join('\n')}`;
}

/** The lines softnet logged from line `from` on that match `re`. */
function loggedSince(s: Softnet, from: number, re: RegExp): string[] {
  return s.lines.slice(from).filter((l) => re.test(l));
}

/** softnet's drop counters by reason. */
async function drops(s: Softnet): Promise<Record<string, number>> {
  return (await s.counters()).drops ?? {};
}

/** The address the world's peer server at SERVER saw an IPv4 connection from `ns` come from ('' if none). */
async function peerSeen4(topo: Topology, ns: string): Promise<string> {
  const r = await topo.status(ns, 'curl', ['-sS', '-m', '5', `http://${SERVER}:${PORTS.peer}/`], 15_000);
  return r.stdout.trim().split(' ')[0];
}

/** Whether `ns` gets an answer from IPv4 `dst` to one ping. */
async function pings4(topo: Topology, ns: string, dst: string): Promise<boolean> {
  return (await topo.status(ns, 'ping', ['-n', '-c', '1', '-W', '1', dst], 5000)).code === 0;
}

/** The samples of softnet's metrics, scraped from inside `ns`. */
async function scrape(topo: Topology, ns: string): Promise<Map<string, number>> {
  const r = await topo.exec(ns, 'curl', ['-sf', '--max-time', '5', `http://${METRICS}/metrics`]);
  return parseExposition(r.stdout);
}

/** The one series of `family` (as "name{labels}") and its value; fails unless there is exactly one. */
function onlySeries(m: Map<string, number>, family: string): [string, number] {
  const keys = [...m.keys()].filter((k) => k.startsWith(`${family}{`));
  assert.equal(keys.length, 1, `series of ${family}:\n${keys.join('\n')}`);
  return [keys[0], m.get(keys[0])!];
}

/** `softnet show VM --json` for the VM of MAC `mac` (`extra`: a --control-socket other than the topology's). */
async function shown(
  topo: Topology,
  host: string,
  mac: string,
  extra: string[] = [],
): Promise<Record<string, unknown>> {
  const r = await softnetCommand(topo, host, ['show', mac, '--json', ...extra]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

/** The `softnet network ls --json` entry of the engine's one network (`extra` as for shown). */
async function networkShown(
  topo: Topology,
  host: string,
  extra: string[] = [],
): Promise<Record<string, unknown>> {
  const r = await softnetCommand(topo, host, ['network', 'ls', '--json', ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const nets = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
  assert.equal(nets.length, 1, r.stdout);
  return nets[0];
}

/** Whether NAT66 snapshot `path` holds a TCP mapping of VM port `port` made on HOST_IP6. */
function savedTcp(path: string, port: number): boolean {
  if (!existsSync(path)) return false;
  const snap = JSON.parse(readFileSync(path, 'utf8')) as {
    addr: string;
    mappings: Array<{ proto: number; vmPort: number }>;
  };
  return (
    same6(snap.addr, HOST_IP6) && snap.mappings.some((m) => m.proto === NatProto.TCP && m.vmPort === port)
  );
}

/** The source addresses of the IPv6 packets in `tcpdump -n` output. */
function sources6(text: string): string[] {
  return [...text.matchAll(/ IP6 ([0-9a-f:]+?)(?:\.\d+)? > /g)].map((m) => m[1]);
}

describe("the uplink's IPv6 changes under softnet", () => {
  const world = new World(new Topology());
  const topo = world.topo;
  const ula = testUla();
  const MAC = '52:54:00:36:46:01';
  let vm: { ns: string; softnet: Softnet; addr: string };
  let softnet: Softnet;
  const ip6 = (ns: string, ...args: string[]) => topo.exec(ns, 'ip', ['-6', ...args]);
  after(() => world.cleanup());

  before(
    async () => {
      await world.start({ fileMb: 1, ipv6: true });
      vm = await slaacVm(world, 'vm', MAC, vm64(ula, 1), [
        '--uplink',
        UPLINK,
        '--allow',
        `${WORLD_NET},${WORLD_NET6}`,
        '--ipv6-prefix',
        ula.cidr,
        '--metrics',
        METRICS,
      ]);
      softnet = vm.softnet;
      await lease4(topo, vm.ns);
      assert.equal(await peerSeen4(topo, vm.ns), HOST_IP, tail(softnet));
      assert.ok(same6((await peerSeen6(topo, vm.ns)).ip, HOST_IP6), tail(softnet));
    },
    { timeout: 90_000 },
  );

  test("the IPv6 address removed: NAT66 held (log, metric, show), IPv4 and the VM's own IPv6 go on; back: it resumes", {
    timeout: 90_000,
  }, async () => {
    const from = softnet.lines.length;
    await ip6(world.host, 'addr', 'del', `${HOST_IP6}/64`, 'dev', UPLINK);
    await softnet.waitFor(
      /uplink IPv6 unavailable: NAT66 on hold uplink=up0 reason=no-ipv6-address/,
      10_000,
      from,
    );
    // Held: nothing of the VM's reaches the world by IPv6, and softnet counts why.
    const before = await drops(softnet);
    const p = await ping6(topo, vm.ns, SERVER6, 2);
    assert.equal(p.received, 0, `${p.out}\n${tail(softnet)}`);
    const during = await drops(softnet);
    assert.ok(
      (during['uplink-ipv6-unavailable'] ?? 0) > (before['uplink-ipv6-unavailable'] ?? 0),
      JSON.stringify(during),
    );
    const [series, usable] = onlySeries(await scrape(topo, world.host), 'softnet_uplink_ipv6_usable');
    assert.equal(usable, 0, series);
    assert.match(series, /reason="no-ipv6-address"/);
    const held = await shown(topo, world.host, MAC);
    assert.equal(held.natAddress6, null, JSON.stringify(held));
    assert.equal(held.nat6Held, 'no-ipv6-address', JSON.stringify(held));
    assert.equal(held.natHeld, null, JSON.stringify(held));
    // IPv4 NAT goes on; the VM keeps its /64 and its SLAAC address, and still reaches the gateway's.
    assert.equal(await peerSeen4(topo, vm.ns), HOST_IP, tail(softnet));
    assert.equal(held.ipv6Prefix, vm64(ula, 1), JSON.stringify(held));
    const kept = (await addrs6(topo, vm.ns, NIC)).find((a) => same6(a.local, vm.addr));
    assert.ok(kept && !kept.tentative, `the VM's address is gone: ${JSON.stringify(kept)}`);
    assert.equal((await ping6(topo, vm.ns, ula.gateway, 2)).received, 2, tail(softnet));

    // Back, as the host's network manager puts it back (the default route with it).
    await ip6(world.host, 'addr', 'add', `${HOST_IP6}/64`, 'dev', UPLINK, 'nodad');
    await ip6(world.host, 'route', 'replace', 'default', 'via', ROUTER_HOST_SIDE6, 'dev', UPLINK);
    await softnet.waitFor(
      new RegExp(`uplink IPv6 usable: NAT66 runs uplink=up0 address=${esc(HOST_IP6)} was=no-ipv6-address`),
      10_000,
      from,
    );
    const again = await ping6(topo, vm.ns, SERVER6, 3);
    assert.equal(again.received, 3, `${again.out}\n${tail(softnet)}`);
    assert.ok(same6((await peerSeen6(topo, vm.ns)).ip, HOST_IP6));
    const [series2, usable2] = onlySeries(await scrape(topo, world.host), 'softnet_uplink_ipv6_usable');
    assert.equal(usable2, 1, series2);
    assert.match(series2, new RegExp(`address="${esc(HOST_IP6)}",reason=""`));
    const resumed = await shown(topo, world.host, MAC);
    assert.equal(resumed.natAddress6, HOST_IP6, JSON.stringify(resumed));
    assert.equal(resumed.nat6Held, null, JSON.stringify(resumed));
    // Said once each, whatever the number of looks at the uplink in between.
    assert.equal(loggedSince(softnet, from, /NAT66 on hold/).length, 1, tail(softnet));
    assert.equal(loggedSince(softnet, from, /NAT66 runs/).length, 1, tail(softnet));
    assert.equal(loggedSince(softnet, from, /NAT on hold|NAT resumed/).length, 0, tail(softnet));
    assert.equal(softnet.child.exitCode, null);
  });

  test('the uplink renumbered: NAT66 follows, the old mappings end, nothing leaves from the old address', {
    timeout: 90_000,
  }, async () => {
    // A mapping that is there as the address changes: an ICMPv6 echo's.
    assert.equal((await ping6(topo, vm.ns, SERVER6, 1)).received, 1, tail(softnet));
    const before = await shown(topo, world.host, MAC);
    assert.ok((before.nat66Mappings as number) > 0, JSON.stringify(before));
    const from = softnet.lines.length;
    // What the host sends from either address, but its own neighbour discovery and MLD.
    const sniff = await capture(
      topo,
      world.router,
      ROUTER_UPLINK_SIDE,
      `ip6 and (src host ${HOST_IP6} or src host ${HOST_IP6_NEW}) and (not icmp6 or ip6[40] < 130)`,
    );
    // As a network renumbering the link does it: the new address first, then the old one goes.
    await ip6(world.host, 'addr', 'add', `${HOST_IP6_NEW}/64`, 'dev', UPLINK, 'nodad');
    await ip6(world.host, 'addr', 'del', `${HOST_IP6}/64`, 'dev', UPLINK);
    await ip6(world.host, 'route', 'replace', 'default', 'via', ROUTER_HOST_SIDE6, 'dev', UPLINK);
    const changed = await softnet.waitFor(
      new RegExp(
        `uplink IPv6 address changed: its mappings end uplink=up0 from=${esc(HOST_IP6)} to=${esc(HOST_IP6_NEW)} mappings_ended=(\\d+)`,
      ),
      10_000,
      from,
    );
    assert.ok(Number(changed[1]) >= 1, changed[0]);
    const right = await shown(topo, world.host, MAC);
    assert.equal(right.nat66Mappings, 0, JSON.stringify(right));
    assert.equal(right.natAddress6, HOST_IP6_NEW, JSON.stringify(right));
    const peer = await peerSeen6(topo, vm.ns);
    assert.ok(same6(peer.ip, HOST_IP6_NEW), `the world saw ${peer.ip}\n${tail(softnet)}`);
    assert.equal((await ping6(topo, vm.ns, SERVER6, 2)).received, 2, tail(softnet));
    const seen = await sniff.stop();
    const froms = sources6(seen);
    assert.ok(
      froms.some((s) => same6(s, HOST_IP6_NEW)),
      `the router saw nothing from ${HOST_IP6_NEW}:\n${seen}`,
    );
    assert.deepEqual(
      froms.filter((s) => same6(s, HOST_IP6)),
      [],
      `packets reached the router from the old address after the change:\n${seen}`,
    );
    const tables = await topo.exec(world.host, 'nft', ['list', 'ruleset']);
    assert.match(tables.stdout, new RegExp(`ip6 daddr ${esc(HOST_IP6_NEW)} `), tables.stdout);
    assert.doesNotMatch(tables.stdout, new RegExp(`ip6 daddr ${esc(HOST_IP6)} `), tables.stdout);
    // Back as it was, for the tests after this one.
    await ip6(world.host, 'addr', 'add', `${HOST_IP6}/64`, 'dev', UPLINK, 'nodad');
    await ip6(world.host, 'addr', 'del', `${HOST_IP6_NEW}/64`, 'dev', UPLINK);
    await ip6(world.host, 'route', 'replace', 'default', 'via', ROUTER_HOST_SIDE6, 'dev', UPLINK);
    await softnet.waitFor(new RegExp(`uplink IPv6 address changed: .* to=${esc(HOST_IP6)} `), 10_000, from);
    assert.ok(same6((await peerSeen6(topo, vm.ns)).ip, HOST_IP6), tail(softnet));
  });

  test("the host link's IPv6 address removed: softnet puts it back and the VM reaches P::1 again", {
    timeout: 60_000,
  }, async () => {
    const from = softnet.lines.length;
    const repairs0 = onlySeries(await scrape(topo, world.host), 'softnet_host_link_repairs_total')[1];
    await ip6(world.host, 'addr', 'del', `${ula.gateway}/48`, 'dev', HOST_LINK);
    // softnet hears of it from rtnetlink and puts it back at once; what it found is the broken state.
    await softnet.waitFor(
      new RegExp(`host link repaired network=\\S+ host_link=${HOST_LINK} found=ipv6-address-missing$`),
      15_000,
      from,
    );
    const back = await addrs6(topo, world.host, HOST_LINK);
    assert.ok(
      back.some((a) => same6(a.local, ula.gateway) && a.prefixlen === 48),
      `the host link has ${back.map((a) => `${a.local}/${a.prefixlen}`).join(', ')}`,
    );
    await until(
      'the VM pings P::1',
      async () => (await ping6(topo, vm.ns, ula.gateway, 1)).received === 1,
      20_000,
    );
    await until(
      "the host pings the VM's address",
      async () => (await ping6(topo, world.host, vm.addr, 1)).received === 1,
      20_000,
    );
    assert.equal((await networkShown(topo, world.host)).hostLinkProblem, null);
    const m = await scrape(topo, world.host);
    assert.equal(onlySeries(m, 'softnet_host_link_repairs_total')[1], repairs0 + 1);
    assert.equal(onlySeries(m, 'softnet_host_link_usable')[1], 1);
    assert.equal(loggedSince(softnet, from, /host link repaired/).length, 1, tail(softnet));
    assert.equal(softnet.child.exitCode, null);
  });
});

describe('an IPv6-only uplink: IPv4 NAT held, IPv6 goes on', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  const ula = testUla();
  const MAC = '52:54:00:36:46:02';
  after(() => world.cleanup());

  before(() => world.start({ fileMb: 1, ipv6: true }), { timeout: 60_000 });

  test('no IPv4 on the uplink: NAT44 held as no-default-route, NAT66 runs; IPv4 back: NAT44 resumes', {
    timeout: 120_000,
  }, async () => {
    // The host loses its IPv4 address, and the default route through it, before softnet starts.
    await topo.exec(world.host, 'ip', ['-4', 'addr', 'flush', 'dev', UPLINK]);
    const routes = await topo.exec(world.host, 'ip', ['-4', 'route', 'show', 'default']);
    assert.equal(routes.stdout.trim(), '', routes.stdout);
    // No --uplink: the IPv4 default route's interface, else the IPv6 one's.
    const vm = await slaacVm(world, 'vm', MAC, vm64(ula, 1), [
      '--allow',
      `${WORLD_NET},${WORLD_NET6}`,
      '--ipv6-prefix',
      ula.cidr,
    ]);
    const { softnet } = vm;
    await softnet.waitFor(/uplink unavailable: NAT on hold uplink=none reason=no-default-route/, 10_000);
    await softnet.waitFor(new RegExp(`uplink IPv6 usable: NAT66 runs uplink=up0 address=${esc(HOST_IP6)} `));
    await lease4(topo, vm.ns);
    const peer = await peerSeen6(topo, vm.ns);
    assert.ok(same6(peer.ip, HOST_IP6), `the world saw ${peer.ip}\n${tail(softnet)}`);
    assert.equal((await ping6(topo, vm.ns, SERVER6, 2)).received, 2, tail(softnet));
    assert.equal(await pings4(topo, vm.ns, SERVER), false);
    assert.ok(((await drops(softnet))['uplink-unavailable'] ?? 0) > 0, tail(softnet));
    const held = await shown(topo, world.host, MAC);
    assert.equal(held.natHeld, 'no-default-route', JSON.stringify(held));
    assert.equal(held.natAddress6, HOST_IP6, JSON.stringify(held));
    assert.equal(held.nat6Held, null, JSON.stringify(held));

    const from = softnet.lines.length;
    await topo.exec(world.host, 'ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', UPLINK]);
    await topo.exec(world.host, 'ip', ['route', 'replace', 'default', 'via', ROUTER_HOST_SIDE]);
    await softnet.waitFor(/uplink usable: NAT resumed uplink=up0 .*was=no-default-route/, 10_000, from);
    assert.equal(await peerSeen4(topo, vm.ns), HOST_IP, tail(softnet));
    assert.ok(same6((await peerSeen6(topo, vm.ns)).ip, HOST_IP6), tail(softnet));
    // NAT66 was not disturbed by IPv4 coming back.
    assert.equal(loggedSince(softnet, from, /NAT66/).length, 0, tail(softnet));
    const both = await shown(topo, world.host, MAC);
    assert.equal(both.natHeld, null, JSON.stringify(both));
    assert.equal(both.natAddress6, HOST_IP6, JSON.stringify(both));
    assert.equal(softnet.child.exitCode, null);
  });
});

describe('IPv6 across restarts of softnet on the same state directory', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  const ECHO_PORT = 9109;
  after(() => world.cleanup());

  before(
    async () => {
      await world.start({ fileMb: 1, ipv6: true });
      startTcpEcho6(world, ECHO_PORT);
    },
    { timeout: 60_000 },
  );

  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    test(`after ${signal}: the same random /48 and /64, and a TCP connection over NAT66 lives on`, {
      timeout: 120_000,
    }, async () => {
      const mac = signal === 'SIGTERM' ? '52:54:00:36:46:03' : '52:54:00:36:46:04';
      const state = join(topo.dir, `state-${signal}`);
      const control = ['--control-socket', join(state, 'control.sock')];
      // No --ipv6-prefix: the /48 is random, made once and kept in the state directory.
      const args = ['--uplink', UPLINK, '--allow', WORLD_NET6, '--state-dir', state];
      const ns = await topo.netns(`vm-${signal.toLowerCase()}`);
      await acceptRa(topo, ns);
      let softnet = await softnetForVm(topo, world.host, ns, mac, args);
      try {
        const net = await networkShown(topo, world.host, control);
        const p48 = net.ipv6Prefix as string;
        assert.match(p48, /^fd[0-9a-f:]+\/48$/, JSON.stringify(net));
        const vm = await shown(topo, world.host, mac, control);
        const p64 = vm.ipv6Prefix as string;
        assert.ok(inPrefix(p64.split('/')[0], p48), `${p64} is not in ${p48}`);
        const addr = await slaacAddress(topo, ns, p64, softnet);
        assert.ok(existsSync(join(state, `${HOST_LINK}.ipv6.json`)), 'no /48 file in the state directory');
        const go = join(topo.dir, `go-${signal}`);
        const out = await echoAcrossGo6(topo, ns, ECHO_PORT, go);
        const local = out().match(/^local (\S+) (\d+)/m);
        assert.ok(local && same6(local[1], addr), out());
        const flows = join(state, `nat6-${UPLINK}-${NAT_PORTS}.flows.json`);
        const snapshotted = () => savedTcp(flows, Number(local[2]));
        // SIGKILL gets no last snapshot: wait for the periodic one (every 5 s while the mappings change).
        if (signal === 'SIGKILL')
          await until('a NAT66 flow snapshot with the connection', async () => snapshotted(), 15_000);
        await softnet.stop(signal);
        assert.ok(
          snapshotted(),
          `the snapshot misses the connection from port ${local[2]}: ${existsSync(flows) ? readFileSync(flows, 'utf8') : 'no file'}\n${[...readdirSync(state)].join(' ')}\n${tail(softnet)}`,
        );

        softnet = await softnetForVm(topo, world.host, ns, mac, args);
        const restored = await softnet.waitFor(/nat mappings restored count=(\d+) /);
        assert.ok(Number(restored[1]) >= 1, restored[0]);
        assert.equal((await networkShown(topo, world.host, control)).ipv6Prefix, p48);
        const again = await shown(topo, world.host, mac, control);
        assert.equal(again.ipv6Prefix, p64, JSON.stringify(again));
        assert.ok((again.nat66Mappings as number) >= 1, JSON.stringify(again));
        // The NIC came back with the new softnet; the kernel takes the same address in the same /64 again.
        const addr2 = await slaacAddress(topo, ns, p64, softnet);
        assert.ok(same6(addr2, addr), `${addr2} after, ${addr} before`);
        writeFileSync(go, '');
        await until('the echo after the restart', async () => out().includes('after'), 30_000).catch(
          (e: Error) => {
            e.message += `\nthe client printed:\n${out()}\n${tail(softnet)}`;
            throw e;
          },
        );
        assert.equal(out().replace(/^local .*\n/, ''), 'before\nafter\n');
      } finally {
        await softnet.stop();
      }
    });
  }
});
