// Port forwards (--expose) with real clients and servers in namespaces (see test/lib/world.ts for the map):
// a TCP echo service and a UDP echo service in the VM, each answering with the client's address as the VM
// saw it, reached from the world at the uplink address and from the host itself; a lease change moving
// the forwards; a second VM refused a port the first holds; a successor engine installing them again.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Udhcpc } from '../lib/clients.js';
import { SOFTNET, type Softnet, softnetForVm, withControl } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import {
  GATEWAY,
  HOST_IP,
  listening,
  SERVER,
  Tail,
  UPLINK,
  until,
  vmOnline,
  WORLD_NET,
  World,
} from '../lib/world.js';

const NAT_ARGS = ['--uplink', UPLINK, '--allow', WORLD_NET];
const MAC = '52:54:00:46:57:01';
/** A lease the VM asks for when it moves, far from the first ones the pool hands out. */
const MOVED_TO = '192.168.64.77';
/** The second VM's address. */
const OTHER_IP = '192.168.64.88';

// TCP on the ports of argv[1] and UDP on those of argv[2], all addresses. TCP: a first line
// "peer <client address> <client port> at <local address>", then an echo until the client's end of
// stream. UDP: "peer <client address> <client port> " and the datagram back.
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
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', port))
    s.listen(64)
    while True:
        c, a = s.accept()
        print('tcp', port, a[0], a[1], flush=True)
        threading.Thread(target=serve, args=(c, a), daemon=True).start()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(('0.0.0.0', port))
    while True:
        d, a = s.recvfrom(65535)
        print('udp', port, a[0], a[1], flush=True)
        s.sendto(('peer %s %d ' % a).encode() + d, a)
for p in filter(None, sys.argv[1].split(',')):
    threading.Thread(target=tcp, args=(int(p),), daemon=True).start()
for p in filter(None, sys.argv[2].split(',')):
    threading.Thread(target=udp, args=(int(p),), daemon=True).start()
threading.Event().wait()
`;

// Connects to argv[1]:argv[2], prints the server's first line, sends argv[3] random bytes, ends its side,
// and prints "echo ok" when exactly those came back before the server's end of stream.
const TCP_CLIENT = `
import hashlib, os, socket, sys, threading
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
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

// Sends "hello" to argv[1]:argv[2] up to 5 times, 1 s apart; prints the first reply.
const UDP_CLIENT = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for _ in range(5):
    s.sendto(b'hello', (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(65535)[0].decode(), flush=True)
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
`;

/** The last lines softnet logged, for assertion messages. */
function tail(s: Softnet, n = 40): string {
  return `softnet's last lines:\n${s.lines.slice(-n).join('\n')}`;
}

