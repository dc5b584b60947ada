// Port forwards (--expose) over IPv6, with real clients and servers in namespaces (see test/lib/world.ts for
// the map): a forward without a bind address is also on the uplink's IPv6 address, a static NAT66 mapping
// to the address the VM was last seen sending from in its /64, and the host reaches it on its own IPv6
// addresses, [::1] included, through the engine's proxy (to the VM's IPv4 address, or on an IPv6-only
// network to its IPv6 one). The VM takes its address by the kernel's SLAAC; a TCP echo and a UDP echo in
// it say which client address and which local address they saw.

import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { inPrefix, ping6, same6, type Ula, vm64 } from '../lib/ipv6.js';
import { lease4, NIC, slaacVm } from '../lib/ipv6-flows.js';
import { NAT64_PREFIX } from '../lib/nat64.js';
import type { Softnet } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import {
  capture,
  GATEWAY,
  HOST_IP6,
  listening,
  SERVER6,
  Tail,
  UPLINK,
  until,
  WORLD_NET6,
  World,
} from '../lib/world.js';

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
/** The forwarded ports: host side and VM side. */
const TCP_EXT = 8022;
const TCP_INT = 22;
const UDP_EXT = 8053;
const UDP_INT = 53;
/** The router's end of the host<->router link: what it receives there is what the host sent. */
const ROUTER_UPLINK_SIDE = 'h0';

// TCP on argv[1] and UDP on argv[2], both families (an IPv6 socket without V6ONLY). TCP: a first line
// "peer <client address> <client port> at <local address>", then an echo until the client's end of
// stream. UDP: "peer <client address> <client port> " and the datagram back. Each is also printed.
const VM_SERVER = `
import socket, sys, threading
def serve(c, a):
    with c:
        c.sendall(('peer %s %d at %s\\n' % (a[0], a[1], c.getsockname()[0])).encode())
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(d)
def tcp(port):
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('::', port))
    s.listen(64)
    while True:
        c, a = s.accept()
        print('tcp', port, a[0], a[1], flush=True)
        threading.Thread(target=serve, args=(c, a), daemon=True).start()
def udp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(('::', port))
    while True:
        d, a = s.recvfrom(65535)
        print('udp', port, a[0], a[1], flush=True)
        s.sendto(('peer %s %d ' % a[:2]).encode() + d, a)
if sys.argv[1]:
    threading.Thread(target=tcp, args=(int(sys.argv[1]),), daemon=True).start()
if sys.argv[2]:
    threading.Thread(target=udp, args=(int(sys.argv[2]),), daemon=True).start()
threading.Event().wait()
`;

// Connects to argv[1]:argv[2] within argv[4] seconds, prints the server's first line, sends argv[3] random
// bytes, ends its side, and prints "echo ok" when exactly those came back before the server's end of
// stream. A connection that fails prints "connect <refused|timeout|error ...>" and exits 3.
const TCP_CLIENT = `
import os, socket, sys, threading
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[4]))
except ConnectionRefusedError:
    print('connect refused', flush=True); sys.exit(3)
except socket.timeout:
    print('connect timeout', flush=True); sys.exit(3)
except OSError as e:
    print('connect error %s' % e, flush=True); sys.exit(3)
c.settimeout(20)
f = c.makefile('rb')
print(f.readline().decode().strip(), flush=True)
data = os.urandom(int(sys.argv[3]))
def send():
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = f.read()
t.join()
print('echo ok' if got == data else 'echo mismatch: %d of %d bytes' % (len(got), len(data)), flush=True)
`;

// Sends "hello" to argv[1]:argv[2] up to 5 times, 1 s apart; prints the first reply and where it came from
// ("<reply> from <address> <port>").
const UDP_CLIENT = `
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for _ in range(5):
    s.sendto(b'hello', (sys.argv[1], int(sys.argv[2])))
    try:
        d, a = s.recvfrom(65535)
        print('%s from %s %d' % (d.decode(), a[0], a[1]), flush=True)
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
`;

