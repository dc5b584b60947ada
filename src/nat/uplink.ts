// What the pipeline needs of the NAT uplink: the address VM flows leave from, its MTU, the ports that
// send them (a packet socket, for whole frames to a known next hop, and a raw IP socket), the mapping
// table and the port forwards.

import type { Port } from '../ports/port.js';
import type { FlowTable } from './flows.js';
import type { ForwardTable } from './forwards.js';
import type { FragmentTable } from './fragments.js';
import type { NextHop } from './next-hop.js';

/** The NAT side of a shared network. */
export interface NatUplink {
  readonly flows: FlowTable;
  readonly forwards: ForwardTable;
  readonly fragments: FragmentTable;
  /** The uplink's IPv4 address: every translated flow's source. */
  readonly addr: number;
  readonly mtu: number;
  /** The raw IPv4 socket translated packets leave by when `tx` cannot take them. */
  readonly raw: Port;
  /**
   * A packet socket on the uplink with virtio headers, for frames whose next hop `hop` knows: an aggregate
   * leaves in one send. Null where there is none (tests, an uplink it could not be opened on).
   */
  readonly tx: Port | null;
  readonly hop: NextHop | null;
}
