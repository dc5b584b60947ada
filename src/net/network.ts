// A network at run time as numbers: one subnet behind one gateway, its DHCP pool and what DHCP tells the VMs.

import { type Cidr, maskOf, parseCidr, parseCidr6 } from '../wire/addr.js';
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
  /** The network's IPv6 side; null when it has none (`--ipv6 off`, a bridge). */
  v6: Ipv6Config | null;
  /** IPv6 only: no IPv4 for the VMs (DHCPv4 unanswered, IPv4 and ARP dropped). */
  ipv6Only: boolean;
  /** The NAT64 /96 as its three words; null without NAT64. */
  nat64: Int32Array | null;
  /** Whether that is the well-known 64:ff9b::/96, which never carries a non-global IPv4 address. */
  nat64WellKnown: boolean;
}

/** 64:ff9b::/96 (RFC 6052 2.1). */
export const WELL_KNOWN_NAT64 = Int32Array.of(0x0064ff9b, 0, 0);

/** A network's IPv6: its /48, out of which each VM gets a /64 (services/prefixes.ts). */
export interface Ipv6Config {
  /** The /48 as its first word and the high half of its second (the low half zero), signed. */
  w0: number;
  w1: number;
  /** The gateway's ULA address, ::1 of the /48, on the host link: also the VMs' DNS server. */
  gateway: Int32Array;
  /** Lifetimes of a VM's /64 in router advertisements and DHCPv6, seconds. */
  validLifetime: number;
  preferredLifetime: number;
}

/** The IPv6 side of a network over the /48 `ula` (two words), with lifetimes following its lease time. */
export function ipv6Config(ula: Int32Array, leaseTime: number): Ipv6Config {
  const w0 = ula[0] | 0;
  const w1 = ula[1] & 0xffff0000;
  return {
    w0,
    w1,
    gateway: Int32Array.of(w0, w1, 0, 1),
    // Advertisements are repeated every third of the lease time: a VM keeps its /64 through two lost ones.
    validLifetime: Math.max(leaseTime, 60) * 2,
    preferredLifetime: Math.max(leaseTime, 60),
  };
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
  v6?: Ipv6Config | null;
  ipv6Only?: boolean;
  nat64?: Int32Array | null;
}

/** The network of `cidr`: the gateway is its first address. */
export function makeNetwork(cidr: Cidr, opts: NetworkOptions): NetworkConfig {
  const mask = maskOf(cidr.prefix);
  const subnet = (cidr.addr & mask) >>> 0;
  const broadcast = (subnet | ~mask) >>> 0;
  const gateway = subnet + 1;
  const { pool, v6, ipv6Only, nat64, ...rest } = opts;
  return {
    ...rest,
    v6: v6 ?? null,
    ipv6Only: ipv6Only ?? false,
    nat64: nat64 ?? null,
    nat64WellKnown: nat64?.every((w, i) => w === WELL_KNOWN_NAT64[i]) ?? false,
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

/** The run-time form of a checked network spec; `ula` is its IPv6 /48 (two words), null without IPv6. */
export function networkConfig(spec: NetworkSpec, ula: Int32Array | null = null): NetworkConfig {
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
    v6: ula === null ? null : ipv6Config(ula, spec.leaseTime),
    ipv6Only: ula !== null && spec.ipv6Only,
    nat64: ula === null || !spec.nat64 ? null : nat64Words(spec.nat64Prefix),
  });
}

/** The three words of a NAT64 /96 given as text (null: the well-known prefix). */
function nat64Words(text: string | null): Int32Array {
  if (text === null) return WELL_KNOWN_NAT64;
  const a = parseCidr6(text)!.addr;
  return Int32Array.of(a[0] | 0, a[1] | 0, a[2] | 0);
}

/** Whether `addr` (unsigned, or signed as the hot path passes it) lies in the network's subnet. */
export function inSubnet(net: NetworkConfig, addr: number): boolean {
  return (addr & net.mask) >>> 0 === net.subnet;
}
