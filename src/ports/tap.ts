// TAP devices as VM ports: one in softnet's own namespace (--vm-tap), or made inside the VM's (--vm-netns).

import { native, PortMode } from '../native.js';
import type { PortSpec } from './port.js';

/** Attaches to TAP `name` in softnet's namespace, creating it if needed. */
export function vmTap(name: string): PortSpec {
  const tap = native.tapOpen(name, null, null, 0, true);
  return { fd: tap.fd, mode: PortMode.TAP, name: tap.name };
}

/**
 * Makes the VM's NIC as TAP `ifname` inside the namespace at `nsPath`, with the VM's MAC, and brings it up;
 * the device goes away with softnet's fd, as a NIC does when its VM stops.
 */
export function netnsTap(nsPath: string, ifname: string, mac: Uint8Array, mtu: number): PortSpec {
  const tap = native.tapOpen(ifname, nsPath, mac, mtu, true, true);
  return { fd: tap.fd, mode: PortMode.TAP, name: `${nsPath}:${tap.name}`, vnet: true };
}
