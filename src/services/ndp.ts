// Neighbor Discovery at the gateway (RFC 4861): softnet is the router fe80::1 on every VM's link, and
// answers for the VMs on the host link, as it answers ARP. Router advertisements go to one VM each: its
// own /64 (RFC 8273), the MTU, DNS (RFC 8106), and softnet as its only router.

import { ETH_HEADER_LEN, EtherType, emitEthernet } from '../wire/ethernet.js';
import {
  ICMP6,
  Icmp6Type,
  icmp6Checksum,
  NaFlag,
  ND,
  NdOption,
  PrefixFlag,
  RA,
  RaFlag,
} from '../wire/icmpv6.js';
import { emitIpv6, IPV6, IPV6_HEADER_LEN, NextHeader, writeAddr } from '../wire/ipv6.js';

/** ND messages are sent, and must be received, with hop limit 255: proof they did not cross a router. */
export const ND_HOP_LIMIT = 255;
/** fe80::1, the gateway's link-local address on every VM's link, as words. */
export const GATEWAY_LL = Int32Array.of(0xfe800000 | 0, 0, 0, 1);
/** ff02::1, all nodes. */
export const ALL_NODES = Int32Array.of(0xff020000 | 0, 0, 0, 1);

/** How long, in seconds, a VM keeps softnet as its default router without hearing from it again. */
export const ROUTER_LIFETIME = 1800;

/** What one network's advertisements say beside each VM's prefix. */
export interface RouterInfo {
  gatewayMac: Uint8Array;
  mtu: number;
  /** The gateway's ULA address: the VMs' DNS server (RDNSS). */
  dns: ArrayLike<number>;
  /** The DNSSL option, encoded once (empty when there is no domain). */
  dnssl: Uint8Array;
  /** Lifetimes of each VM's prefix, in seconds. */
  validLifetime: number;
  preferredLifetime: number;
  /** The NAT64 /96 told in PREF64 (RFC 8781), three words; null without NAT64. */
  pref64: Int32Array | null;
}

/** The DNSSL option (RFC 8106 5.2) for `domain`, or an empty array without one. */
export function encodeDnssl(domain: string | null, lifetime: number): Uint8Array {
  if (domain === null) return new Uint8Array(0);
  const labels = domain.replace(/\.$/, '').split('.');
  const nameLen = labels.reduce((n, l) => n + 1 + l.length, 1);
  const len = Math.ceil((8 + nameLen) / 8) * 8;
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer);
  out[0] = NdOption.DNSSL;
  out[1] = len / 8;
  dv.setUint32(4, lifetime);
  let at = 8;
  for (const l of labels) {
    out[at++] = l.length;
    for (let i = 0; i < l.length; i++) out[at++] = l.charCodeAt(i);
  }
  return out;
}

/**
 * Writes at `out` a router advertisement to the VM at `vmMac` (IPv6 destination `to`: the soliciting
 * address, or all nodes) announcing the /64 whose first words are p0, p1. Returns the frame's length.
 */
