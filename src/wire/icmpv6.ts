// ICMPv6 (RFC 4443): types, the checksum over the IPv6 pseudo-header, and Neighbor Discovery's messages
// and options (RFC 4861, RFC 8106 for DNS options).

import { checksum } from './checksum.js';
import { NextHeader, pseudoSum } from './ipv6.js';

export const ICMP6 = { TYPE: 0, CODE: 1, CHECKSUM: 2, ID: 4, SEQ: 6 } as const;
export const ICMP6_HEADER_LEN = 8;

export const Icmp6Type = {
  DEST_UNREACHABLE: 1,
  PACKET_TOO_BIG: 2,
  TIME_EXCEEDED: 3,
  PARAM_PROBLEM: 4,
  ECHO_REQUEST: 128,
  ECHO_REPLY: 129,
  MLD_QUERY: 130,
  MLD_REPORT: 131,
  MLD_DONE: 132,
  ROUTER_SOLICIT: 133,
  ROUTER_ADVERT: 134,
  NEIGHBOR_SOLICIT: 135,
  NEIGHBOR_ADVERT: 136,
  REDIRECT: 137,
  MLD2_REPORT: 143,
} as const;

/** Destination unreachable codes softnet sends. */
export const Unreachable = { NO_ROUTE: 0, ADMIN_PROHIBITED: 1, ADDRESS: 3, PORT: 4 } as const;

/** The ICMPv6 checksum of the message at `l4` (`len` bytes) in the packet whose IPv6 header is at `ip`. */
export function icmp6Checksum(u8: Uint8Array, ip: number, l4: number, len: number): number {
  return checksum(u8, l4, len, pseudoSum(u8, ip, NextHeader.ICMPV6, len));
}

/** Neighbor solicitation and advertisement: the target address follows 4 bytes of flags. */
export const ND = { TARGET: 8, OPTIONS: 24 } as const;
/** Router advertisement fields after the ICMPv6 type, code and checksum. */
export const RA = { HOP_LIMIT: 4, FLAGS: 5, LIFETIME: 6, REACHABLE: 8, RETRANS: 12, OPTIONS: 16 } as const;
/** A router solicitation's options start after 4 reserved bytes. */
export const RS_OPTIONS = 8;

export const NdOption = {
  SOURCE_LL: 1,
  TARGET_LL: 2,
  PREFIX: 3,
  MTU: 5,
  RDNSS: 25,
  DNSSL: 31,
  PREF64: 38,
} as const;

/** RA flags: managed address configuration and other configuration (RFC 4861 4.2). */
export const RaFlag = { MANAGED: 0x80, OTHER: 0x40 } as const;
/** Prefix information flags: on-link and autonomous address configuration. */
export const PrefixFlag = { ON_LINK: 0x80, AUTONOMOUS: 0x40 } as const;
/** Neighbor advertisement flags, in the first byte after the checksum. */
export const NaFlag = { ROUTER: 0x80, SOLICITED: 0x40, OVERRIDE: 0x20 } as const;

/**
 * Checks the options of an ND message from `at` to `end` (RFC 4861 4.6: every option at least 8 bytes,
 * none with length 0, none past the end). Returns the offset of the link-layer address option of `type`
 * (its MAC 2 bytes in), 0 when there is none, or -1 when the options are malformed.
 */
export function findLinkLayerOption(dv: DataView, at: number, end: number, type: number): number {
  let found = 0;
  while (at < end) {
    if (at + 2 > end) return -1;
    const len = dv.getUint8(at + 1) << 3;
    if (len === 0 || at + len > end) return -1;
    if (dv.getUint8(at) === type && len >= 8) found = at + 2;
    at += len;
  }
  return found;
}
