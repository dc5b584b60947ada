// A network at run time as numbers: one subnet behind one gateway, its DHCP pool and what DHCP tells the VMs.

import { type Cidr, maskOf, parseCidr } from '../wire/addr.js';
import { type NetworkSpec, type NetworkType, poolOf } from './network-spec.js';

/** A route handed to VMs in DHCP option 121. */
export interface Route {
  dest: number;
  prefix: number;
  via: number;
}

/** What a network is; every address is a host-order 32-bit number. */
export interface NetworkConfig {
  name: string;
  type: NetworkType;
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
  type: NetworkType;
  leaseTime: number;
  mtu: number;
  domain: string | null;
  routes: Route[];
  /** The DHCP pool; by default every address after the gateway, broadcast excluded. */
  pool?: { start: number; end: number };
}

/** The network of `cidr`: the gateway is its first address. */
export function makeNetwork(cidr: Cidr, opts: NetworkOptions): NetworkConfig {
  const mask = maskOf(cidr.prefix);
  const subnet = (cidr.addr & mask) >>> 0;
  const broadcast = (subnet | ~mask) >>> 0;
  const gateway = subnet + 1;
  const { pool, ...rest } = opts;
  return {
    ...rest,
    subnet,
    prefix: cidr.prefix,
    mask,
    gateway,
    broadcast,
    poolStart: pool?.start ?? gateway + 1,
    poolEnd: pool?.end ?? broadcast - 1,
    dns: [gateway],
  };
}

/** The run-time form of a checked network spec. */
export function networkConfig(spec: NetworkSpec): NetworkConfig {
  const cidr = parseCidr(spec.cidr)!;
  const gateway = ((cidr.addr & cidr.mask) >>> 0) + 1;
  return makeNetwork(cidr, {
    name: spec.name,
    type: spec.type,
    leaseTime: spec.leaseTime,
    mtu: spec.mtu,
    domain: spec.domain,
    routes: spec.routes.map((r) => {
      const c = parseCidr(r)!;
      return { dest: c.addr, prefix: c.prefix, via: gateway };
    }),
    pool: poolOf(spec),
  });
}

/** Whether `addr` (unsigned, or signed as the hot path passes it) lies in the network's subnet. */
export function inSubnet(net: NetworkConfig, addr: number): boolean {
  return (addr & net.mask) >>> 0 === net.subnet;
}
