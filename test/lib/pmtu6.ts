// A path with a smaller MTU in the IPv6 world of test/lib/world.ts (started with { ipv6: true }), the twin
// of nat64.ts's startSmallMtuSink: MTU_SERVER6 is the world's too, but the router reaches it by a route of
// MTU PATH_MTU6, so a packet bigger than that gets a Packet Too Big from the router (2001:db8:1::1 towards
// the host's uplink). An HTTP sink there answers each POST with the sha256 and length of what it received.
// Everything runs in the world's namespaces, so the topology's cleanup() removes it.

import type { Topology } from './topology.js';
import { listening, SERVER6, Tail, until, type World } from './world.js';

/** The world's address behind the router's smaller-MTU route, and that MTU. */
export const MTU_SERVER6 = '2001:db8:2::14';
export const PATH_MTU6 = 1400;
/** The HTTP sink's port at MTU_SERVER6. */
export const SINK6_PORT = 8090;

const PYTHON = '/usr/bin/python3';

// Answers each POST with "<sha256 hex> <length>\n" of its body and prints the same line.
const SINK_SERVER = `
import hashlib, http.server, socket, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        left = int(self.headers.get('Content-Length', '0'))
        h = hashlib.sha256()
        n = 0
        while left > 0:
            d = self.rfile.read(min(left, 65536))
            if not d:
                break
            h.update(d)
            n += len(d)
            left -= len(d)
        body = ('%s %d\\n' % (h.hexdigest(), n)).encode()
        print(body.decode(), end='', flush=True)
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True
S((sys.argv[1], int(sys.argv[2])), H).serve_forever()
`;

/** Adds MTU_SERVER6 to the world's link, routes the router to it with MTU PATH_MTU6 and starts the HTTP sink there. */
export async function startSmallMtuSink6(world: World): Promise<void> {
  const { topo } = world;
  await topo.exec(world.world, 'ip', ['-6', 'addr', 'add', `${MTU_SERVER6}/128`, 'dev', 'eth0', 'nodad']);
  await topo.exec(world.router, 'ip', [
    '-6',
    'route',
    'add',
    `${MTU_SERVER6}/128`,
    'via',
    SERVER6,
    'dev',
    'w0',
    'mtu',
    String(PATH_MTU6),
  ]);
  const tail = new Tail(
    topo.spawn(world.world, PYTHON, ['-u', '-c', SINK_SERVER, MTU_SERVER6, String(SINK6_PORT)]),
  );
  await until(`the sink at [${MTU_SERVER6}] listens`, async () => {
    if (tail.exited) throw new Error(`the sink exited:\n${tail.output}`);
    return (await listening(topo, world.world, 'tcp', SINK6_PORT)).includes(`[${MTU_SERVER6}]:`);
  });
}

/** POSTs file `path` from `ns` to the sink with curl -6; returns what the sink says it received. */
export async function upload6(
  topo: Topology,
  ns: string,
  path: string,
  timeoutS = 60,
): Promise<{ sha256: string; bytes: number }> {
  const r = await topo.exec(
    ns,
    'curl',
    [
      '-6',
      '-sSf',
      '-m',
      String(timeoutS),
      '-H',
      'Expect:',
      '--data-binary',
      `@${path}`,
      `http://[${MTU_SERVER6}]:${SINK6_PORT}/`,
    ],
    (timeoutS + 10) * 1000,
  );
  const [sha256, bytes] = r.stdout.trim().split(' ');
  return { sha256, bytes: Number(bytes) };
}

/** The path MTU `ns` has learned for IPv6 destination `dst` (`ip -6 route get`), or null if none. */
export async function learnedMtu6(topo: Topology, ns: string, dst: string): Promise<number | null> {
  const r = await topo.exec(ns, 'ip', ['-6', 'route', 'get', dst]);
  const m = r.stdout.match(/\bmtu (\d+)/);
  return m ? Number(m[1]) : null;
}
