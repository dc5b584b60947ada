// A bridge network's LAN: two packet sockets on the bridged interface, one that captures what arrives for
// the VMs and one that sends their frames out (see lanSockets in native/softnet.c).

import { native, PortMode } from '../native.js';
import type { PortSpec } from './port.js';

/** The LAN side of interface `name`: its sockets, its own MAC and its MTU. */
export interface LanSockets {
  rx: PortSpec;
  tx: PortSpec;
  mac: Uint8Array;
  mtu: number;
}

/** Opens the LAN sockets of Ethernet interface `name`; throws (ENODEV, EPROTONOSUPPORT) when it cannot. */
export function openLan(name: string): LanSockets {
  const s = native.lanSockets(name);
  return {
    rx: { fd: s.rx, mode: PortMode.DGRAM, name: `${name}:lan-rx` },
    tx: { fd: s.tx, mode: PortMode.DGRAM, name: `${name}:lan-tx` },
    mac: s.mac,
    mtu: s.mtu,
  };
}