/** A ULA /48 of fd00:77::/32 with a random third group (never with a leading zero, so it prints as built). */
function forwardsUla(): Ula {
  const base = `fd00:77:${randomInt(0x1000, 0x10000).toString(16)}`;
  return { cidr: `${base}::/48`, base, gateway: `${base}::1` };
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The last lines softnet logged, for assertion messages. */
function tail(s: Softnet, n = 40): string {
  return `softnet's last lines:\n${s.lines.slice(-n).join('\n')}`;
}

/** softnet's drop counters by reason. */
async function drops(s: Softnet): Promise<Record<string, number>> {
  return (await s.counters()).drops ?? {};
}

/** The TCP client's result: the server's first line, whether the echo came back whole, its exit code. */
interface TcpResult {
  first: string;
  echo: string;
  code: number;
  stderr: string;
}

/** A TCP client in `ns` of `host`:`port`, connecting within `connectS` seconds. */
async function tcpClient(
  topo: Topology,
  ns: string,
  host: string,
  port: number,
  bytes = 1000,
  connectS = 10,
): Promise<TcpResult> {
  const r = await topo.status(
    ns,
    PYTHON,
    ['-c', TCP_CLIENT, host, String(port), String(bytes), String(connectS)],
    (connectS + 40) * 1000,
  );
  const [first = '', echo = ''] = r.stdout.trim().split('\n');
  return { first, echo, code: r.code, stderr: r.stderr };
}

/** A UDP client in `ns`: "<reply> from <address> <port>", '' when none came. */
async function udpClient(topo: Topology, ns: string, host: string, port: number): Promise<string> {
  return (await topo.status(ns, PYTHON, ['-c', UDP_CLIENT, host, String(port)], 15_000)).stdout.trim();
}

/** Runs the echo services in VM namespace `ns` (a port of 0: none) and waits until they listen. */
async function vmServices(topo: Topology, ns: string, tcp: number, udp: number): Promise<Tail> {
  const t = new Tail(
    topo.spawn(ns, PYTHON, ['-u', '-c', VM_SERVER, tcp ? String(tcp) : '', udp ? String(udp) : '']),
  );
  if (tcp) await until(`tcp ${tcp} in the VM`, async () => listening(topo, ns, 'tcp', tcp));
  if (udp) await until(`udp ${udp} in the VM`, async () => listening(topo, ns, 'udp', udp));
  return t;
}

/** Whether two address texts name the same address: IPv6 compared as numbers, IPv4-mapped ones as text. */
function sameAddr(a: string, b: string): boolean {
  return a.includes('.') || b.includes('.') ? a.toLowerCase() === b.toLowerCase() : same6(a, b);
}

/** `peer <client> <port> at <local>` of a server's first line, the addresses compared as numbers. */
function assertPeer(first: string, client: string, local: string, why: string): void {
  const m = first.match(/^peer (\S+) \d+ at (\S+)$/);
  assert.ok(m, `not a server's first line: ${JSON.stringify(first)}\n${why}`);
  assert.ok(sameAddr(m[1], client), `the VM saw client ${m[1]}, not ${client}\n${why}`);
  assert.ok(sameAddr(m[2], local), `the VM was reached at ${m[2]}, not ${local}\n${why}`);
}

/** `addr` as an IPv4-mapped IPv6 address (how a dual-stack socket prints an IPv4 peer). */
const mapped = (v4: string) => `::ffff:${v4}`;

describe('port forwards over IPv6, dual stack', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  const ula = forwardsUla();
  const cidr = vm64(ula, 1);
  const args = [
    '--uplink',
    UPLINK,
    '--ipv6-prefix',
    ula.cidr,
    '--allow',
    WORLD_NET6,
    '--expose',
    `${TCP_EXT}:${TCP_INT},${UDP_EXT}:${UDP_INT}/udp`,
  ];
  let vm: string;
  let softnet: Softnet;
  let addr: string;
  let vmIp4: string;
  let server: Tail;
  after(() => world.cleanup());

  before(
    async () => {
      await world.start({ fileMb: 1, ipv6: true });
      ({ ns: vm, softnet, addr } = await slaacVm(world, 'vm', '52:54:00:46:66:01', cidr, args));
      vmIp4 = await lease4(topo, vm);
      server = await vmServices(topo, vm, TCP_INT, UDP_INT);
      await softnet.waitFor(
        new RegExp(`forward (installed|moved) .*forward=${TCP_EXT}:${TCP_INT}/tcp .*world=true`),
      );
    },
    { timeout: 120_000 },
  );

  test("the forwarded ports are in the ip6 guard's sets", async () => {
    const rules = (await topo.exec(world.host, 'nft', ['list', 'ruleset'])).stdout;
    assert.match(rules, new RegExp(`table ip6 softnet6_${UPLINK}_`), rules);
    const ip6 = rules.slice(rules.indexOf('table ip6 softnet6_'));
    assert.match(ip6, new RegExp(`set forward_tcp \\{[^}]*elements = \\{ ${TCP_EXT} \\}`), ip6);
    assert.match(ip6, new RegExp(`set forward_udp \\{[^}]*elements = \\{ ${UDP_EXT} \\}`), ip6);
  });

  test('before the VM has sent from its /64: a connection from the world times out, with no RST from the host', {
    timeout: 60_000,
  }, async () => {
    const d0 = await drops(softnet);
    const sniff = await capture(topo, world.router, ROUTER_UPLINK_SIDE, `ip6 and tcp port ${TCP_EXT}`);
    const r = await tcpClient(topo, world.world, HOST_IP6, TCP_EXT, 10, 5);
    const seen = await sniff.stop();
    const d1 = await drops(softnet);
    const counts = `drops before ${JSON.stringify(d0)}\nafter ${JSON.stringify(d1)}\n${tail(softnet)}`;
    assert.equal(r.first, 'connect timeout', `${r.first} ${r.stderr}\ntcpdump on h0:\n${seen}\n${counts}`);
    // The SYNs went to the host; nothing came back (a RST would be the host's stack answering).
    assert.match(
      seen,
      new RegExp(`${esc(SERVER6)}\\.\\d+ > ${esc(HOST_IP6)}\\.${TCP_EXT}: Flags \\[S\\]`),
      seen,
    );
    assert.doesNotMatch(seen, new RegExp(`${esc(HOST_IP6)}\\.${TCP_EXT} > `), seen);
    assert.ok((d1['forward-vm-without-address'] ?? 0) > (d0['forward-vm-without-address'] ?? 0), counts);
    assert.ok(!server.lines().some((l) => l.startsWith(`tcp ${TCP_INT} `)), server.output);
  });

  test("after one packet from its SLAAC address, the world reaches the VM's TCP server, with its own address seen", {
    timeout: 60_000,
  }, async () => {
    const p = await ping6(topo, vm, ula.gateway, 1);
    assert.equal(p.received, 1, p.out);
    // The ping's source is the VM's SLAAC address (its only global one).
    const r = await tcpClient(topo, world.world, HOST_IP6, TCP_EXT, 1 << 20);
    assertPeer(r.first, SERVER6, addr, `${r.stderr}\n${tail(softnet)}`);
    assert.equal(r.echo, 'echo ok', r.stderr);
    assert.ok(inPrefix(addr, cidr), addr);
  });

  test('a UDP datagram from the world gets its echo back from the uplink address and port', {
    timeout: 60_000,
  }, async () => {
    const r = await udpClient(topo, world.world, HOST_IP6, UDP_EXT);
    const m = r.match(/^peer (\S+) \d+ hello from (\S+) (\d+)$/);
    assert.ok(m, `no echo: ${JSON.stringify(r)}\n${tail(softnet)}`);
    assert.ok(same6(m[1], SERVER6), r);
    assert.ok(same6(m[2], HOST_IP6), r);
    assert.equal(Number(m[3]), UDP_EXT, r);
  });

  test("the host reaches it at [::1] and at its uplink's IPv6 address, through the proxy to the VM's IPv4 address", {
    timeout: 60_000,
  }, async () => {
    const [loop, own] = await Promise.all([
      tcpClient(topo, world.host, '::1', TCP_EXT, 1 << 20),
      tcpClient(topo, world.host, HOST_IP6, TCP_EXT, 1000),
    ]);
    assertPeer(loop.first, mapped(GATEWAY), mapped(vmIp4), `${loop.stderr}\n${tail(softnet)}`);
    assert.equal(loop.echo, 'echo ok', loop.stderr);
    assertPeer(own.first, mapped(GATEWAY), mapped(vmIp4), `${own.stderr}\n${tail(softnet)}`);
    assert.equal(own.echo, 'echo ok', own.stderr);
    const udp = await udpClient(topo, world.host, '::1', UDP_EXT);
    const m = udp.match(/^peer (\S+) \d+ hello from (\S+) (\d+)$/);
    assert.ok(m, `no echo: ${JSON.stringify(udp)}\n${tail(softnet)}`);
    assert.ok(sameAddr(m[1], mapped(GATEWAY)), udp);
    assert.ok(same6(m[2], '::1'), udp);
  });

  test('once the forward is gone (a second VM without --expose), the host answers [uplink]:8022 itself: refused', {
    timeout: 90_000,
  }, async () => {
    assert.deepEqual(await softnet.stop('SIGTERM'), { code: 0, signal: null }, tail(softnet));
    assert.ok(
      softnet.lines.some((l) => /forward removed .*forward=8022:22\/tcp /.test(l)),
      tail(softnet),
    );
    // The first VM keeps its /64 (its subnet id outlives the engine): this one gets the next of the /48.
    const other = await slaacVm(world, 'vm2', '52:54:00:46:66:02', ula.cidr, [
      '--uplink',
      UPLINK,
      '--ipv6-prefix',
      ula.cidr,
      '--allow',
      WORLD_NET6,
    ]);
    await vmServices(topo, other.ns, TCP_INT, 0);
    assert.equal((await ping6(topo, other.ns, ula.gateway, 1)).received, 1);
    const rules = (await topo.exec(world.host, 'nft', ['list', 'ruleset'])).stdout;
    assert.doesNotMatch(rules, new RegExp(`elements = \\{[^}]*\\b${TCP_EXT}\\b`), rules);
    assert.equal(await listening(topo, world.host, 'tcp', TCP_EXT), '');
    const sniff = await capture(topo, world.router, ROUTER_UPLINK_SIDE, `ip6 and tcp port ${TCP_EXT}`);
    const r = await tcpClient(topo, world.world, HOST_IP6, TCP_EXT, 10, 5);
    const seen = await sniff.stop();
    assert.equal(r.first, 'connect refused', `${r.first}\ntcpdump on h0:\n${seen}\n${tail(other.softnet)}`);
    assert.match(
      seen,
      new RegExp(`${esc(HOST_IP6)}\\.${TCP_EXT} > ${esc(SERVER6)}\\.\\d+: Flags \\[R`),
      seen,
    );
    assert.deepEqual(await other.softnet.stop('SIGTERM'), { code: 0, signal: null }, tail(other.softnet));
  });
});

