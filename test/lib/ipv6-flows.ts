// NAT66 as a VM namespace uses it across faults and restarts: a VM that takes its address by the kernel's
// SLAAC from softnet, the peer the world's server saw, a TCP echo server at SERVER6 and a client that keeps
// one connection open across whatever the test does in between (the IPv6 twins of world.ts's
// startTcpEcho and echoAcrossGo).

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { acceptRa, addrs6, waitAddress } from './ipv6.js';
import { type Softnet, softnetForVm } from './softnet.js';
import type { Topology } from './topology.js';
import { PORTS, SERVER6, until, type World } from './world.js';

/** The VM's NIC in its namespace (softnet's default --vm-ifname). */
export const NIC = 'eth0';

/**
 * Makes VM namespace `name` do SLAAC (before its NIC exists, so the first router solicitation goes out),
 * attaches it with softnet `args` and waits for its address in `cidr` (a /64).
 */
export async function slaacVm(
  world: World,
  name: string,
  mac: string,
  cidr: string,
  args: string[],
): Promise<{ ns: string; softnet: Softnet; addr: string }> {
  const { topo } = world;
  const ns = await topo.netns(name);
  await acceptRa(topo, ns);
  await topo.exec(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=0']);
  const softnet = await softnetForVm(topo, world.host, ns, mac, args);
  return { ns, softnet, addr: await slaacAddress(topo, ns, cidr, softnet) };
}

/** Waits for the VM namespace's SLAAC address in `cidr`; the error names what it has and what softnet logged. */
export async function slaacAddress(
  topo: Topology,
  ns: string,
  cidr: string,
  softnet: Softnet,
  timeoutMs = 20_000,
): Promise<string> {
  try {
    return await waitAddress(topo, ns, NIC, cidr, timeoutMs);
  } catch (e) {
    const have = (await addrs6(topo, ns, NIC)).map((a) => `${a.local}/${a.prefixlen} ${a.scope}`);
    throw new Error(
      `${(e as Error).message}\nits addresses: ${have.join(', ')}\nsoftnet's last lines:\n${softnet.lines.slice(-30).join('\n')}`,
    );
  }
}

/**
 * Gets a DHCPv4 lease in VM namespace `ns` with busybox udhcpc and routes IPv4 through its router, touching
 * only IPv4 (world.ts's vmOnline flushes every address, the SLAAC one too); returns the leased address.
 */
export async function lease4(topo: Topology, ns: string): Promise<string> {
  const log = join(topo.dir, `udhcpc4-${ns}.lease`);
  const script = join(topo.dir, `udhcpc4-${ns}.sh`);
  writeFileSync(
    script,
    `#!/bin/sh
case "$1" in
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/$mask" dev "$interface"
    ip -4 route replace default via "\${router%% *}" dev "$interface"
    echo "$ip" > ${log}
    ;;
  deconfig) ip -4 addr flush dev "$interface" ;;
esac
exit 0
`,
    { mode: 0o755 },
  );
  await topo.exec(ns, 'busybox', ['udhcpc', '-i', NIC, '-f', '-q', '-n', '-t', '5', '-T', '2', '-s', script]);
  return readFileSync(log, 'utf8').trim();
}

/** The address and port the world's peer server at SERVER6 saw a connection from `ns` come from. */
export async function peerSeen6(topo: Topology, ns: string): Promise<{ ip: string; port: number }> {
  const r = await topo.exec(
    ns,
    'curl',
    ['-sS', '-6', '-m', '5', `http://[${SERVER6}]:${PORTS.peer}/`],
    15_000,
  );
  const [ip, port] = r.stdout.trim().split(' ');
  return { ip, port: Number(port) };
}

/** A TCP echo server at [SERVER6]:`port` in the world namespace, serving each connection as long as it lasts. */
export function startTcpEcho6(world: World, port: number): void {
  world.topo.spawn(world.world, 'python3', [
    '-c',
    `import socket, threading
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('${SERVER6}', ${port})); s.listen()
def serve(c):
    while (d := c.recv(100)):
        c.sendall(d)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()`,
  ]);
}

/**
 * A client in `ns` of the echo server at [SERVER6]:`port` that sends "before" and, once file `go` exists,
 * "after" on the same TCP connection, and prints its own local address and port first ("local ADDR PORT").
 * Resolves once the first echo is back, with what the client printed so far.
 */
export async function echoAcrossGo6(
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
        c = socket.create_connection(('${SERVER6}', ${port}), timeout=60); break
    except OSError: time.sleep(0.1)
print('local', *c.getsockname()[:2], flush=True)
c.sendall(b'before'); print(c.recv(100).decode(), flush=True)
while not os.path.exists('${go}'): time.sleep(0.05)
c.sendall(b'after'); print(c.recv(100).decode(), flush=True)`,
  ]);
  let out = '';
  client.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  client.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  await until('the first echo over IPv6', async () => out.includes('before'), 20_000);
  return () => out;
}
