// What the pipeline needs of the NAT uplink: the address VM flows leave from, its MTU, the ports that
// send them (a packet socket, for whole frames to a known next hop, and a raw IP socket), the mapping
// table and the port forwards.

import type { Port } from '../ports/port.js';
import type { FlowTable } from './flows.js';
import type { ForwardTable } from './forwards.js';
import type { FragmentTable } from './fragments.js';
import type { NextHop } from './next-hop.js';
import type { NextHop6 } from './next-hop6.js';

/** The NAT side of a shared network. */
export interface NatUplink {
  readonly flows: FlowTable;
  readonly forwards: ForwardTable;
  readonly fragments: FragmentTable;
  /** The uplink's IPv4 address: every translated flow's source (0 before the uplink was first usable). */
  addr: number;
  mtu: number;
  /**
   * Set while the uplink cannot carry NAT (down, gone, without an address): the VMs' packets for the world
   * are dropped (or refused, with --reject) and the mappings wait for it.
   */
  held: boolean;
  /** The raw IPv4 socket translated packets leave by when `tx` cannot take them. */
  readonly raw: Port;
  /**
   * A packet socket on the uplink with virtio headers, for frames whose next hop `hop` knows: an aggregate
   * leaves in one send. Null where there is none (tests, an uplink it could not be opened on).
   */
  tx: Port | null;
  hop: NextHop | null;
  /** NAT66 through the same uplink; null when it has no IPv6 address NAT66 could use. */
  v6: NatUplink6 | null;
}

/** NAT66 on an uplink: the same mapping behaviour as NAT44, from the uplink's global IPv6 address. */
export interface NatUplink6 {
  readonly flows: FlowTable;
  /** Port forwards on the uplink's IPv6 address: the same external ports as on its IPv4 one. */
  readonly forwards: ForwardTable;
  /** The uplink's IPv6 address as four signed words; every translated flow's source. */
  readonly addr: Int32Array;
  mtu: number;
  /** Set while the uplink cannot carry IPv6 (no address, no route): packets for the world are dropped. */
  held: boolean;
  /** The raw IPv6 socket translated packets leave by when `tx` cannot take them. */
  readonly raw: Port;
  /**
   * A packet socket on the uplink with virtio headers, for frames whose next hop `hop` knows: an aggregate
   * leaves in one send. Null where there is none (tests, NAT66 on hold, one it could not open).
   */
  tx: Port | null;
  hop: NextHop6 | null;
  /** Fragment trains towards the VMs, keyed by a mix of the source address (remoteKey6) and the 32-bit id. */
  readonly fragments: FragmentTable;
  /** Fragment trains from the VMs whose first fragment was translated, keyed the same way by the VM's source. */
  readonly outFragments: FragmentTable;
}
