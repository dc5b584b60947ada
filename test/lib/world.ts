// A world for NAT tests: host, router and world namespaces, and servers in the world.
//
//   vm ── softnet (runs in host) ── up0 198.51.100.2/24 ══ h0 198.51.100.1 [router] w0 203.0.113.1 ══ eth0 203.0.113.10 [world]
//
// The world serves HTTP (a random file of known sha256, plus small.txt) on 8080, a peer recorder on 8081
// (answers, in HTTP, the address and port it saw), iperf3 on 5201, DNS (dnsmasq: world.test -> 203.0.113.10)
// and UDP echo on 7007 (also at 203.0.113.11, which the router reaches with a path MTU of 1280). 10.1.2.3 is also the world's (on its lo, routed by the router), so a destination that
// softnet's policy blocks is reachable by the kernel's path. The host resolves with the world's dnsmasq
// (/etc/netns/<host>/resolv.conf). Everything is removed by cleanup(), also when a test fails.
//
// With { ipv6: true } the same links also carry IPv6 on documentation addresses, without DAD anywhere:
//
//   up0 2001:db8:1::2/64 ══ h0 2001:db8:1::1 [router, forwards IPv6] w0 2001:db8:2::1 ══ eth0 2001:db8:2::10/64
//
// and the servers listen at 2001:db8:2::10 too (HTTP and the peer recorder, iperf3, UDP echo, DNS), where
// dnsmasq also answers for www.test: A 203.0.113.10 and AAAA 2001:db8:2::10. The router knows no route to any
// ULA: only NAT66 from the host's 2001:db8:1::2 gets answers back.

import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ClientLease, Udhcpc } from './clients.js';
import { tcpdumpListening } from './tcpdump.js';
import type { Topology } from './topology.js';

export const GATEWAY = '192.168.64.1';
export const UPLINK = 'up0';
export const HOST_IP = '198.51.100.2';
export const ROUTER_HOST_SIDE = '198.51.100.1';
export const ROUTER_WORLD_SIDE = '203.0.113.1';
export const SERVER = '203.0.113.10';
/** Also the world's, behind a router route with MTU 1280: a 1400-byte datagram with DF gets "fragmentation needed". */
export const SERVER_SMALL_MTU = '203.0.113.11';
export const SMALL_MTU = 1280;
export const WORLD_NET = '203.0.113.0/24';
export const WORLD_NAME = 'world.test';
/** Reachable through the router (it is the world's too), but private, so outside softnet's policy. */
export const OUTSIDE = '10.1.2.3';
export const PORTS = { http: 8080, peer: 8081, iperf: 5201, echo: 7007 } as const;
/** A second host<->router link (see World.addSecondLink): the host's end and address, the router's. */
export const UPLINK2 = 'up1';
export const HOST_IP2 = '192.0.2.2';
export const ROUTER_IF2 = 'h1';
export const ROUTER_IP2 = '192.0.2.1';
/** The IPv6 side (World.start({ ipv6: true })): the host's uplink address, the router's two, the server's. */
export const HOST_IP6 = '2001:db8:1::2';
export const ROUTER_HOST_SIDE6 = '2001:db8:1::1';
export const ROUTER_WORLD_SIDE6 = '2001:db8:2::1';
export const SERVER6 = '2001:db8:2::10';
export const WORLD_NET6 = '2001:db8:2::/64';
/** A name with both an A (SERVER) and an AAAA (SERVER6) record at the world's dnsmasq. */
export const WORLD6_NAME = 'www.test';

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

// Answers any HTTP request with "<peer address> <peer port>\n" and prints the same line.
const PEER_SERVER = `
import socket, socketserver, sys
class H(socketserver.StreamRequestHandler):
    def handle(self):
        for _ in range(100):
            line = self.rfile.readline(65536)
            if line in (b'', b'\\r\\n', b'\\n'):
                break
        ip, port = self.client_address[:2]
        print(ip, port, flush=True)
        body = ('%s %d\\n' % (ip, port)).encode()
        self.wfile.write(b'HTTP/1.0 200 OK\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n' % len(body) + body)
class S(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
    allow_reuse_address = True
    daemon_threads = True
S((sys.argv[1], int(sys.argv[2])), H).serve_forever()
`;

