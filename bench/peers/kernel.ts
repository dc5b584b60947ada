// The kernel's own path: a veth pair between the VM and the host, the host forwarding with an nftables
// masquerade to its uplink, for IPv4 and IPv6 alike. The yardstick softnet's targets are stated against.

import type { Attachment, Peer } from './peer.js';
import { reachesServer } from './peer.js';
import { UPLINK } from './topology.js';

const HOST_SIDE = 'vk0';
const HOST_ADDR = '10.99.0.1';
const VM_ADDR = '10.99.0.2';
const HOST_ADDR6 = '2001:db8:99::1';
const VM_ADDR6 = '2001:db8:99::2';
const TABLE = 'snb_masquerade';

/** The masquerade table of `family` (ip or ip6): a postrouting NAT chain masquerading to the uplink. */
function masquerade(family: 'ip' | 'ip6'): string {
  return `add table ${family} ${TABLE}; add chain ${family} ${TABLE} post { type nat hook postrouting priority srcnat; policy accept; }; add rule ${family} ${TABLE} post oifname "${UPLINK}" masquerade`;
}

/** veth plus forwarding and an nftables masquerade for both families, in the host namespace only. */
export const kernel: Peer = {
  name: 'kernel',
  description: `veth VM<->host, ip_forward=1 and ipv6 forwarding=1, nftables masquerade (ip and ip6) to ${UPLINK} in the host namespace`,
  ipv6: true,
  async attach(topo, vm): Promise<Attachment> {
    const { lab, host } = topo;
    const ip = (ns: string, ...args: string[]) => lab.exec(ns, 'ip', args);
    const detach = async () => {
      await lab.exec(host, 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
      await lab.exec(host, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=0']);
      await lab.exec(host, 'nft', ['delete', 'table', 'ip', TABLE]).catch(() => {});
      await lab.exec(host, 'nft', ['delete', 'table', 'ip6', TABLE]).catch(() => {});
      await ip(host, 'link', 'del', HOST_SIDE).catch(() => {});
    };
    try {
      await ip(host, 'link', 'add', HOST_SIDE, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vm);
      await ip(host, 'addr', 'add', `${HOST_ADDR}/24`, 'dev', HOST_SIDE);
      await ip(host, 'link', 'set', HOST_SIDE, 'up');
      await ip(vm, 'addr', 'add', `${VM_ADDR}/24`, 'dev', 'eth0');
      await ip(vm, 'link', 'set', 'eth0', 'up');
      await ip(vm, 'route', 'add', 'default', 'via', HOST_ADDR);
      await ip(host, '-6', 'addr', 'add', `${HOST_ADDR6}/64`, 'dev', HOST_SIDE, 'nodad');
      await ip(vm, '-6', 'addr', 'add', `${VM_ADDR6}/64`, 'dev', 'eth0', 'nodad');
      await ip(vm, '-6', 'route', 'add', 'default', 'via', HOST_ADDR6);
      await lab.exec(host, 'nft', [masquerade('ip')]);
      await lab.exec(host, 'nft', [masquerade('ip6')]);
      await lab.exec(host, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      await lab.exec(host, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1']);
      await reachesServer(topo, vm);
    } catch (e) {
      await detach();
      throw e;
    }
    return { detach };
  },
};
