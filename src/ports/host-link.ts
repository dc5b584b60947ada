// The host link: a TAP in softnet's namespace that carries the gateway address, so the host reaches each
// VM as an L2 neighbour and the VMs reach host services at the gateway.

import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { native, PortMode } from '../native.js';
import type { PortSpec } from './port.js';

/** The host link's port and the MAC the host kernel gave it (the gateway's MAC as the VMs see it). */
export interface HostLink {
  spec: PortSpec;
  mac: Uint8Array;
}

/** Thrown when another engine holds the host link. */
export class HostLinkBusy extends Error {}

/**
 * The gateway's MAC on host link `name` for subnet `cidr`: locally administered, and the same for every
 * engine that opens that link, so a VM's neighbour entry for its gateway stays right when another engine
 * takes over (the kernel would pick a new random one each time).
 */
export function gatewayMacFor(name: string, cidr: string): Uint8Array {
  const mac = Uint8Array.from(
    createHash('sha256').update(`softnet gateway ${name} ${cidr}`).digest().subarray(0, 6),
  );
  mac[0] = (mac[0] & 0xfc) | 0x02;
  return mac;
}

/**
 * Creates TAP `name` with MAC `mac`, gives it `gateway/prefix` and brings it up; with `gateway6` (four
 * words: the ULA ::1 of the network's /48) it gets that address as a /48 too, else IPv6 is turned off on it.
 */
export function openHostLink(
  name: string,
  mac: Uint8Array,
  gateway: number,
  prefix: number,
  mtu: number,
  gateway6: ArrayLike<number> | null = null,
): HostLink {
  let tap: { fd: number; name: string };
  try {
    // With virtio headers: what the host sends a VM, and a VM the host, may be 64 KiB aggregates.
    tap = native.tapOpen(name, null, mac, mtu, false, true);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EBUSY') {
      throw new HostLinkBusy(`host link ${name} is in use by another softnet (or is not a TAP device)`);
    }
    throw e;
  }
  try {
    configureIpv6(tap.name, gateway6);
    native.ifConfigure(tap.name, gateway, prefix, true);
    return {
      spec: { fd: tap.fd, mode: PortMode.TAP, name: tap.name, vnet: true },
      mac: native.ifHwaddr(tap.name),
    };
  } catch (e) {
    native.closeFd(tap.fd);
    throw e;
  }
}

/**
 * Gives host link `name` the gateway's ULA address as a /48 (every VM's /64 is then on-link for the host,
 * which asks for each VM's address by ND and softnet answers), or turns IPv6 off on it (`gateway6` null).
 * Either way the host sends no router solicitations into the link and configures nothing from it.
 */
export function configureIpv6(name: string, gateway6: ArrayLike<number> | null): void {
  const conf = `/proc/sys/net/ipv6/conf/${name}`;
  if (gateway6 === null) {
    writeFileSync(`${conf}/disable_ipv6`, '1');
    return;
  }
  for (const [key, value] of [
    ['accept_ra', '0'],
    ['autoconf', '0'],
    ['router_solicitations', '0'],
    ['accept_dad', '0'],
    // An address that went with the link going down would be one more thing to repair when it comes back.
    ['keep_addr_on_down', '1'],
    ['disable_ipv6', '0'],
  ])
    writeFileSync(`${conf}/${key}`, value);
  const bytes = new Uint8Array(16);
  const dv = new DataView(bytes.buffer);
  for (let i = 0; i < 4; i++) dv.setInt32(4 * i, gateway6[i]);
  native.ifAddr6(name, bytes, 48);
}

/** Whether interface `name` holds IPv6 address `words` (four words), from /proc/net/if_inet6. */
export function hasAddress6(name: string, words: ArrayLike<number>): boolean {
  let hex = '';
  for (let i = 0; i < 4; i++) hex += (words[i] >>> 0).toString(16).padStart(8, '0');
  let text: string;
  try {
    text = readFileSync('/proc/net/if_inet6', 'utf8');
  } catch {
    return false;
  }
  return text.split('\n').some((line) => {
    const f = line.trim().split(/\s+/);
    return f[0] === hex && f[5] === name;
  });
}
