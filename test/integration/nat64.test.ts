// IPv6-only networks (issue 16): a VM namespace with no IPv4 at all reaches the IPv4 world through softnet's
// NAT64 (2001:db8:64::/96, a network-specific prefix: the world is on documentation addresses, which RFC 6052
// keeps out of 64:ff9b::/96), finds the prefix in PREF64 of its router advertisement, and names through DNS64
// at the gateway P::1. Real tools only: the kernel's SLAAC, udhcpc, rdisc6 and tcpdump, ping -6, curl, dig,
// iperf3, traceroute -6; a router with a smaller MTU on the path; tcpdump on the world side and the host link.
// First the parsers the checks rely on, then the additions to the world (test/lib/nat64.ts) by the kernel's
// path: when those pass and the others fail, softnet is to blame. Last, a dual-stack network with --nat64.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { upload } from '../lib/http-sink.js';
import { addrs6, inPrefix, ping6, rdisc6, same6, vm64 } from '../lib/ipv6.js';
import {
  attachVm64,
  captureLines,
  captureRas,
  framesOfHexDump,
  linkChatter,
  MTU_SERVER,
  NAT64_PREFIX,
  nat64Ula,
  PATH_MTU,
  type RaCapture,
  raOptions,
  SINK_PORT,
  startSmallMtuSink,
  startV4OnlyDns,
  synth64,
  udhcpc4,
  V4ONLY_DNS,
  V4ONLY_NAME,
  type Vm64,
} from '../lib/nat64.js';
import { type Softnet, softnetCommand } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import {
  capture,
  HOST_IP,
  iperf3,
  learnedMtu,
  PORTS,
  ROUTER_HOST_SIDE,
  SERVER,
  UPLINK,
  udpEcho,
  until,
  WORLD_NET,
  WORLD6_NAME,
  World,
} from '../lib/world.js';

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const mbit = (bps: number) => (bps / 1e6).toFixed(0);
/** The VM's NIC in its namespace (softnet's default --vm-ifname). */
const NIC = 'eth0';
/** softnet's host link in the host namespace (the default network's). */
const HOST_LINK = 'softnet0';
/** The router's end of the host<->router link: what it receives there is what left the host. */
const ROUTER_UPLINK_SIDE = 'h0';
/** softnet's default NAT port range. */
const NAT_PORTS: [number, number] = [61000, 64999];
/** The world's server (as tools print it, and in the mixed notation of RFC 4291) and the router, in the prefix. */
const SERVER64 = synth64(SERVER);
const SERVER64_LITERAL = `2001:db8:64::${SERVER}`;
const ROUTER64 = synth64(ROUTER_HOST_SIDE);

/** The last lines softnet logged, for assertion messages. */
function tail(s: Softnet, n = 40): string {
  return `softnet's last lines:\n${s.lines.slice(-n).join('\n')}`;
}

/** softnet's drop counters by reason. */
async function drops(s: Softnet): Promise<Record<string, number>> {
  return (await s.counters()).drops ?? {};
}

/** How much drop counter `reason` grew between two readings. */
function grew(before: Record<string, number>, after: Record<string, number>, reason: string): number {
  return (after[reason] ?? 0) - (before[reason] ?? 0);
}

/** The +short answer of `dig` in `ns` for `name`'s `type` records at `server`, one record a line. */
async function digShort(
  topo: Topology,
  ns: string,
  server: string,
  type: string,
  name: string,
): Promise<string[]> {
  const r = await topo.status(ns, 'dig', [`@${server}`, type, name, '+short', '+time=2', '+tries=2'], 20_000);
  return r.stdout.trim().split('\n').filter(Boolean);
}

/** `dig` in `ns` for `name`'s `type` records at `server`: the records of its answer section, and all it printed. */
async function digAnswer(
  topo: Topology,
  ns: string,
  server: string,
  type: string,
  name: string,
): Promise<{ records: string[]; text: string }> {
  const r = await topo.status(ns, 'dig', [`@${server}`, type, name, '+time=2', '+tries=2'], 20_000);
  const re = new RegExp(`^\\S+\\s+\\d+\\s+IN\\s+${type}\\s+(\\S+)$`, 'gm');
  return { records: [...r.stdout.matchAll(re)].map((m) => m[1]), text: r.stdout + r.stderr };
}

