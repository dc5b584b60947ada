// softnet in its per-VM form: one process in the host namespace makes the VM's NIC (a TAP named eth0) in
// the VM namespace, answers its DHCP and NATs its traffic to the uplink. busybox udhcpc in the VM takes
// the lease, as a guest would; the VM's kernel takes its IPv6 address from softnet's router advertisement
// (SLAAC), and its IPv6 to the world leaves by NAT66 from the uplink's 2001:db8:1::2.

import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Attachment, Peer } from './peer.js';
import { reachesServer, until, whileRunning } from './peer.js';
import { type Topology, UPLINK, WORLD_NET, WORLD_NET6 } from './topology.js';

const CLI = fileURLToPath(new URL('../../src/cli/softnet.js', import.meta.url));
const STARTUP_MS = 60_000;

/** What differs between softnets that run side by side in one host namespace. */
export interface SoftnetSlot {
  hostLink: string;
  subnet: string;
  natPorts: string;
  mac: string;
  /** The network's ULA /48 (--ipv6-prefix); softnet picks one at random without. */
  ipv6Prefix?: string;
}

/** The slot of a softnet that runs alone: softnet's own defaults. */
export const DEFAULT_SLOT: SoftnetSlot = {
  hostLink: 'softnet0',
  subnet: '192.168.64.0/24',
  natPorts: '61000-64999',
  mac: '52:54:00:12:34:56',
};

/** A running softnet for one VM. */
export interface SoftnetAttachment extends Attachment {
  readonly child: ChildProcess;
}

/**
 * The softnet command line for `vm` in `slot`, with state directory `stateDir` and the engine's control
 * socket there: per-VM processes that share a state directory share one engine, and no bench softnet ever
 * meets a softnet service this machine may run.
 */
export function softnetArgs(vm: string, slot: SoftnetSlot, stateDir: string): string[] {
  mkdirSync(stateDir, { recursive: true });
  return [
    CLI,
    '--vm-netns',
    `/run/netns/${vm}`,
    '--vm-mac-address',
    slot.mac,
    '--host-link',
    slot.hostLink,
    '--subnet',
    slot.subnet,
    '--nat-ports',
    slot.natPorts,
    '--state-dir',
    stateDir,
    '--control-socket',
    join(stateDir, 'control.sock'),
    '--uplink',
    UPLINK,
    // softnet's default policy blocks documentation addresses, which the world uses.
    '--allow',
    `${WORLD_NET},${WORLD_NET6}`,
    ...(slot.ipv6Prefix ? ['--ipv6-prefix', slot.ipv6Prefix] : []),
  ];
}

/**
 * Starts softnet for `vm` with state directory `stateDir` (by default one of its own, so its own engine), lets
 * udhcpc in the VM take a lease and waits until the VM reaches the server.
 */
export async function attachSoftnet(
  topo: Topology,
  vm: string,
  slot: SoftnetSlot,
  stateDir = join(topo.lab.dir, `state-${slot.hostLink}`),
): Promise<SoftnetAttachment> {
  const { lab, host } = topo;
  const child = lab.spawn(host, process.execPath, softnetArgs(vm, slot, stateDir));
  const lines: string[] = [];
  let partial = '';
  child.stdout!.resume();
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    // Only the start-up lines are needed; a long run's lease and counter lines are not kept.
    if (lines.length < 200) lines.push(...parts);
  });
  const output = () => lines.join('\n');
  const detach = async () => {
    await lab.stop(child);
    // SIGTERM itself ends a softnet that had not yet set up its handler; anything else is worth a line.
    if (child.exitCode !== 0 && child.signalCode !== 'SIGTERM') {
      process.stderr.write(`bench: softnet for ${vm} exited ${child.exitCode ?? child.signalCode}\n`);
    }
  };
  try {
    await whileRunning(
      child,
      'softnet',
      output,
      // Generous: with dozens of softnets starting on two busy cores, one start can take many seconds.
      until(
        'softnet logs "softnet: started"',
        async () => lines.some((l) => l.startsWith('softnet: started ')),
        STARTUP_MS,
      ),
    );
    await whileRunning(child, 'softnet', output, dhcp(topo, vm));
    await whileRunning(child, 'softnet', output, reachesServer(topo, vm));
  } catch (e) {
    await detach();
    throw e;
  }
  return { child, detach, pid: child.pid };
}

/**
 * One lease with busybox udhcpc; its script sets the address and the default route, as a guest's would,
 * flushing only IPv4 addresses: the VM's link-local and SLAAC addresses may already be there.
 */
async function dhcp(topo: Topology, vm: string): Promise<void> {
  const script = join(topo.lab.dir, 'udhcpc.sh');
  if (!existsSync(script)) {
    writeFileSync(
      script,
      `#!/bin/sh
case "$1" in
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    ip route replace default via "$router" dev "$interface" ;;
esac
exit 0
`,
      { mode: 0o755 },
    );
  }
  await topo.lab.exec(
    vm,
    'busybox',
    ['udhcpc', '-i', 'eth0', '-f', '-q', '-n', '-t', '5', '-T', '2', '-s', script],
    20_000,
  );
}

/** The peers bench's softnet: the default network, with a fixed ULA /48 so runs compare. */
const PEER_SLOT: SoftnetSlot = { ...DEFAULT_SLOT, ipv6Prefix: 'fd00:5eb:1::/48' };

/** softnet with its default network, as one VM would run it. */
export const softnet: Peer = {
  name: 'softnet',
  description: `node softnet.js --vm-netns <vm> --uplink ${UPLINK} --allow ${WORLD_NET},${WORLD_NET6} --ipv6-prefix ${PEER_SLOT.ipv6Prefix} (per-VM form), udhcpc and the kernel's SLAAC in the VM`,
  ipv6: true,
  attach: (topo, vm) => attachSoftnet(topo, vm, PEER_SLOT),
};