describe('port forwards', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  let vm: string;
  let softnet: Softnet;
  let vmIp: string;
  let vmServer: Tail;
  after(() => world.cleanup());

  /** A TCP client in `ns`: the server's first line, and whether `bytes` came back whole. */
  async function tcpClient(ns: string, host: string, port: number, bytes = 1000) {
    const r = await topo.status(ns, 'python3', ['-c', TCP_CLIENT, host, String(port), String(bytes)], 30_000);
    const [first = '', echo = ''] = r.stdout.trim().split('\n');
    return { first, echo, code: r.code, stderr: r.stderr };
  }

  /** A UDP client in `ns`: the reply, '' when none came. */
  async function udpClient(ns: string, host: string, port: number): Promise<string> {
    return (await topo.status(ns, 'python3', ['-c', UDP_CLIENT, host, String(port)], 15_000)).stdout.trim();
  }

  /** Runs the echo services in VM namespace `ns` and waits until they listen. */
  async function vmServices(ns: string, tcp: number[], udp: number[]): Promise<Tail> {
    const t = new Tail(topo.spawn(ns, 'python3', ['-u', '-c', VM_SERVER, tcp.join(','), udp.join(',')]));
    for (const port of tcp)
      await until(`tcp ${port} in the VM`, async () => listening(topo, ns, 'tcp', port));
    for (const port of udp)
      await until(`udp ${port} in the VM`, async () => listening(topo, ns, 'udp', port));
    return t;
  }

  before(
    async () => {
      await world.start({ fileMb: 1 });
      vm = await topo.netns('vm');
      softnet = await softnetForVm(topo, world.host, vm, MAC, [
        ...NAT_ARGS,
        '--expose',
        '8080:80,5353:53/udp,127.0.0.1:8081:81',
      ]);
      vmIp = (await vmOnline(topo, vm)).ip;
      vmServer = await vmServices(vm, [80, 81], [53]);
    },
    { timeout: 90_000 },
  );

  test('the forwards are installed and logged, with the address they lead to', async () => {
    for (const f of ['8080:80/tcp', '5353:53/udp', '127.0.0.1:8081:81/tcp'])
      await softnet.waitFor(new RegExp(`forward (installed|moved) .*forward=${f.replaceAll('.', '\\.')} `));
    await softnet.waitFor(
      new RegExp(`forward moved .*forward=8080:80/tcp .*ip=${vmIp.replaceAll('.', '\\.')} `),
    );
    assert.ok(
      softnet.lines.some((l) =>
        /forward installed .*forward=127\.0\.0\.1:8081:81\/tcp .*world=false/.test(l),
      ),
      tail(softnet),
    );
    // The guard keeps the host's stack off the world-side ports (and only those).
    const rules = (await topo.exec(world.host, 'nft', ['list', 'ruleset'])).stdout;
    assert.match(rules, /set forward_tcp \{[^}]*elements = \{ 8080 \}/, rules);
    assert.match(rules, /set forward_udp \{[^}]*elements = \{ 5353 \}/, rules);
  });

  test("from the world at the uplink address: the VM sees the client's own address; 2 MB echo back", {
    timeout: 60_000,
  }, async () => {
    const r = await tcpClient(world.world, HOST_IP, 8080, 2 << 20);
    assert.match(r.first, new RegExp(`^peer ${SERVER} \\d+ at ${vmIp}$`), `${r.stderr}\n${tail(softnet)}`);
    assert.equal(r.echo, 'echo ok', r.stderr);
  });

  test('from the host itself at 127.0.0.1 and at its uplink address, while the world connects too', {
    timeout: 60_000,
  }, async () => {
    const [loop, own, fromWorld] = await Promise.all([
      tcpClient(world.host, '127.0.0.1', 8080, 1 << 20),
      tcpClient(world.host, HOST_IP, 8080, 1000),
      tcpClient(world.world, HOST_IP, 8080, 1 << 20),
    ]);
    // The host's connections come through the engine's proxy over the host link: the VM sees the gateway.
    assert.match(
      loop.first,
      new RegExp(`^peer ${GATEWAY} \\d+ at ${vmIp}$`),
      `${loop.stderr}\n${tail(softnet)}`,
    );
    assert.equal(loop.echo, 'echo ok');
    assert.match(own.first, new RegExp(`^peer ${GATEWAY} \\d+ at ${vmIp}$`), own.stderr);
    assert.equal(own.echo, 'echo ok');
    assert.match(fromWorld.first, new RegExp(`^peer ${SERVER} \\d+ at ${vmIp}$`), fromWorld.stderr);
    assert.equal(fromWorld.echo, 'echo ok');
  });

  test('a forward bound to 127.0.0.1 serves the host and not the world', { timeout: 60_000 }, async () => {
    const local = await tcpClient(world.host, '127.0.0.1', 8081);
    assert.match(
      local.first,
      new RegExp(`^peer ${GATEWAY} \\d+ at ${vmIp}$`),
      `${local.stderr}\n${tail(softnet)}`,
    );
    const far = await tcpClient(world.world, HOST_IP, 8081);
    assert.notEqual(far.code, 0, `the world reached 127.0.0.1:8081:81: ${far.first}`);
    assert.match(far.stderr, /Connection refused/, far.stderr);
    assert.ok(!vmServer.lines().some((l) => l.startsWith(`tcp 81 ${SERVER} `)), vmServer.output);
  });

  test('a UDP forward: from the world (its own address seen) and from the host', {
    timeout: 60_000,
  }, async () => {
    const fromWorld = await udpClient(world.world, HOST_IP, 5353);
    assert.match(fromWorld, new RegExp(`^peer ${SERVER} \\d+ hello$`), tail(softnet));
    const fromHost = await udpClient(world.host, '127.0.0.1', 5353);
    assert.match(fromHost, new RegExp(`^peer ${GATEWAY} \\d+ hello$`), tail(softnet));
  });

  test('a lease change moves the forwards: the next connection reaches the new address', {
    timeout: 90_000,
  }, async () => {
    const from = softnet.lines.length;
    // The VM's DHCP client releases its lease (SIGUSR2), then asks for another address.
    const udhcpc = new Udhcpc(topo, vm);
    const seen = udhcpc.events().length;
    const daemon = udhcpc.daemon();
    await until('the client bound', async () =>
      udhcpc
        .events()
        .slice(seen)
        .some((e) => e.event === 'bound'),
    );
    // The release is unicast to the gateway just before the client's script flushes the address: with
    // the gateway's MAC to look up first, it would be lost.
    await topo.exec(vm, 'ping', ['-c', '1', '-W', '2', GATEWAY]);
    daemon.kill('SIGUSR2');
    await softnet.waitFor(/forward idle .*forward=8080:80\/tcp .*ip=none/, 10_000, from);
    const exited = new Promise((resolve) => daemon.once('exit', resolve));
    daemon.kill('SIGTERM');
    await exited;
    const moved = await udhcpc.once(['-r', MOVED_TO]);
    assert.equal(moved.ip, MOVED_TO);
    await topo.exec(vm, 'ip', ['route', 'replace', 'default', 'via', GATEWAY, 'dev', 'eth0']);
    const log = await softnet.waitFor(/forward moved .*forward=8080:80\/tcp .*/, 10_000, from);
    assert.match(
      log[0],
      new RegExp(`ip=${MOVED_TO.replaceAll('.', '\\.')} .*from=${vmIp.replaceAll('.', '\\.')}`),
    );
    const r = await tcpClient(world.world, HOST_IP, 8080);
    assert.match(
      r.first,
      new RegExp(`^peer ${SERVER} \\d+ at ${MOVED_TO}$`),
      `${r.stderr}\n${tail(softnet)}`,
    );
    const local = await tcpClient(world.host, '127.0.0.1', 8080);
    assert.match(local.first, new RegExp(`at ${MOVED_TO}$`), local.stderr);
    assert.match(await udpClient(world.world, HOST_IP, 5353), new RegExp(`^peer ${SERVER} \\d+ hello$`));
    vmIp = MOVED_TO;
  });

  /** Runs a second VM's softnet to the end (it must be refused); returns its exit code and stderr. */
  async function refused(name: string, mac: string, expose: string) {
    const ns = await topo.netns(name);
    return topo.status(
      world.host,
      process.execPath,
      withControl(topo, [
        SOFTNET,
        '--vm-netns',
        `/run/netns/${ns}`,
        '--vm-mac-address',
        mac,
        ...NAT_ARGS,
        '--expose',
        expose,
        '--state-dir',
        `${topo.dir}/state`,
      ]),
      30_000,
    );
  }

  test('a second VM asking for the same host port gets one line naming --expose and exit 2; the first goes on', {
    timeout: 60_000,
  }, async () => {
    const r = await refused('vm2', '52:54:00:46:57:02', '9000:90,8080:80');
    assert.equal(r.code, 2, r.stderr);
    const lines = r.stderr.trimEnd().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0],
      /^softnet: --expose: 8080:80\/tcp: host port 8080\/tcp is forwarded to VM vm-525400465701 already$/,
    );
    // Nothing of it stayed: its other port is free, and the first VM's forward still works.
    assert.equal(await listening(topo, world.host, 'tcp', 9000), '');
    const first = await tcpClient(world.world, HOST_IP, 8080);
    assert.match(first.first, new RegExp(`^peer ${SERVER} \\d+ at ${vmIp}$`), tail(softnet));
  });

  test('a port a host service holds, or one of the NAT range, is refused the same way', {
    timeout: 60_000,
  }, async () => {
    topo.spawn(world.host, 'python3', [
      '-c',
      "import socket, time\ns = socket.socket(); s.bind(('0.0.0.0', 9191)); s.listen(); time.sleep(600)",
    ]);
    await until('the host service listens', async () => listening(topo, world.host, 'tcp', 9191));
    const busy = await refused('vm3', '52:54:00:46:57:03', '9191:80');
    assert.equal(busy.code, 2, busy.stderr);
    assert.match(
      busy.stderr,
      /^softnet: --expose: 9191:80\/tcp: host port 9191\/tcp is in use by another program\n$/,
    );
    const natPort = await refused('vm4', '52:54:00:46:57:04', '61000:80');
    assert.equal(natPort.code, 2, natPort.stderr);
    assert.match(
      natPort.stderr,
      /^softnet: --expose: 61000:80\/tcp: port 61000 is in the NAT port range 61000-64999 of up0\n$/,
    );
  });

  test("a VM's forwards come back when a successor engine takes it over; the one that left takes its own", {
    timeout: 120_000,
  }, async () => {
    const ns = await topo.netns('vm5');
    const other = await softnetForVm(topo, world.host, ns, '52:54:00:46:57:05', [
      ...NAT_ARGS,
      '--expose',
      '8090:90',
    ]);
    // An address nobody had: the host would still know the first VM's old one by that VM's MAC for a
    // while (its neighbour entry), and this test is not about that.
    await new Udhcpc(topo, ns).once(['-r', OTHER_IP]);
    await topo.exec(ns, 'ip', ['route', 'replace', 'default', 'via', GATEWAY, 'dev', 'eth0']);
    await vmServices(ns, [90], []);
    await other.waitFor(/forward (installed|moved) .*forward=8090:90\/tcp .*ip=192/);
    assert.match((await tcpClient(world.world, HOST_IP, 8090)).first, new RegExp(`^peer ${SERVER} `));
    // One VM reaches the other's forward at the gateway: the host's stack takes it to the proxy.
    const across = await tcpClient(ns, GATEWAY, 8080);
    assert.match(
      across.first,
      new RegExp(`^peer ${GATEWAY} \\d+ at ${vmIp}$`),
      `${across.stderr}\n${tail(softnet)}`,
    );
    // The first VM's softnet runs the engine; it stops, and the second VM's process takes over.
    assert.deepEqual(await softnet.stop('SIGTERM'), { code: 0, signal: null }, tail(softnet));
    assert.ok(
      softnet.lines.some((l) => /forward removed .*forward=8080:80\/tcp .*reason=/.test(l)),
      tail(softnet),
    );
    const from = other.lines.findIndex((l) => /engine gone/.test(l));
    await other.waitFor(/forward installed .*forward=8090:90\/tcp .*world=true/, 30_000, Math.max(from, 0));
    // The successor's host link has a MAC of its own, so the gateway's MAC the VM has cached is stale (a
    // matter of the hand-over, not of forwards): the VM forgets it, as it would after a while.
    await topo.exec(ns, 'ip', ['neigh', 'flush', 'dev', 'eth0']);
    const r = await tcpClient(world.world, HOST_IP, 8090);
    assert.match(r.first, / at 192\.168\.64\.\d+$/);
    assert.equal((await tcpClient(world.world, HOST_IP, 8080)).code === 0, false, 'the first VM is gone');
    assert.equal(await listening(topo, world.host, 'tcp', 8080), '', 'its proxy is closed');

    // At the end nothing is left: no table (its sets with it), nothing listening on the forwarded ports.
    assert.deepEqual(await other.stop('SIGTERM'), { code: 0, signal: null }, tail(other));
    const tables = (await topo.exec(world.host, 'nft', ['list', 'tables'])).stdout;
    assert.doesNotMatch(tables, /softnet/, tables);
    for (const port of [8080, 8081, 8090]) assert.equal(await listening(topo, world.host, 'tcp', port), '');
    assert.equal(await listening(topo, world.host, 'udp', 5353), '');
  });

  test("after SIGKILL the next engine removes the killed one's table, forward sets and all", {
    timeout: 90_000,
  }, async () => {
    let s = await softnetForVm(topo, world.host, vm, MAC, [...NAT_ARGS, '--expose', '8080:80']);
    await vmOnline(topo, vm);
    assert.match(
      (await tcpClient(world.world, HOST_IP, 8080)).first,
      new RegExp(`^peer ${SERVER} `),
      tail(s),
    );
    const killed = s.child.pid;
    await s.stop('SIGKILL');
    const left = (await topo.exec(world.host, 'nft', ['list', 'ruleset'])).stdout;
    assert.match(left, new RegExp(`table ip softnet_up0_61000_64999_${killed} `), left);
    assert.match(left, /set forward_tcp \{[^}]*elements = \{ 8080 \}/, left);

    s = await softnetForVm(topo, world.host, vm, MAC, [...NAT_ARGS, '--expose', '8080:80']);
    await vmOnline(topo, vm);
    const r = await tcpClient(world.world, HOST_IP, 8080);
    assert.match(r.first, new RegExp(`^peer ${SERVER} `), `${r.stderr}\n${tail(s)}`);
    const tables = (await topo.exec(world.host, 'nft', ['list', 'tables'])).stdout.trim();
    assert.equal(tables, `table ip softnet_up0_61000_64999_${s.child.pid}`);
    assert.deepEqual(await s.stop('SIGTERM'), { code: 0, signal: null }, tail(s));
    assert.doesNotMatch((await topo.exec(world.host, 'nft', ['list', 'tables'])).stdout, /softnet/);
  });
});
