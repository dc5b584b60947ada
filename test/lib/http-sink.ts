// An HTTP sink in a test world: it answers each POST with "<sha256 hex> <length>\n" of the body it
// received, so an upload through softnet is checked whole, byte for byte. nat64.ts and pmtu6.ts put one
// behind a route with a smaller MTU to test path MTU discovery.

import type { Topology } from './topology.js';
import { listening, Tail, until, type World } from './world.js';

const PYTHON = '/usr/bin/python3';

// argv: the address (IPv4 or IPv6) and port to listen on. Prints each answer line too.
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
    address_family = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
    allow_reuse_address = True
    daemon_threads = True
S((sys.argv[1], int(sys.argv[2])), H).serve_forever()
`;

/** Starts the sink in the world's namespace on `addr`:`port` and waits until it listens. */
export async function startSink(world: World, addr: string, port: number): Promise<void> {
  const { topo } = world;
  const tail = new Tail(topo.spawn(world.world, PYTHON, ['-u', '-c', SINK_SERVER, addr, String(port)]));
  const shown = addr.includes(':') ? `[${addr}]` : addr;
  await until(`the sink at ${shown} listens`, async () => {
    if (tail.exited) throw new Error(`the sink exited:\n${tail.output}`);
    return (await listening(topo, world.world, 'tcp', port)).includes(`${shown}:`);
  });
}

/** POSTs file `path` from `ns` to `url` with curl; returns what the sink says it received. */
export async function upload(
  topo: Topology,
  ns: string,
  url: string,
  path: string,
  timeoutS = 60,
): Promise<{ sha256: string; bytes: number }> {
  const r = await topo.exec(
    ns,
    'curl',
    ['-sSf', '-m', String(timeoutS), '-H', 'Expect:', '--data-binary', `@${path}`, url],
    (timeoutS + 10) * 1000,
  );
  const [sha256, bytes] = r.stdout.trim().split(' ');
  return { sha256, bytes: Number(bytes) };
}
