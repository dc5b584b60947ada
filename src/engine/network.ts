// A network: one subnet behind one gateway, with its DHCP pool and what DHCP tells the VMs.

import { type Cidr, maskOf } from '../wire/addr.js';

/** A route handed to VMs in DHCP option 121. */
export interface Route {
  dest: number;
  prefix: number;
  via: number;
}

/** What a network is; every address is a host-order 32-bit number. */
export interface NetworkConfig {
  name: string;
  type: 'shared' | 'host';
  subnet: number;
  prefix: number;
  mask: number;
  gateway: number;
  broadcast: number;
  poolStart: number;
  poolEnd: number;
  leaseTime: number;
  mtu: number;
  dns: number[];
  domain: string | null;
  routes: Route[];
}

/** Options that shape a network beyond its subnet. */
export interface NetworkOptions {
  name: string;
  type: 'shared' | 'host';
  leaseTime: number;
  mtu: number;
  domain: string | null;
  routes: Route[];
}

/** The network of `cidr`: the gateway is its first address and the pool the rest, broadcast excluded. */
export function makeNetwork(cidr: Cidr, opts: NetworkOptions): NetworkConfig {
  const mask = maskOf(cidr.prefix);
  const subnet = (cidr.addr & mask) >>> 0;
  const broadcast = (subnet | ~mask) >>> 0;
  const gateway = subnet + 1;
  return {
    ...opts,
    subnet,
    prefix: cidr.prefix,
    mask,
    gateway,
    broadcast,
    poolStart: gateway + 1,
    poolEnd: broadcast - 1,
    dns: [gateway],
  };
}

/** Whether `addr` lies in the network's subnet. */
export function inSubnet(net: NetworkConfig, addr: number): boolean {
  return (addr & net.mask) >>> 0 === net.subnet;
}