// Sends every datagram back to where it came from and prints "<address> <port> <length>".
const ECHO_SERVER = `
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(d, a)
    print(a[0], a[1], len(d), flush=True)
`;

// Sends argv[3] (hex) to argv[1]:argv[2] up to 5 times, 1 s apart, and prints "<reply hex> <from> <port>".
const ECHO_CLIENT = `
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
p = bytes.fromhex(sys.argv[3])
for _ in range(5):
    s.sendto(p, (sys.argv[1], int(sys.argv[2])))
    try:
        d, a = s.recvfrom(65535)
        print(d.hex(), a[0], a[1])
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)
`;

/** /etc/netns/<ns> directories this process made; removed at exit if a test did not get to it. */
const resolverDirs = new Set<string>();
/** Whether /etc/netns was there before this process wrote into it. */
let etcNetnsWasThere = true;
function removeResolverDirs(dirs: Iterable<string>): void {
  for (const d of [...dirs]) {
    rmSync(d, { recursive: true, force: true });
    resolverDirs.delete(d);
  }
  // /etc/netns itself goes too if this process made it and nothing else is in it now.
  if (!etcNetnsWasThere && resolverDirs.size === 0) {
    try {
      rmdirSync('/etc/netns');
    } catch {}
  }
}
process.on('exit', () => removeResolverDirs(resolverDirs));
// A test run that is interrupted still runs the exit handlers (this one and the topology's).
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  if (process.listenerCount(sig) === 0)
    process.once(sig, () => process.exit(128 + (sig === 'SIGINT' ? 2 : 15)));
}

/** Removes /etc/netns entries of test namespaces (names like the Topology's) whose namespace is gone. */
function sweepStaleResolverDirs(): void {
  let names: string[] = [];
  try {
    names = readdirSync('/etc/netns');
  } catch {
    return;
  }
  for (const n of names) {
    if (/^sn[0-9a-z]+-[A-Za-z0-9_.-]+$/.test(n) && !existsSync(`/run/netns/${n}`)) {
      rmSync(`/etc/netns/${n}`, { recursive: true, force: true });
    }
  }
}

/** Output of a long-running process, stdout and stderr together, the last `cap` characters of it. */
export class Tail {
  private text = '';
  constructor(
    readonly child: ChildProcess,
    private readonly cap = 1 << 20,
  ) {
    const add = (d: Buffer) => {
      this.text += d.toString();
      if (this.text.length > this.cap) this.text = this.text.slice(-this.cap);
    };
    child.stdout?.on('data', add);
    child.stderr?.on('data', add);
  }
  get output(): string {
    return this.text;
  }
  lines(): string[] {
    return this.text.split('\n').filter(Boolean);
  }
  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }
}

/** Calls `probe` until it returns something truthy; bounded by `timeoutMs` and by the attempts that fit in it. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false | ''>,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  const attempts = Math.ceil(timeoutMs / intervalMs) + 1;
  let last: unknown;
  for (let i = 0; i < attempts && Date.now() < deadline; i++) {
    try {
      const v = await probe();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    await sleep(intervalMs);
  }
  throw new Error(
    `${what}: not within ${timeoutMs} ms (last: ${last instanceof Error ? last.message : last})`,
  );
}

/** A served file and what a correct download of it hashes to. */
export interface ServedFile {
  name: string;
  bytes: number;
  sha256: string;
  url: string;
  /** Its URL at SERVER6, in a world with IPv6. */
  url6?: string;
}

export interface WorldOptions {
  /** Size of the random file in MiB (default 100). */
  fileMb?: number;
  /** Also IPv6 on every link, with the servers listening at SERVER6 (default false). */
  ipv6?: boolean;
}

/** The namespaces and servers of one world. Construct, register cleanup() in an after hook, then start(). */
export class World {
  host!: string;
  router!: string;
  world!: string;
  file!: ServedFile;
  readonly www: string;
  readonly dnsLogPath: string;
  private readonly dirs = new Set<string>();
  private readonly tails: Record<string, Tail> = {};

  constructor(readonly topo: Topology) {
    this.www = join(topo.dir, 'www');
    this.dnsLogPath = join(topo.dir, 'dnsmasq.log');
  }

