// The drop reason for a frame whose EtherType softnet does not carry.

import { Drop } from '../stats/drops.js';
import { EtherType } from '../wire/ethernet.js';

/** Why a frame of EtherType `type` (neither IPv4 nor ARP) is dropped. */
export function unsupportedEtherType(type: number): number {
  if (type < 0x0600) return Drop.NOT_ETHERNET_II;
  if (type === EtherType.IPV6) return Drop.IPV6;
  if (type === EtherType.VLAN || type === EtherType.QINQ) return Drop.VLAN;
  if (type === EtherType.LLDP) return Drop.LLDP;
  return Drop.ETHERTYPE_UNKNOWN;
}
