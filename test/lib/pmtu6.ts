// A path with a smaller MTU in the IPv6 world of test/lib/world.ts (started with { ipv6: true }), the twin
// of nat64.ts's startSmallMtuSink: MTU_SERVER6 is the world's too, but the router reaches it by a route of
// MTU PATH_MTU6, so a packet bigger than that gets a Packet Too Big from the router (2001:db8:1::1 towards
// the host's uplink). The HTTP sink of http-sink.ts listens there.
// Everything runs in the world's namespaces, so the topology's cleanup() removes it.

import { startSink, upload } from './http-sink.js';
import type { Topology } from './topology.js';
import { SERVER6, type World } from './world.js';

/** The world's address behind the router's smaller-MTU route, and that MTU. */
export const MTU_SERVER6 = '2001:db8:2::14';
export const PATH_MTU6 = 1400;
/** The HTTP sink's port at MTU_SERVER6. */
export const SINK6_PORT = 8090;

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
  await startSink(world, MTU_SERVER6, SINK6_PORT);
}

/** POSTs file `path` from `ns` to the sink over IPv6; returns what the sink says it received. */
export async function upload6(
  topo: Topology,
  ns: string,
  path: string,
  timeoutS = 60,
): Promise<{ sha256: string; bytes: number }> {
  return upload(topo, ns, `http://[${MTU_SERVER6}]:${SINK6_PORT}/`, path, timeoutS);
}

/** The path MTU `ns` has learned for IPv6 destination `dst` (`ip -6 route get`), or null if none. */
export async function learnedMtu6(topo: Topology, ns: string, dst: string): Promise<number | null> {
  const r = await topo.exec(ns, 'ip', ['-6', 'route', 'get', dst]);
  const m = r.stdout.match(/\bmtu (\d+)/);
  return m ? Number(m[1]) : null;
}