/** curl -6 of `url` in `ns`: the sha256 and size of what came. */
async function fetch6(
  topo: Topology,
  ns: string,
  url: string,
  timeoutS = 90,
): Promise<{ sha256: string; bytes: number }> {
  const r = await topo.exec(
    ns,
    'bash',
    [
      '-o',
      'pipefail',
      '-c',
      'curl -6 -sSf -m "$1" -w "%{stderr}size=%{size_download}\\n" "$2" | sha256sum',
      'fetch',
      String(timeoutS),
      url,
    ],
    (timeoutS + 10) * 1000,
  );
  return { sha256: r.stdout.split(/\s/)[0], bytes: Number(r.stderr.match(/size=(\d+)/)?.[1] ?? -1) };
}

/** `softnet show VM --json` of the VM with MAC `mac`. */
async function show(topo: Topology, hostNs: string, mac: string): Promise<Record<string, unknown>> {
  const r = await softnetCommand(topo, hostNs, ['show', mac, '--json']);
  assert.equal(r.code, 0, `softnet show: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Runs rdisc6 on the VM's NIC while tcpdump takes the bytes of what comes back; both. */
async function solicit(
  topo: Topology,
  ns: string,
): Promise<{ text: string; cap: Awaited<ReturnType<RaCapture['stop']>> }> {
  const cap = await captureRas(topo, ns, NIC);
  try {
    const ra = await rdisc6(topo, ns, NIC);
    await until('the capture shows an advertisement', async () => cap.seen().length > 0, 5000, 100);
    return { text: ra.text, cap: await cap.stop() };
  } catch (e) {
    const got = await cap.stop();
    (e as Error).message += `\ncaptured:\n${got.text}`;
    throw e;
  }
}

/** Checks that each captured advertisement has exactly one PREF64 option, NAT64_PREFIX with PLC 0. */
function assertPref64(got: Awaited<ReturnType<RaCapture['stop']>>, ctx: string): void {
  assert.ok(got.ras.length > 0, `no advertisement captured:\n${got.text}\n${ctx}`);
  for (const ra of got.ras) {
    const c = `option types ${ra.types.join(',')}\n${got.text}\n${ctx}`;
    assert.equal(ra.pref64.length, 1, `PREF64 options in an advertisement: ${ra.pref64.length}\n${c}`);
    const [p] = ra.pref64;
    assert.equal(p.plc, 0, c);
    assert.equal(p.prefix.split('/')[1], '96', c);
    assert.ok(same6(p.prefix.split('/')[0], NAT64_PREFIX.split('/')[0]), `${p.prefix}\n${c}`);
    assert.ok(p.lifetime > 0, `PREF64 lifetime ${p.lifetime}\n${c}`);
  }
}

/** The hops `traceroute -6` from `ns` to `dst` prints (one probe each, '*' for none). */
async function traceroute6(
  topo: Topology,
  ns: string,
  dst: string,
): Promise<{ hops: string[]; out: string }> {
  const r = await topo.status(ns, 'traceroute', ['-6', '-n', '-q', '1', '-w', '2', '-m', '6', dst], 60_000);
  const hops = r.stdout
    .split('\n')
    .slice(1)
    .filter(Boolean)
    .map((l) => l.trim().split(/\s+/)[1]);
  return { hops, out: r.stdout + r.stderr };
}

/** "<address> <port>" as the world's peer server saw a connection from `ns` to `host` (a URL's host part). */
async function peerSeen(topo: Topology, ns: string, host: string): Promise<{ ip: string; port: number }> {
  const r = await topo.exec(ns, 'curl', ['-sS', '-m', '5', `http://${host}:${PORTS.peer}/`], 15_000);
  const [ip, port] = r.stdout.trim().split(' ');
  return { ip, port: Number(port) };
}

test('framesOfHexDump and raOptions read PREF64 from bytes as tcpdump -xx prints them', () => {
  // An RA to a VM: Ethernet, IPv6 (payload 16 + 16), the RA's fields, one PREF64 option
  // (64:ff9b::/96 is PLC 0; scaled lifetime 225, i.e. 1800 s).
  const hex =
    '52540036010152540000000186dd6000000000203aff' +
    'fe800000000000000000000000000001fe80000000000000505400fffe360101' +
    '8600000040c007080000000000000000' +
    '26020708' +
    '0064ff9b0000000000000000';
  const dump = `12:00:00.000000 IP6 fe80::1 > fe80::5054:ff:fe36:101: ICMP6, router advertisement, length 32\n${hex
    .match(/.{1,32}/g)!
    .map((l, i) => `\t0x${(i * 16).toString(16).padStart(4, '0')}:  ${l.match(/.{1,4}/g)!.join(' ')}`)
    .join('\n')}\n`;
  const frames = framesOfHexDump(dump + dump);
  assert.equal(frames.length, 2);
  const ra = raOptions(frames[0]);
  assert.deepEqual(ra, {
    types: [38],
    pref64: [{ prefix: '64:ff9b:0:0:0:0:0:0/96', plc: 0, lifetime: 1800 }],
  });
  assert.equal(synth64('192.0.0.170', '64:ff9b::/96'), '64:ff9b::c000:aa');
  assert.equal(synth64(SERVER), '2001:db8:64::cb00:710a');
  assert.ok(
    linkChatter(
      '18:26:02.397959 IP6 fe80::8bb:7ff:fe4a:d4f0 > ff02::2: ICMP6, router solicitation, length 16',
    ),
  );
  assert.ok(
    !linkChatter('18:26:02.397959 IP6 fe80::1 > ff02::1: ICMP6, echo request, id 1, seq 1, length 64'),
  );
  assert.ok(
    !linkChatter('18:26:02.397959 IP6 2001:db8:1::2 > ff02::2: ICMP6, router solicitation, length 16'),
  );
});

describe('the additions to the world answer by the kernel path, without softnet', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  after(() => world.cleanup());
  before(
    async () => {
      await world.start({ fileMb: 1, ipv6: true });
      await startV4OnlyDns(world);
      await startSmallMtuSink(world);
    },
    { timeout: 60_000 },
  );

  test('the A-only name resolves from the host; an upload to the sink shrinks the host path MTU to 1400', {
    timeout: 60_000,
  }, async () => {
    assert.deepEqual(await digShort(topo, world.host, V4ONLY_DNS, 'A', V4ONLY_NAME), [SERVER]);
    assert.deepEqual(await digShort(topo, world.host, V4ONLY_DNS, 'AAAA', V4ONLY_NAME), []);
    // Other names are the world's own dnsmasq's.
    assert.deepEqual(await digShort(topo, world.host, V4ONLY_DNS, 'A', WORLD6_NAME), [SERVER]);
    const file = join(topo.dir, 'upload.bin');
    const data = randomBytes(1 << 20);
    writeFileSync(file, data);
    const got = await upload(topo, world.host, `http://${MTU_SERVER}:${SINK_PORT}/`, file);
    assert.equal(got.sha256, createHash('sha256').update(data).digest('hex'));
    assert.equal(got.bytes, data.length);
    assert.equal(await learnedMtu(topo, world.host, MTU_SERVER), PATH_MTU);
  });
});

