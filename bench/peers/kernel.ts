// The kernel's own path: a veth pair between the VM and the host, the host forwarding with an nftables
// masquerade to its uplink. The yardstick softnet's targets are stated against.

import type { Attachment, Peer } from './peer.js';
import { reachesServer } from './peer.js';
import { UPLINK } from './topology.js';

const HOST_SIDE = 'vk0';
const HOST_ADDR = '10.99.0.1';
const VM_ADDR = '10.99.0.2';
const TABLE = 'snb_masquerade';

/** veth plus ip_forward and an nftables masquerade, in the host namespace only. */
export const kernel: Peer = {
  name: 'kernel',
  description: `veth VM<->host, ip_forward=1 and nftables masquerade to ${UPLINK} in the host namespace`,
  async attach(topo, vm): Promise<Attachment> {
    const { lab, host } = topo;
    const ip = (ns: string, ...args: string[]) => lab.exec(ns, 'ip', args);
    const detach = async () => {
      await lab.exec(host, 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
      await lab.exec(host, 'nft', ['delete', 'table', 'ip', TABLE]).catch(() => {});
      await ip(host, 'link', 'del', HOST_SIDE).catch(() => {});
    };
    try {
      await ip(host, 'link', 'add', HOST_SIDE, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vm);
      await ip(host, 'addr', 'add', `${HOST_ADDR}/24`, 'dev', HOST_SIDE);
      await ip(host, 'link', 'set', HOST_SIDE, 'up');
      await ip(vm, 'addr', 'add', `${VM_ADDR}/24`, 'dev', 'eth0');
      await ip(vm, 'link', 'set', 'eth0', 'up');
      await ip(vm, 'route', 'add', 'default', 'via', HOST_ADDR);
      await lab.exec(host, 'nft', [
        `add table ip ${TABLE}; add chain ip ${TABLE} post { type nat hook postrouting priority srcnat; policy accept; }; add rule ip ${TABLE} post oifname "${UPLINK}" masquerade`,
      ]);
      await lab.exec(host, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      await reachesServer(topo, vm);
    } catch (e) {
      await detach();
      throw e;
    }
    return { detach };
  },
};
