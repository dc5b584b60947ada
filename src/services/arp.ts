// ARP answers: softnet answers the VMs for the gateway and the host for the VMs, so neither side's
// broadcast ever reaches the other and nothing is learned from what a VM claims.

import { ARP, ARP_LEN, ArpOp } from '../wire/arp.js';
import { ETH, ETH_HEADER_LEN, writeMac } from '../wire/ethernet.js';

/**
 * Rewrites the ARP request frame at `off` into the reply "the target address is at `mac`", in place, and
 * returns the reply's length. The request must have been checked with isEthernetIpv4.
 */
export function answerArpInPlace(u8: Uint8Array, dv: DataView, off: number, mac: Uint8Array): number {
  const arp = off + ETH_HEADER_LEN;
  const target = dv.getUint32(arp + ARP.TPA);
  u8.copyWithin(off + ETH.DST, off + ETH.SRC, off + ETH.SRC + 6);
  writeMac(u8, off + ETH.SRC, mac);
  dv.setUint16(arp + ARP.OPER, ArpOp.REPLY);
  u8.copyWithin(arp + ARP.THA, arp + ARP.SHA, arp + ARP.SHA + 10);
  writeMac(u8, arp + ARP.SHA, mac);
  dv.setUint32(arp + ARP.SPA, target);
  return ETH_HEADER_LEN + ARP_LEN;
}
