// Runs one replay over real fds (fd.ts) in namespaces made for it and removed after it, also when it fails:
// a "bench" namespace where the replaying process runs, holding its host link TAP and an uplink that
// discards what the NAT sends, and for the TAP mode a "vm" namespace holding the VM's NIC and the writer.
// Nothing is sent outside them.

import { fileURLToPath } from 'node:url';
import { formatMac } from '../../src/wire/addr.js';
import { Topology } from '../../test/lib/topology.js';
import type { Capture } from './capture.js';
import type { Result } from './measure.js';
import { UPLINK } from './network.js';

/** The two ways a VM port is a real fd here. */
export type FdMode = 'socketpair' | 'tap';

const FD_SCRIPT = fileURLToPath(new URL('./fd.js', import.meta.url));
/** Time for set-up and for the writer to stop, beyond the run itself, before the replay is given up. */
const SLACK_S = 30;

/** Replays `cap` over real fds in `mode`: `warmup` seconds, then `seconds` measured. */
export async function replayOverFds(
  cap: Capture,
  mode: FdMode,
  allow: string[],
  warmup: number,
  seconds: number,
): Promise<Result> {
  const topo = new Topology();
  try {
    const bench = await topo.netns('bench');
    const ip = (ns: string, ...args: string[]) => topo.exec(ns, 'ip', args);
    await noIpv6(topo, bench);
    // The NAT's uplink: one end of a veth pair whose other end stays down, so the raw socket's packets go
    // through the real routing, neighbour and device output, and the device then drops them. The
    // router's MAC is a static entry: no ARP goes unanswered.
    await ip(bench, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0-sink');
    await ip(bench, 'addr', 'add', UPLINK.cidr, 'dev', 'up0');
    await ip(bench, 'link', 'set', 'up0', 'up');
    await ip(
      bench,
      'neigh',
      'replace',
      UPLINK.router,
      'lladdr',
      UPLINK.routerMac,
      'dev',
      'up0',
      'nud',
      'permanent',
    );
    await ip(bench, 'route', 'add', 'default', 'via', UPLINK.router);
    const args = [
      ...process.execArgv,
      FD_SCRIPT,
      '--mode',
      mode,
      '--pcap',
      cap.path,
      '--vm-mac',
      formatMac(cap.vmMac),
      '--allow',
      allow.join(','),
      '--warmup',
      String(warmup),
      '--seconds',
      String(seconds),
      '--tmp',
      topo.dir,
    ];
    if (mode === 'tap') {
      const vm = await topo.netns('vm');
      await noIpv6(topo, vm);
      args.push('--vm-netns', `/run/netns/${vm}`);
    }
    const child = topo.spawn(bench, process.execPath, args);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => child.kill('SIGKILL'), (warmup + seconds + SLACK_S) * 1000);
      child.once('exit', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    const last = out.trim().split('\n').pop() ?? '';
    if (code !== 0 || !last.startsWith('{')) {
      throw new Error(`${cap.name} over ${mode}: the replay exited with ${code}\n${err.trim()}`);
    }
    return JSON.parse(last) as Result;
  } finally {
    await topo.cleanup();
  }
}

/** Turns IPv6 off in `ns` (for interfaces made later too): no router solicitations or MLD in the replay. */
async function noIpv6(topo: Topology, ns: string): Promise<void> {
  await topo.exec(ns, 'sysctl', [
    '-qw',
    'net.ipv6.conf.all.disable_ipv6=1',
    'net.ipv6.conf.default.disable_ipv6=1',
  ]);
}
