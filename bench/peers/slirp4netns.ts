// slirp4netns: libslirp's userspace TCP/IP stack behind a TAP in the VM namespace; the VM gets 10.0.2.100
// and the gateway 10.0.2.2, and its traffic leaves through sockets of the host namespace.

import type { Attachment, Peer } from './peer.js';
import { reachesServer, tail, whileRunning } from './peer.js';

const ARGS = ['--configure', '--mtu=1500', '--disable-host-loopback', '--netns-type=path'];

/** slirp4netns attached to the VM namespace by path, running in the host namespace. */
export const slirp4netns: Peer = {
  name: 'slirp4netns',
  description: `slirp4netns ${ARGS.join(' ')} /run/netns/<vm> tap0`,
  // Its IPv6 (--enable-ipv6) is not measured here: the IPv6 rows compare softnet with the kernel and pasta.
  ipv6: false,
  async attach(topo, vm): Promise<Attachment> {
    const { lab, host } = topo;
    const child = lab.spawn(host, 'slirp4netns', [...ARGS, `/run/netns/${vm}`, 'tap0']);
    const output = tail(child);
    const detach = () => lab.stop(child);
    try {
      await whileRunning(child, 'slirp4netns', output, reachesServer(topo, vm));
    } catch (e) {
      await detach();
      throw e;
    }
    return { detach, pid: child.pid };
  },
};
