// ARP for IPv4 over Ethernet (RFC 826): offsets from the start of the ARP payload.

import { writeMac } from './ethernet.js';

export const ARP = {
  HTYPE: 0,
  PTYPE: 2,
  HLEN: 4,
  PLEN: 5,
  OPER: 6,
  SHA: 8,
  SPA: 14,
  THA: 18,
  TPA: 24,
} as const;
export const ARP_LEN = ARP.TPA + 4;

export const ArpOp = { REQUEST: 1, REPLY: 2 } as const;

/** Whether the ARP payload at `off` (of `len` bytes) is Ethernet/IPv4, the only kind softnet speaks. */
export function isEthernetIpv4(dv: DataView, off: number, len: number): boolean {
  return (
    len >= ARP_LEN &&
    dv.getUint16(off + ARP.HTYPE) === 1 &&
    dv.getUint16(off + ARP.PTYPE) === 0x0800 &&
    dv.getUint8(off + ARP.HLEN) === 6 &&
    dv.getUint8(off + ARP.PLEN) === 4
  );
}

/** The operation code (1 request, 2 reply). */
export function op(dv: DataView, off: number): number {
  return dv.getUint16(off + ARP.OPER);
}

/** The sender protocol (IPv4) address. */
export function senderIp(dv: DataView, off: number): number {
  return dv.getUint32(off + ARP.SPA);
}

/** The target protocol (IPv4) address. */
export function targetIp(dv: DataView, off: number): number {
  return dv.getUint32(off + ARP.TPA);
}

/** Writes an Ethernet/IPv4 ARP payload at `off` (target MAC read from tha[thaAt]); returns its end. */
export function emitArp(
  dv: DataView,
  u8: Uint8Array,
  off: number,
  oper: number,
  sha: Uint8Array,
  spa: number,
  tha: Uint8Array,
  thaAt: number,
  tpa: number,
): number {
  dv.setUint16(off + ARP.HTYPE, 1);
  dv.setUint16(off + ARP.PTYPE, 0x0800);
  dv.setUint8(off + ARP.HLEN, 6);
  dv.setUint8(off + ARP.PLEN, 4);
  dv.setUint16(off + ARP.OPER, oper);
  writeMac(u8, off + ARP.SHA, sha);
  dv.setUint32(off + ARP.SPA, spa);
  writeMac(u8, off + ARP.THA, tha, thaAt);
  dv.setUint32(off + ARP.TPA, tpa);
  return off + ARP_LEN;
}