describe('an IPv6-only network reaches the IPv4 world through NAT64 and DNS64', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  const ula = nat64Ula();
  const args = [
    '--uplink',
    UPLINK,
    '--ipv6-only',
    '--nat64-prefix',
    NAT64_PREFIX,
    '--ipv6-prefix',
    ula.cidr,
    '--allow',
    WORLD_NET,
  ];
  const MAC = '52:54:00:64:01:01';
  let vm: Vm64;
  after(() => world.cleanup());

  before(
    async () => {
      await world.start({ fileMb: 16, ipv6: true });
      await startV4OnlyDns(world);
      await startSmallMtuSink(world);
      vm = await attachVm64(world, ula, 'v64', MAC, 1, args);
    },
    { timeout: 90_000 },
  );

  test('SLAAC gives an address in P:1::/64; a DHCPv4 client gets nothing, and its frames are counted as dropped', {
    timeout: 60_000,
  }, async () => {
    assert.ok(inPrefix(vm.addr, vm64(ula, 1)), vm.addr);
    const d0 = await drops(vm.softnet);
    const dhcp = await udhcpc4(topo, vm.ns, NIC, 3);
    const d1 = await drops(vm.softnet);
    assert.notEqual(dhcp.code, 0, `udhcpc: ${dhcp.events.join('; ')}\n${dhcp.output}`);
    assert.equal(dhcp.ip, null, dhcp.events.join('; '));
    const v4 = await topo.exec(vm.ns, 'ip', ['-4', '-o', 'addr', 'show', 'dev', NIC]);
    assert.equal(v4.stdout.trim(), '', `IPv4 on the VM's NIC:\n${v4.stdout}`);
    const counts = `before ${JSON.stringify(d0)}\nafter ${JSON.stringify(d1)}\n${tail(vm.softnet)}`;
    assert.ok(grew(d0, d1, 'ipv4-on-ipv6-only-network') >= 3, counts);
    const s = await show(topo, world.host, MAC);
    assert.equal(s.ip, null, JSON.stringify(s));
    assert.equal(s.ipv6Prefix, vm64(ula, 1), JSON.stringify(s));
  });

  test('rdisc6 shows the advertisement, and its bytes carry PREF64 2001:db8:64::/96 with PLC 0', {
    timeout: 60_000,
  }, async (t) => {
    const { text, cap } = await solicit(topo, vm.ns);
    t.diagnostic(text);
    const ctx = `rdisc6:\n${text}\n${tail(vm.softnet)}`;
    assert.match(text, new RegExp(`Prefix\\s*:\\s*${esc(vm64(ula, 1))}`), ctx);
    assert.match(text, new RegExp(`Recursive DNS server\\s*:\\s*${esc(ula.gateway)}`), ctx);
    assertPref64(cap, ctx);
  });

  test('ping -6 and curl reach the server by 2001:db8:64::203.0.113.10, from the uplink address and a NAT port', {
    timeout: 120_000,
  }, async (t) => {
    const p = await ping6(topo, vm.ns, SERVER64_LITERAL);
    assert.equal(p.received, 3, `${p.out}\n${tail(vm.softnet)}`);
    assert.match(p.out, new RegExp(`from ${esc(SERVER64)}: icmp_seq=`), p.out);
    const got = await fetch6(topo, vm.ns, `http://[${SERVER64_LITERAL}]:${PORTS.http}/${world.file.name}`);
    assert.equal(got.bytes, world.file.bytes, tail(vm.softnet));
    assert.equal(got.sha256, world.file.sha256);
    const peer = await peerSeen(topo, vm.ns, `[${SERVER64_LITERAL}]`);
    assert.equal(peer.ip, HOST_IP, tail(vm.softnet));
    assert.ok(peer.port >= NAT_PORTS[0] && peer.port <= NAT_PORTS[1], `port ${peer.port}`);
    const s = await show(topo, world.host, MAC);
    t.diagnostic(`nat64Mappings ${s.nat64Mappings}`);
    assert.ok(Number(s.nat64Mappings) > 0, JSON.stringify(s));
  });

  test('DNS64 at P::1: AAAA of an A-only name is synthesized in the prefix, and curl fetches by that name', {
    timeout: 120_000,
  }, async () => {
    const aaaa = await digAnswer(topo, vm.ns, ula.gateway, 'AAAA', V4ONLY_NAME);
    const ctx = `dig AAAA ${V4ONLY_NAME} @${ula.gateway}:\n${aaaa.text}\n${tail(vm.softnet)}`;
    assert.equal(aaaa.records.length, 1, ctx);
    assert.ok(same6(aaaa.records[0], SERVER64), ctx);
    // A name with an AAAA of its own keeps it (RFC 6147 5.1.1).
    const own = await digShort(topo, vm.ns, ula.gateway, 'AAAA', WORLD6_NAME);
    assert.deepEqual(own, ['2001:db8:2::10'], tail(vm.softnet));
    const got = await fetch6(topo, vm.ns, `http://${V4ONLY_NAME}:${PORTS.http}/${world.file.name}`);
    assert.equal(got.bytes, world.file.bytes, tail(vm.softnet));
    assert.equal(got.sha256, world.file.sha256);
  });

  test('dig AAAA ipv4only.arpa at P::1 answers 2001:db8:64::c000:aa and ::c000:ab', async () => {
    const answer = await digAnswer(topo, vm.ns, ula.gateway, 'AAAA', 'ipv4only.arpa');
    const got = answer.records;
    const want = [synth64('192.0.0.170'), synth64('192.0.0.171')];
    const ctx = `${answer.text}\n${tail(vm.softnet)}`;
    assert.equal(got.length, 2, ctx);
    for (const w of want)
      assert.ok(
        got.some((g) => same6(g, w)),
        `${w} missing: ${ctx}`,
      );
  });

  test('UDP echo and iperf3 TCP both ways through NAT64', { timeout: 120_000 }, async (t) => {
    const payload = randomBytes(48);
    const echo = await udpEcho(topo, vm.ns, payload, SERVER64_LITERAL);
    assert.deepEqual(echo.reply, payload, tail(vm.softnet));
    assert.ok(same6(echo.from, SERVER64), echo.from);
    assert.ok(
      world.echoes(SERVER).some((l) => l.startsWith(`${HOST_IP} `) && l.endsWith(' 48')),
      world.echoes(SERVER).join('\n'),
    );
    const up = await iperf3(topo, vm.ns, 2, [], SERVER64_LITERAL);
    t.diagnostic(`VM -> world: ${mbit(up.end.sum_received!.bits_per_second)} Mbit/s`);
    const down = await iperf3(topo, vm.ns, 2, ['-R'], SERVER64_LITERAL);
    t.diagnostic(`world -> VM: ${mbit(down.end.sum_received!.bits_per_second)} Mbit/s`);
    assert.ok(up.end.sum_received!.bytes > 0, tail(vm.softnet));
    assert.ok(down.end.sum_received!.bytes > 0, tail(vm.softnet));
  });

  test('traceroute -6 shows softnet, the router in the prefix, then the server', {
    timeout: 90_000,
  }, async (t) => {
    const tr = await traceroute6(topo, vm.ns, SERVER64_LITERAL);
    t.diagnostic(tr.out);
    assert.equal(tr.hops.length, 3, `${tr.out}\n${tail(vm.softnet)}`);
    assert.ok(
      same6(tr.hops[0], ula.gateway) || same6(tr.hops[0], 'fe80::1'),
      `the first hop is not softnet:\n${tr.out}`,
    );
    assert.ok(
      tr.hops[1] !== '*' && same6(tr.hops[1], ROUTER64),
      `the second hop is not ${ROUTER64}:\n${tr.out}`,
    );
    assert.ok(
      tr.hops[2] !== '*' && same6(tr.hops[2], SERVER64),
      `the third hop is not ${SERVER64}:\n${tr.out}`,
    );
  });

  test(`path MTU: a router with MTU ${PATH_MTU} on the way, and a large upload still arrives whole`, {
    timeout: 120_000,
  }, async () => {
    const dst = synth64(MTU_SERVER);
    const file = join(topo.dir, 'upload64.bin');
    const data = randomBytes(8 << 20);
    writeFileSync(file, data);
    const ptb = await capture(topo, vm.ns, NIC, 'icmp6 and ip6[40] == 2');
    const d0 = await drops(vm.softnet);
    let got: { sha256: string; bytes: number };
    try {
      got = await upload(topo, vm.ns, `http://[${dst}]:${SINK_PORT}/`, file, 60);
    } catch (e) {
      const d1 = await drops(vm.softnet);
      (e as Error).message +=
        `\npacket too big seen:\n${await ptb.stop()}\ndrops before ${JSON.stringify(d0)}\nafter ${JSON.stringify(d1)}\n${tail(vm.softnet)}`;
      throw e;
    }
    const seen = await ptb.stop();
    assert.equal(got.bytes, data.length, tail(vm.softnet));
    assert.equal(got.sha256, createHash('sha256').update(data).digest('hex'));
    // The router's "fragmentation needed" (MTU 1400), translated: packet too big with 1420, from the router.
    assert.match(
      seen,
      new RegExp(`IP6 ${esc(ROUTER64)} > ${esc(vm.addr)}: ICMP6, packet too big, mtu ${PATH_MTU + 20},`),
      seen,
    );
    assert.equal(await learnedMtu(topo, vm.ns, dst), PATH_MTU + 20);
  });

  test('the world side sees only IPv4 from 198.51.100.2, and the host link no NAT64 traffic', {
    timeout: 90_000,
  }, async (t) => {
    const world4 = await captureLines(topo, world.router, ROUTER_UPLINK_SIDE, 'not arp', true);
    const hostLink = await captureLines(topo, world.host, HOST_LINK, 'not port 53');
    const p = await ping6(topo, vm.ns, SERVER64_LITERAL, 2);
    const peer = await peerSeen(topo, vm.ns, `[${SERVER64_LITERAL}]`);
    const payload = randomBytes(16);
    const echo = await udpEcho(topo, vm.ns, payload, SERVER64_LITERAL);
    // What does use the host link: the VM's ping of the gateway, so that capture is known to be live.
    const gw = await ping6(topo, vm.ns, ula.gateway, 1);
    await until(
      'the captures show the pings',
      async () =>
        world4.seen().includes('ICMP echo request') &&
        hostLink.seen().includes(`> ${ula.gateway}: ICMP6, echo request`),
      5000,
      100,
    );
    const onWorld = await world4.stop();
    const onHost = await hostLink.stop();
    const worldText = onWorld.join('\n');
    t.diagnostic(`the world side:\n${worldText}`);
    assert.equal(p.received, 2, p.out);
    assert.equal(peer.ip, HOST_IP);
    assert.deepEqual(echo.reply, payload);
    assert.equal(gw.received, 1, gw.out);
    // The host kernel's own router solicitations and the like aside, only IPv4 from the uplink's address.
    const foreign = onWorld.filter(
      (l) => !linkChatter(l) && !new RegExp(`^\\S+ IP ${esc(HOST_IP)}(\\.\\d+)? > `).test(l),
    );
    assert.deepEqual(foreign, [], `not IPv4 from ${HOST_IP} on the world side:\n${worldText}`);
    for (const what of [
      / ICMP echo request/,
      new RegExp(`\\.${PORTS.peer}: Flags \\[S\\]`),
      / > 203\.0\.113\.10\.7007: /,
    ]) {
      assert.match(worldText, what, worldText);
    }
    const leaks = onHost.filter(
      (l) => l.includes('2001:db8:64:') || l.includes('203.0.113.') || l.includes(HOST_IP),
    );
    assert.deepEqual(leaks, [], `NAT64 traffic on the host link:\n${onHost.join('\n')}`);
  });
});