  /** Makes the namespaces and links, writes the file, starts the servers and waits until each answers. */
  async start(opts: WorldOptions = {}): Promise<void> {
    sweepStaleResolverDirs();
    const { topo } = this;
    this.host = await topo.netns('host');
    this.router = await topo.netns('router');
    this.world = await topo.netns('world');
    const ip = (ns: string, ...args: string[]) => topo.exec(ns, 'ip', args);
    const sysctl = (ns: string, kv: string) => topo.exec(ns, 'sysctl', ['-qw', kv]);
    const ipv6 = opts.ipv6 ?? false;
    // Links made from now on in the router and the world skip DAD (the host's TAPs are softnet's to set up).
    if (ipv6) {
      for (const ns of [this.router, this.world]) {
        await sysctl(ns, 'net.ipv6.conf.all.accept_dad=0');
        await sysctl(ns, 'net.ipv6.conf.default.accept_dad=0');
      }
    }

    // host up0 <-> router h0; router w0 <-> world eth0. Each end is made inside its own namespace.
    await ip(this.host, 'link', 'add', UPLINK, 'type', 'veth', 'peer', 'name', 'h0', 'netns', this.router);
    await ip(this.router, 'link', 'add', 'w0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.world);
    await ip(this.host, 'addr', 'add', `${HOST_IP}/24`, 'dev', UPLINK);
    await ip(this.host, 'link', 'set', UPLINK, 'up');
    await ip(this.host, 'route', 'add', 'default', 'via', ROUTER_HOST_SIDE);
    await ip(this.router, 'addr', 'add', `${ROUTER_HOST_SIDE}/24`, 'dev', 'h0');
    await ip(this.router, 'addr', 'add', `${ROUTER_WORLD_SIDE}/24`, 'dev', 'w0');
    await ip(this.router, 'link', 'set', 'h0', 'up');
    await ip(this.router, 'link', 'set', 'w0', 'up');
    await ip(this.router, 'route', 'add', `${OUTSIDE}/32`, 'via', SERVER);
    await ip(this.router, 'route', 'add', `${SERVER_SMALL_MTU}/32`, 'via', SERVER, 'mtu', String(SMALL_MTU));
    await ip(this.world, 'addr', 'add', `${SERVER}/24`, 'dev', 'eth0');
    await ip(this.world, 'addr', 'add', `${OUTSIDE}/32`, 'dev', 'lo');
    await ip(this.world, 'addr', 'add', `${SERVER_SMALL_MTU}/32`, 'dev', 'eth0');
    await ip(this.world, 'link', 'set', 'eth0', 'up');
    await ip(this.world, 'route', 'add', 'default', 'via', ROUTER_WORLD_SIDE);
    // A new namespace takes IPv4 forwarding from the machine's; say it: only the router forwards.
    await sysctl(this.router, 'net.ipv4.ip_forward=1');
    await sysctl(this.host, 'net.ipv4.ip_forward=0');
    await sysctl(this.world, 'net.ipv4.ip_forward=0');
    // Names looked up in the host and the world stay in the world (the world's own servers look up names).
    this.resolver(this.host, [SERVER]);
    this.resolver(this.world, [SERVER]);
    if (ipv6) await this.addIpv6();

    this.file = this.writeFile(opts.fileMb ?? 100, ipv6);

    const dir = topo.dir;
    this.serve('http', this.world, PYTHON, [
      '-u',
      '-m',
      'http.server',
      '--bind',
      '0.0.0.0',
      '--directory',
      this.www,
      String(PORTS.http),
    ]);
    this.serve('peer', this.world, PYTHON, ['-u', '-c', PEER_SERVER, '0.0.0.0', String(PORTS.peer)]);
    this.serve('iperf', this.world, 'iperf3', ['-s', '-B', SERVER, '-p', String(PORTS.iperf)]);
    this.serve('dns', this.world, 'dnsmasq', [
      '--no-daemon',
      '--no-resolv',
      '--no-hosts',
      '--conf-file=/dev/null',
      `--listen-address=${SERVER}`,
      '--bind-interfaces',
      `--address=/${WORLD_NAME}/${SERVER}`,
      ...(ipv6
        ? [
            `--listen-address=${SERVER6}`,
            `--address=/${WORLD6_NAME}/${SERVER}`,
            `--address=/${WORLD6_NAME}/${SERVER6}`,
          ]
        : []),
      `--pid-file=${join(dir, 'dnsmasq.pid')}`,
      '--log-queries',
      `--log-facility=${this.dnsLogPath}`,
    ]);
    this.serve('echo', this.world, PYTHON, ['-u', '-c', ECHO_SERVER, SERVER, String(PORTS.echo)]);
    this.serve('echo2', this.world, PYTHON, ['-u', '-c', ECHO_SERVER, SERVER_SMALL_MTU, String(PORTS.echo)]);
    if (ipv6) {
      this.serve('http6', this.world, PYTHON, [
        '-u',
        '-m',
        'http.server',
        '--bind',
        SERVER6,
        '--directory',
        this.www,
        String(PORTS.http),
      ]);
      this.serve('peer6', this.world, PYTHON, ['-u', '-c', PEER_SERVER, SERVER6, String(PORTS.peer)]);
      this.serve('iperf6', this.world, 'iperf3', ['-s', '-B', SERVER6, '-p', String(PORTS.iperf)]);
      this.serve('echo6', this.world, PYTHON, ['-u', '-c', ECHO_SERVER, SERVER6, String(PORTS.echo)]);
    }

    const answers = async (name: string, probe: () => Promise<boolean>) =>
      until(`the world's ${name} server answers`, async () => {
        const t = this.tails[name];
        if (t.exited) throw new Error(`${name} server exited:\n${t.output}`);
        return probe();
      });
    const w = this.world;
    await Promise.all([
      answers('http', async () => {
        const r = await topo.status(
          w,
          'curl',
          ['-sS', '-m', '2', `http://${SERVER}:${PORTS.http}/small.txt`],
          5000,
        );
        return r.stdout === 'small\n';
      }),
      answers('peer', async () => {
        const r = await topo.status(
          w,
          'curl',
          ['-sS', '-m', '2', `http://${SERVER}:${PORTS.peer}/ready`],
          5000,
        );
        return r.stdout.startsWith(`${SERVER} `);
      }),
      answers('iperf', async () => (await listening(topo, w, 'tcp', PORTS.iperf)) !== ''),
      answers('dns', async () => {
        const r = await topo.status(
          w,
          'dig',
          [`@${SERVER}`, WORLD_NAME, '+short', '+time=1', '+tries=1'],
          5000,
        );
        return r.stdout.trim() === SERVER;
      }),
      answers('echo', async () => (await listening(topo, w, 'udp', PORTS.echo)).includes(`${SERVER}:`)),
      answers('echo2', async () =>
        (await listening(topo, w, 'udp', PORTS.echo)).includes(`${SERVER_SMALL_MTU}:`),
      ),
      ...(ipv6 ? this.ipv6Answers(answers) : []),
    ]);
  }

  /** The IPv6 addresses, routes and forwarding of the world's links (start() with ipv6). */
  private async addIpv6(): Promise<void> {
    const ip = (ns: string, ...args: string[]) => this.topo.exec(ns, 'ip', ['-6', ...args]);
    const sysctl = (ns: string, kv: string) => this.topo.exec(ns, 'sysctl', ['-qw', kv]);
    await ip(this.host, 'addr', 'add', `${HOST_IP6}/64`, 'dev', UPLINK, 'nodad');
    await ip(this.router, 'addr', 'add', `${ROUTER_HOST_SIDE6}/64`, 'dev', 'h0', 'nodad');
    await ip(this.router, 'addr', 'add', `${ROUTER_WORLD_SIDE6}/64`, 'dev', 'w0', 'nodad');
    await ip(this.world, 'addr', 'add', `${SERVER6}/64`, 'dev', 'eth0', 'nodad');
    await ip(this.host, 'route', 'add', 'default', 'via', ROUTER_HOST_SIDE6, 'dev', UPLINK);
    await ip(this.world, 'route', 'add', 'default', 'via', ROUTER_WORLD_SIDE6, 'dev', 'eth0');
    await sysctl(this.router, 'net.ipv6.conf.all.forwarding=1');
    await sysctl(this.host, 'net.ipv6.conf.all.forwarding=0');
    await sysctl(this.world, 'net.ipv6.conf.all.forwarding=0');
  }

  /** Readiness probes of the servers at SERVER6, each asked from the world itself. */
  private ipv6Answers(
    answers: (name: string, probe: () => Promise<boolean>) => Promise<unknown>,
  ): Array<Promise<unknown>> {
    const { topo, world: w } = this;
    const curl = (port: number, path: string) =>
      topo.status(w, 'curl', ['-sS', '-6', '-m', '2', `http://[${SERVER6}]:${port}/${path}`], 5000);
    return [
      answers('http6', async () => (await curl(PORTS.http, 'small.txt')).stdout === 'small\n'),
      answers('peer6', async () => (await curl(PORTS.peer, 'ready')).stdout.startsWith(`${SERVER6} `)),
      answers('iperf6', async () => (await listening(topo, w, 'tcp', PORTS.iperf)).includes(`[${SERVER6}]:`)),
      answers('echo6', async () => (await listening(topo, w, 'udp', PORTS.echo)).includes(`[${SERVER6}]:`)),
      answers('dns', async () => {
        const r = await topo.status(
          w,
          'dig',
          [`@${SERVER6}`, 'AAAA', WORLD6_NAME, '+short', '+time=1', '+tries=1'],
          5000,
        );
        return r.stdout.trim() === SERVER6;
      }),
    ];
  }

  /** Adds a second link between host and router (UPLINK2, 192.0.2.0/24), for the default route to move to. */
  async addSecondLink(): Promise<void> {
    const ip = (ns: string, ...args: string[]) => this.topo.exec(ns, 'ip', args);
    await ip(
      this.host,
      'link',
      'add',
      UPLINK2,
      'type',
      'veth',
      'peer',
      'name',
      ROUTER_IF2,
      'netns',
      this.router,
    );
    await ip(this.host, 'addr', 'add', `${HOST_IP2}/24`, 'dev', UPLINK2);
    await ip(this.host, 'link', 'set', UPLINK2, 'up');
    await ip(this.router, 'addr', 'add', `${ROUTER_IP2}/24`, 'dev', ROUTER_IF2);
    await ip(this.router, 'link', 'set', ROUTER_IF2, 'up');
  }

  /** Writes /etc/netns/<ns>/resolv.conf, which `ip netns exec <ns>` mounts over /etc/resolv.conf. */
  resolver(ns: string, nameservers: string[]): void {
    const d = `/etc/netns/${ns}`;
    if (resolverDirs.size === 0) etcNetnsWasThere = existsSync('/etc/netns');
    mkdirSync(d, { recursive: true });
    this.dirs.add(d);
    resolverDirs.add(d);
    const fd = openSync(join(d, 'resolv.conf'), 'w');
    writeSync(fd, nameservers.map((n) => `nameserver ${n}\n`).join(''));
    closeSync(fd);
  }

  /** The HTTP servers' access log lines ("<client> - - [date] \"GET ...\" 200 -"), SERVER's then SERVER6's. */
  httpLog(): string[] {
    return [...(this.tails.http?.lines() ?? []), ...(this.tails.http6?.lines() ?? [])];
  }

  /** "<address> <port>" of every connection the peer servers took, SERVER's then SERVER6's. */
  peers(): string[] {
    return [...(this.tails.peer?.lines() ?? []), ...(this.tails.peer6?.lines() ?? [])];
  }

  /** "<address> <port> <length>" of every datagram the echo server at `at` returned. */
  echoes(at = SERVER): string[] {
    const name = at === SERVER ? 'echo' : at === SERVER6 ? 'echo6' : 'echo2';
    return this.tails[name]?.lines() ?? [];
  }

  /** What dnsmasq logged (queries included). */
  dnsLog(): string {
    try {
      return readFileSync(this.dnsLogPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** The pids of the world's servers (for checking that cleanup ended them). */
  serverPids(): number[] {
    return Object.values(this.tails)
      .map((t) => t.child.pid)
      .filter((p): p is number => p !== undefined);
  }

  /** The resolver directories this world made. */
  resolverDirs(): string[] {
    return [...this.dirs];
  }

  /** Ends every process, removes the namespaces, the temp directory and the resolver files. */
  async cleanup(): Promise<void> {
    try {
      await this.topo.cleanup();
    } finally {
      removeResolverDirs(this.dirs);
      this.dirs.clear();
    }
  }

  private serve(name: string, ns: string, cmd: string, args: string[]): void {
    this.tails[name] = new Tail(this.topo.spawn(ns, cmd, args));
  }

  private writeFile(mb: number, ipv6: boolean): ServedFile {
    mkdirSync(this.www, { recursive: true });
    const name = 'random.bin';
    const hash = createHash('sha256');
    const fd = openSync(join(this.www, name), 'w');
    try {
      for (let i = 0; i < mb; i++) {
        const chunk = randomBytes(1 << 20);
        hash.update(chunk);
        writeSync(fd, chunk);
      }
    } finally {
      closeSync(fd);
    }
    const small = openSync(join(this.www, 'small.txt'), 'w');
    writeSync(small, 'small\n');
    closeSync(small);
    return {
      name,
      bytes: mb << 20,
      sha256: hash.digest('hex'),
      url: `http://${SERVER}:${PORTS.http}/${name}`,
      ...(ipv6 ? { url6: `http://[${SERVER6}]:${PORTS.http}/${name}` } : {}),
    };
  }
}

/** The `ss` lines of sockets listening on `port` in `ns` ('' when none). */
export async function listening(
  topo: Topology,
  ns: string,
  proto: 'tcp' | 'udp',
  port: number,
): Promise<string> {
  const r = await topo.exec(ns, 'ss', ['-Hn', proto === 'tcp' ? '-lt' : '-lu', `sport = :${port}`], 5000);
  return r.stdout.trim();
}

/** Gets a DHCP lease in the VM namespace and routes everything through the gateway it names. */
export async function vmOnline(topo: Topology, vm: string, ifname = 'eth0'): Promise<ClientLease> {
  const lease = await new Udhcpc(topo, vm, ifname).once();
  await topo.exec(vm, 'ip', ['route', 'replace', 'default', 'via', lease.router || GATEWAY, 'dev', ifname]);
  return lease;
}

/** Downloads `url` in `ns` and returns its sha256, its size and curl's speed (bytes/s). */
export async function fetchSha256(
  topo: Topology,
  ns: string,
  url: string,
  timeoutS = 120,
): Promise<{ sha256: string; bytes: number; speed: number }> {
  const r = await topo.exec(
    ns,
    'bash',
    [
      '-o',
      'pipefail',
      '-c',
      'curl -sSf -m "$1" -w "%{stderr}size=%{size_download} speed=%{speed_download}\\n" "$2" | sha256sum',
      'fetch',
      String(timeoutS),
      url,
    ],
    (timeoutS + 10) * 1000,
  );
  const m = r.stderr.match(/size=(\d+) speed=([\d.]+)/);
  return { sha256: r.stdout.split(/\s/)[0], bytes: Number(m?.[1] ?? -1), speed: Number(m?.[2] ?? 0) };
}

/** Runs an iperf3 client in `ns` against the world's server (at `server`) with --json; returns the parsed report. */
export async function iperf3(
  topo: Topology,
  ns: string,
  seconds: number,
  extra: string[] = [],
  server = SERVER,
): Promise<IperfReport> {
  const r = await topo.status(
    ns,
    'iperf3',
    [
      '-c',
      server,
      '-p',
      String(PORTS.iperf),
      '-t',
      String(seconds),
      '--connect-timeout',
      '3000',
      '--json',
      '--get-server-output',
      ...extra,
    ],
    (seconds + 30) * 1000,
  );
  let report: IperfReport;
  try {
    report = JSON.parse(r.stdout);
  } catch {
    throw new Error(
      `iperf3 ${extra.join(' ')} exited ${r.code} without a JSON report:\n${r.stdout}\n${r.stderr}`,
    );
  }
  if (r.code !== 0 || report.error) {
    throw new Error(`iperf3 ${extra.join(' ')} failed (exit ${r.code}): ${report.error ?? r.stderr}`);
  }
  return report;
}

/** The parts of iperf3's JSON report the tests read. */
export interface IperfReport {
  error?: string;
  end: {
    sum_sent?: { bytes: number; bits_per_second: number };
    sum_received?: { bytes: number; bits_per_second: number };
    sum?: { bytes: number; bits_per_second: number; packets?: number; lost_packets?: number };
  };
  /** What the server printed for this test (--get-server-output; the server runs without --json). */
  server_output_text?: string;
}

/** The datagrams the server says it received in a UDP test, from its own final "receiver" line. */
export function udpReceivedByServer(report: IperfReport): { total: number; lost: number; received: number } {
  const text = report.server_output_text ?? '';
  const m = text.match(/(\d+)\/(\d+) \([^)]*\)\s+receiver/);
  if (!m) throw new Error(`no receiver line in the server's output:\n${text}`);
  const lost = Number(m[1]);
  const total = Number(m[2]);
  return { total, lost, received: total - lost };
}

/** Sends `payload` to the world's UDP echo server (at `to`) from `ns`; returns what came back and from where. */
export async function udpEcho(
  topo: Topology,
  ns: string,
  payload: Buffer,
  to = SERVER,
): Promise<{ reply: Buffer; from: string; port: number }> {
  const r = await topo.exec(
    ns,
    PYTHON,
    ['-c', ECHO_CLIENT, to, String(PORTS.echo), payload.toString('hex')],
    15_000,
  );
  const [hex, from, port] = r.stdout.trim().split(' ');
  return { reply: Buffer.from(hex, 'hex'), from, port: Number(port) };
}

/** dig in `ns`: the +short answer for `name` from `server`, over UDP or TCP. */
export async function dig(
  topo: Topology,
  ns: string,
  server: string | null,
  name: string,
  tcp = false,
): Promise<string> {
  const args = [...(server ? [`@${server}`] : []), name, '+short', '+time=2', '+tries=2'];
  if (tcp) args.push('+tcp');
  const r = await topo.exec(ns, 'dig', args, 20_000);
  return r.stdout.trim();
}

/** A running tcpdump; stop() ends it and returns the packets it printed. */
export interface Capture {
  /** What it has printed so far. */
  seen(): string;
  stop(): Promise<string>;
}

/** Starts tcpdump on `iface` in `ns` and resolves once it is listening. */
export async function capture(topo: Topology, ns: string, iface: string, filter: string): Promise<Capture> {
  const child = topo.spawn(ns, 'tcpdump', ['-n', '-l', '--immediate-mode', '-i', iface, filter]);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
  await tcpdumpListening(child);
  return {
    seen: () => out,
    async stop() {
      child.kill('SIGTERM');
      await closed;
      return out;
    },
  };
}

/** The path MTU `ns` has learned for `dst` (from `ip route get`), or null if none. */
export async function learnedMtu(topo: Topology, ns: string, dst: string): Promise<number | null> {
  const r = await topo.exec(ns, 'ip', ['route', 'get', dst]);
  const m = r.stdout.match(/\bmtu (\d+)/);
  return m ? Number(m[1]) : null;
}

/** Port ranges in /proc/sys/net/ipv4/ip_local_reserved_ports of `ns`, as [first, last] pairs. */
export async function reservedPorts(topo: Topology, ns: string): Promise<Array<[number, number]>> {
  const r = await topo.exec(ns, 'cat', ['/proc/sys/net/ipv4/ip_local_reserved_ports']);
  return r.stdout
    .trim()
    .split(',')
    .filter(Boolean)
    .map((item) => {
      const [a, b] = item.trim().split('-');
      return [Number(a), Number(b ?? a)] as [number, number];
    });
}

/** A TCP echo server at SERVER:`port` in `world`'s world namespace, serving each connection as long as it lasts. */
export function startTcpEcho(world: World, port: number): void {
  world.topo.spawn(world.world, 'python3', [
    '-c',
    `import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('${SERVER}', ${port})); s.listen()
def serve(c):
    while (d := c.recv(100)):
        c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()`,
  ]);
}

/**
 * A client in `ns` of the echo server at `port` that sends "before" and, once file `go` exists, "after" on
 * the same TCP connection. Resolves once the first echo is back, with what the client printed so far.
 */
export async function echoAcrossGo(
  topo: Topology,
  ns: string,
  port: number,
  go: string,
): Promise<() => string> {
  const client = topo.spawn(ns, 'python3', [
    '-c',
    `import socket, os, time
for _ in range(100):
    try:
        c = socket.create_connection(('${SERVER}', ${port}), timeout=30); break
    except OSError: time.sleep(0.1)
c.sendall(b'before'); print(c.recv(100).decode(), flush=True)
while not os.path.exists('${go}'): time.sleep(0.05)
c.sendall(b'after'); print(c.recv(100).decode(), flush=True)`,
  ]);
  let out = '';
  client.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  await until('the first echo', async () => out.includes('before'), 20_000);
  return () => out;
}
