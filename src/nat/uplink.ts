// What the pipeline needs of the NAT uplink: the address VM flows leave from, its MTU, the raw port that
// sends them, the mapping table and the port forwards.

import type { Port } from '../ports/port.js';
import type { FlowTable } from './flows.js';
import type { ForwardTable } from './forwards.js';
import type { FragmentTable } from './fragments.js';

/** The NAT side of a shared network. */
export interface NatUplink {
  readonly flows: FlowTable;
  readonly forwards: ForwardTable;
  readonly fragments: FragmentTable;
  /** The uplink's IPv4 address: every translated flow's source. */
  readonly addr: number;
  readonly mtu: number;
  /** The raw IPv4 socket translated packets leave by. */
  readonly raw: Port;
}
