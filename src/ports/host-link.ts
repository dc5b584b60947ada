// The host link: a TAP in softnet's namespace that carries the gateway address, so the host reaches each
// VM as an L2 neighbour and the VMs reach host services at the gateway.

import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
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

/** Creates TAP `name` with MAC `mac`, turns off IPv6 on it, gives it `gateway/prefix` and brings it up. */
export function openHostLink(
  name: string,
  mac: Uint8Array,
  gateway: number,
  prefix: number,
  mtu: number,
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
    // The VMs speak IPv4 only; without this the host sends router solicitations and MLD into the link.
    writeFileSync(`/proc/sys/net/ipv6/conf/${tap.name}/disable_ipv6`, '1');
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