describe('a dual-stack network with --nat64', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  const ula = nat64Ula();
  const args = [
    '--uplink',
    UPLINK,
    '--nat64',
    '--nat64-prefix',
    NAT64_PREFIX,
    '--ipv6-prefix',
    ula.cidr,
    '--allow',
    WORLD_NET,
  ];
  const MAC = '52:54:00:64:02:01';
  let vm: Vm64;
  after(() => world.cleanup());

  before(
    async () => {
      await world.start({ fileMb: 4, ipv6: true });
      vm = await attachVm64(world, ula, 'v46', MAC, 1, args);
    },
    { timeout: 90_000 },
  );

  test('the VM gets IPv4 and IPv6, PREF64 is advertised, and the IPv4 server answers both ways', {
    timeout: 120_000,
  }, async () => {
    const lease = await udhcpc4(topo, vm.ns, NIC, 5);
    assert.match(lease.ip ?? '', /^192\.168\.64\.\d+$/, `${lease.events.join('; ')}\n${lease.output}`);
    assert.ok(inPrefix(vm.addr, vm64(ula, 1)), vm.addr);
    const v6 = (await addrs6(topo, vm.ns, NIC)).filter((a) => a.scope === 'global');
    assert.ok(v6.length > 0);
    const { text, cap } = await solicit(topo, vm.ns);
    assertPref64(cap, `rdisc6:\n${text}\n${tail(vm.softnet)}`);
    const p = await ping6(topo, vm.ns, SERVER64_LITERAL);
    assert.equal(p.received, 3, `${p.out}\n${tail(vm.softnet)}`);
    const by64 = await fetch6(topo, vm.ns, `http://[${SERVER64_LITERAL}]:${PORTS.http}/${world.file.name}`);
    assert.equal(by64.sha256, world.file.sha256, tail(vm.softnet));
    assert.equal((await peerSeen(topo, vm.ns, `[${SERVER64_LITERAL}]`)).ip, HOST_IP);
    assert.equal((await peerSeen(topo, vm.ns, SERVER)).ip, HOST_IP);
    const s = await show(topo, world.host, MAC);
    assert.equal(s.ip, lease.ip, JSON.stringify(s));
    assert.ok(Number(s.nat64Mappings) > 0, JSON.stringify(s));
  });
});
