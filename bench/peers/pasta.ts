// pasta (Debian's passt package): a userspace translator between a TAP in the VM namespace and sockets of
// the host namespace, copying the host's addresses and gateways, IPv4 and IPv6, into the VM namespace
// (--config-net).

import type { Attachment, Peer } from './peer.js';
import { reachesServer, tail, until, whileRunning } from './peer.js';

const ARGS = [
  '--foreground',
  '--quiet',
  // As root, pasta drops to nobody by default, and the Debian 12 build then fails to join the target
  // namespace ("Couldn't switch to pasta namespaces"); it works when it stays root.
  '--runas',
  '0:0',
  '--config-net',
  '--mtu',
  '1500',
  '--ns-ifname',
  'eth0',
  // No port forwarding either way: only the VM's own connections are measured.
  '--tcp-ports',
  'none',
  '--udp-ports',
  'none',
  '--tcp-ns',
  'none',
  '--udp-ns',
  'none',
];

/** pasta attached to the VM namespace, running in the host namespace. */
export const pasta: Peer = {
  name: 'pasta',
  description: `pasta ${ARGS.join(' ')} --netns <vm>`,
  ipv6: true,
  async attach(topo, vm): Promise<Attachment> {
    const { lab, host } = topo;
    const child = lab.spawn(host, 'pasta', [...ARGS, '--netns', `/run/netns/${vm}`]);
    const output = tail(child);
    const detach = () => lab.stop(child);
    try {
      await whileRunning(
        child,
        'pasta',
        output,
        until('pasta configures eth0 in the VM namespace', async () => {
          const r = await lab.exec(vm, 'ip', ['-4', 'route', 'show', 'default'], 5000);
          return r.stdout.includes('dev eth0');
        }),
      );
      await whileRunning(child, 'pasta', output, reachesServer(topo, vm));
    } catch (e) {
      await detach();
      throw e;
    }
    return { detach, pid: child.pid };
  },
};
