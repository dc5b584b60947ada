// What the pipeline needs to know of a network while it decides frames.

import type { NatUplink } from '../nat/uplink.js';
import type { Attachment } from '../net/attachment.js';
import type { BridgeLan } from '../net/bridge-lan.js';
import type { NetworkConfig } from '../net/network.js';
import type { Port } from '../ports/port.js';
import type { DhcpServer } from '../services/dhcp.js';
import type { Dhcpv6Server } from '../services/dhcpv6.js';
import type { RouterInfo } from '../services/ndp.js';

/** One network as the hot path sees it: gateway, host link (or a bridge's LAN), and the VMs by leased address. */
export interface Segment {
  readonly cfg: NetworkConfig;
  readonly gatewayMac: Uint8Array;
  readonly hostLink: Port;
  /** The VM that holds leased address `ip`, if any. */
  vmAt(ip: number): Attachment | undefined;
  readonly dhcp: DhcpServer;
  /** NAT to the world; null for a host-only network. */
  readonly nat: NatUplink | null;
  /** The LAN of a bridge network; null for the other types. */
  readonly lan: BridgeLan | null;
  /** The VM holding subnet ID `id` of the network's /48 (its /64), if any. */
  vmAt6(id: number): Attachment | undefined;
  /** What router advertisements say, and DHCPv6; null when the network has no IPv6. */
  readonly router: RouterInfo | null;
  readonly dhcp6: Dhcpv6Server | null;
}