export function emitRouterAdvert(
  u8: Uint8Array,
  dv: DataView,
  out: number,
  info: RouterInfo,
  vmMac: Uint8Array,
  to: ArrayLike<number>,
  p0: number,
  p1: number,
): number {
  const ip = emitEthernet(u8, out, vmMac, 0, info.gatewayMac, EtherType.IPV6);
  const icmp = ip + IPV6_HEADER_LEN;
  u8.fill(0, icmp, icmp + RA.OPTIONS);
  dv.setUint8(icmp + ICMP6.TYPE, Icmp6Type.ROUTER_ADVERT);
  dv.setUint8(icmp + RA.HOP_LIMIT, 64);
  // M and O: clients that want an address or DNS from DHCPv6 may ask for them (the /64 is SLAAC's too).
  dv.setUint8(icmp + RA.FLAGS, RaFlag.MANAGED | RaFlag.OTHER);
  dv.setUint16(icmp + RA.LIFETIME, ROUTER_LIFETIME);
  let at = icmp + RA.OPTIONS;
  dv.setUint8(at, NdOption.SOURCE_LL);
  dv.setUint8(at + 1, 1);
  u8.set(info.gatewayMac, at + 2);
  at += 8;
  dv.setUint8(at, NdOption.MTU);
  dv.setUint8(at + 1, 1);
  dv.setUint16(at + 2, 0);
  dv.setUint32(at + 4, info.mtu);
  at += 8;
  dv.setUint8(at, NdOption.PREFIX);
  dv.setUint8(at + 1, 4);
  dv.setUint8(at + 2, 64);
  dv.setUint8(at + 3, PrefixFlag.ON_LINK | PrefixFlag.AUTONOMOUS);
  dv.setUint32(at + 4, info.validLifetime);
  dv.setUint32(at + 8, info.preferredLifetime);
  dv.setUint32(at + 12, 0);
  writeAddr(dv, at + 16, p0, p1, 0, 0);
  at += 32;
  dv.setUint8(at, NdOption.RDNSS);
  dv.setUint8(at + 1, 3);
  dv.setUint16(at + 2, 0);
  dv.setUint32(at + 4, ROUTER_LIFETIME);
  writeAddr(dv, at + 8, info.dns[0], info.dns[1], info.dns[2], info.dns[3]);
  at += 24;
  if (info.dnssl.length > 0) {
    u8.set(info.dnssl, at);
    at += info.dnssl.length;
  }
  const pref64 = info.pref64;
  if (pref64 !== null) {
    dv.setUint8(at, NdOption.PREF64);
    dv.setUint8(at + 1, 2);
    // Scaled lifetime (units of 8 s) in 13 bits, then the prefix length code: 0 is /96.
    dv.setUint16(at + 2, (ROUTER_LIFETIME / 8) << 3);
    dv.setInt32(at + 4, pref64[0]);
    dv.setInt32(at + 8, pref64[1]);
    dv.setInt32(at + 12, pref64[2]);
    at += 16;
  }
  const len = at - icmp;
  writeAddr(dv, ip + IPV6.SRC, GATEWAY_LL[0], GATEWAY_LL[1], GATEWAY_LL[2], GATEWAY_LL[3]);
  writeAddr(dv, ip + IPV6.DST, to[0], to[1], to[2], to[3]);
  emitIpv6(dv, ip, NextHeader.ICMPV6, len, ND_HOP_LIMIT);
  dv.setUint16(icmp + ICMP6.CHECKSUM, icmp6Checksum(u8, ip, icmp, len));
  return at - out;
}

/**
 * Writes at `out` a neighbor advertisement for `target` (16 bytes at u8[targetAt]) at `mac`, from `mac`
 * to `dstMac` and IPv6 `to` (16 bytes at u8[toAt], the solicitation's source; all nodes when that was ::).
 * `router` sets the R flag. Returns the frame's length.
 */
export function emitNeighborAdvert(
  u8: Uint8Array,
  dv: DataView,
  out: number,
  mac: Uint8Array,
  dstMac: Uint8Array,
  targetAt: number,
  toAt: number,
  router: boolean,
): number {
  const ip = emitEthernet(u8, out, dstMac, 0, mac, EtherType.IPV6);
  const icmp = ip + IPV6_HEADER_LEN;
  const unspecified =
    dv.getInt32(toAt) === 0 &&
    dv.getInt32(toAt + 4) === 0 &&
    dv.getInt32(toAt + 8) === 0 &&
    dv.getInt32(toAt + 12) === 0;
  u8.copyWithin(ip + IPV6.SRC, targetAt, targetAt + 16);
  if (unspecified) writeAddr(dv, ip + IPV6.DST, ALL_NODES[0], ALL_NODES[1], ALL_NODES[2], ALL_NODES[3]);
  else u8.copyWithin(ip + IPV6.DST, toAt, toAt + 16);
  u8.copyWithin(icmp + ND.TARGET, targetAt, targetAt + 16);
  dv.setUint8(icmp + ICMP6.TYPE, Icmp6Type.NEIGHBOR_ADVERT);
  dv.setUint8(icmp + ICMP6.CODE, 0);
  dv.setUint16(icmp + ICMP6.CHECKSUM, 0);
  dv.setUint32(icmp + 4, 0);
  dv.setUint8(
    icmp + 4,
    (router ? NaFlag.ROUTER : 0) | (unspecified ? 0 : NaFlag.SOLICITED) | NaFlag.OVERRIDE,
  );
  const opt = icmp + ND.OPTIONS;
  dv.setUint8(opt, NdOption.TARGET_LL);
  dv.setUint8(opt + 1, 1);
  u8.set(mac, opt + 2);
  const len = ND.OPTIONS + 8;
  emitIpv6(dv, ip, NextHeader.ICMPV6, len, ND_HOP_LIMIT);
  dv.setUint16(icmp + ICMP6.CHECKSUM, icmp6Checksum(u8, ip, icmp, len));
  return ETH_HEADER_LEN + IPV6_HEADER_LEN + len;
}