describe('port forwards on an IPv6-only network', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  const ula = forwardsUla();
  const cidr = vm64(ula, 1);
  const args = [
    '--uplink',
    UPLINK,
    '--ipv6-only',
    '--nat64-prefix',
    NAT64_PREFIX,
    '--ipv6-prefix',
    ula.cidr,
    '--allow',
    WORLD_NET6,
    '--expose',
    `${TCP_EXT}:${TCP_INT}`,
  ];
  let vm: string;
  let softnet: Softnet;
  let addr: string;
  after(() => world.cleanup());

  before(
    async () => {
      await world.start({ fileMb: 1, ipv6: true });
      ({ ns: vm, softnet, addr } = await slaacVm(world, 'v6only', '52:54:00:46:66:03', cidr, args));
      await vmServices(topo, vm, TCP_INT, 0);
    },
    { timeout: 120_000 },
  );

  test("the host's [::1] reaches the VM's server over IPv6 (the VM has no IPv4)", {
    timeout: 60_000,
  }, async () => {
    const v4 = await topo.exec(vm, 'ip', ['-4', '-o', 'addr', 'show', 'dev', NIC]);
    assert.equal(v4.stdout.trim(), '', v4.stdout);
    assert.equal((await ping6(topo, vm, ula.gateway, 1)).received, 1);
    const r = await tcpClient(topo, world.host, '::1', TCP_EXT, 1 << 20);
    assertPeer(r.first, ula.gateway, addr, `${r.stderr}\n${tail(softnet)}`);
    assert.equal(r.echo, 'echo ok', r.stderr);
  });

  test('the world reaches it at the uplink address too, its own address seen', {
    timeout: 60_000,
  }, async () => {
    const r = await tcpClient(topo, world.world, HOST_IP6, TCP_EXT, 1000);
    assertPeer(r.first, SERVER6, addr, `${r.stderr}\n${tail(softnet)}`);
    assert.equal(r.echo, 'echo ok', r.stderr);
  });
});
