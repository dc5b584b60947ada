// DHCP messages (RFC 2131, options RFC 2132, overload RFC 2131 §4.1, long options RFC 3396, classless
// routes RFC 3442). DHCP is not on the hot path: a parsed message is a plain object, built from a copy.

import { Drop } from '../stats/drops.js';

export const BOOTP = {
  OP: 0,
  HTYPE: 1,
  HLEN: 2,
  HOPS: 3,
  XID: 4,
  SECS: 8,
  FLAGS: 10,
  CIADDR: 12,
  YIADDR: 16,
  SIADDR: 20,
  GIADDR: 24,
  CHADDR: 28,
  SNAME: 44,
  FILE: 108,
  COOKIE: 236,
  OPTIONS: 240,
} as const;
const SNAME_LEN = BOOTP.FILE - BOOTP.SNAME;
const FILE_LEN = BOOTP.COOKIE - BOOTP.FILE;
const MAGIC_COOKIE = 0x63825363;
/** BOOTP's minimum message size (RFC 951); replies are padded to it because old clients drop shorter ones. */
export const BOOTP_MIN_LEN = 300;
/** More options than this in one message is an attack, not a client. */
export const MAX_OPTIONS = 512;
export const BROADCAST_FLAG = 0x8000;
/** Client identifier (option 61) type 1 (RFC 2132 9.14): the hardware type of Ethernet, then the MAC. */
export const CLIENT_ID_ETHERNET = 1;

export const DhcpOp = { BOOTREQUEST: 1, BOOTREPLY: 2 } as const;

export const DhcpType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

export const DhcpOption = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  MTU: 26,
  BROADCAST: 28,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAM_REQUEST: 55,
  MESSAGE: 56,
  MAX_SIZE: 57,
  RENEWAL_T1: 58,
  REBINDING_T2: 59,
  CLIENT_ID: 61,
  CLASSLESS_ROUTES: 121,
  END: 255,
} as const;

/** Lengths the options softnet reads must have: [code, min, max]. */
const OPTION_LENGTHS: ReadonlyArray<readonly [number, number, number]> = [
  [DhcpOption.MESSAGE_TYPE, 1, 1],
  [DhcpOption.REQUESTED_IP, 4, 4],
  [DhcpOption.SERVER_ID, 4, 4],
  [DhcpOption.LEASE_TIME, 4, 4],
  [DhcpOption.OVERLOAD, 1, 1],
  [DhcpOption.MAX_SIZE, 2, 2],
  [DhcpOption.PARAM_REQUEST, 1, 255 * 4],
  [DhcpOption.CLIENT_ID, 2, 255 * 4],
  [DhcpOption.HOSTNAME, 1, 255 * 4],
];

/** A parsed DHCP message: the fixed BOOTP fields and the options, repeated options concatenated. */
export interface DhcpMessage {
  op: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  chaddr: Uint8Array;
  type: number;
  options: Map<number, Uint8Array>;
}

/** The result of parsing: a message, or the Drop reason it was refused for. */
export type DhcpParse = { ok: true; msg: DhcpMessage } | { ok: false; reason: number };

const fail = (reason: number): DhcpParse => ({ ok: false, reason });

/** Reads options from u8[at, end) into `parts`; returns the running option count, or a negative Drop reason. */
function readOptions(
  u8: Uint8Array,
  at: number,
  end: number,
  parts: Map<number, Uint8Array[]>,
  count: number,
): number {
  while (at < end) {
    const code = u8[at];
    if (code === DhcpOption.END) return count;
    if (code === DhcpOption.PAD) {
      at++;
      continue;
    }
    if (at + 2 > end || at + 2 + u8[at + 1] > end) return -Drop.DHCP_OPTION_OVERRUN;
    const len = u8[at + 1];
    if (++count > MAX_OPTIONS) return -Drop.DHCP_TOO_MANY_OPTIONS;
    const list = parts.get(code);
    const data = u8.slice(at + 2, at + 2 + len);
    if (list) list.push(data);
    else parts.set(code, [data]);
    at += 2 + len;
  }
  return count;
}

function concat(list: Uint8Array[]): Uint8Array {
  if (list.length === 1) return list[0];
  const out = new Uint8Array(list.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of list) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Parses the DHCP message in u8[off, off+len) (the UDP payload), of operation `op`; never throws. */
export function parseDhcp(
  u8: Uint8Array,
  off: number,
  len: number,
  op: number = DhcpOp.BOOTREQUEST,
): DhcpParse {
  if (len < BOOTP.OPTIONS) return fail(Drop.DHCP_TRUNCATED);
  const dv = new DataView(u8.buffer, u8.byteOffset + off, len);
  if (dv.getUint8(BOOTP.OP) !== op) return fail(Drop.DHCP_BAD_OP);
  if (dv.getUint8(BOOTP.HTYPE) !== 1 || dv.getUint8(BOOTP.HLEN) !== 6) return fail(Drop.DHCP_BAD_HW);
  if (dv.getUint32(BOOTP.COOKIE) !== MAGIC_COOKIE) return fail(Drop.DHCP_BAD_COOKIE);

  const parts = new Map<number, Uint8Array[]>();
  let count = readOptions(u8, off + BOOTP.OPTIONS, off + len, parts, 0);
  if (count < 0) return fail(-count);
  const overload = parts.get(DhcpOption.OVERLOAD);
  if (overload) {
    const v = overload.length === 1 && overload[0].length === 1 ? overload[0][0] : 0;
    if (v < 1 || v > 3) return fail(Drop.DHCP_BAD_OVERLOAD);
    // RFC 2131 §4.1: options continue in `file` (1), `sname` (2) or both (3), file first.
    if (v & 1) count = readOptions(u8, off + BOOTP.FILE, off + BOOTP.FILE + FILE_LEN, parts, count);
    if (count >= 0 && v & 2)
      count = readOptions(u8, off + BOOTP.SNAME, off + BOOTP.SNAME + SNAME_LEN, parts, count);
    if (count < 0) return fail(-count);
    if (parts.get(DhcpOption.OVERLOAD)?.length !== 1) return fail(Drop.DHCP_BAD_OVERLOAD);
  }

  const options = new Map<number, Uint8Array>();
  for (const [code, list] of parts) options.set(code, concat(list));
  for (const [code, min, max] of OPTION_LENGTHS) {
    const v = options.get(code);
    if (v && (v.length < min || v.length > max)) return fail(Drop.DHCP_BAD_OPTION);
  }
  const type = options.get(DhcpOption.MESSAGE_TYPE);
  if (!type) return fail(Drop.DHCP_NO_TYPE);
  return {
    ok: true,
    msg: {
      op,
      xid: dv.getUint32(BOOTP.XID),
      secs: dv.getUint16(BOOTP.SECS),
      flags: dv.getUint16(BOOTP.FLAGS),
      ciaddr: dv.getUint32(BOOTP.CIADDR),
      yiaddr: dv.getUint32(BOOTP.YIADDR),
      siaddr: dv.getUint32(BOOTP.SIADDR),
      giaddr: dv.getUint32(BOOTP.GIADDR),
      chaddr: u8.slice(off + BOOTP.CHADDR, off + BOOTP.CHADDR + 16),
      type: type[0],
      options,
    },
  };
}

/** An option's value read as an IPv4 address, or 0 when absent. */
export function optionAddr(msg: DhcpMessage, code: number): number {
  const v = msg.options.get(code);
  return v && v.length === 4 ? ((v[0] << 24) | (v[1] << 16) | (v[2] << 8) | v[3]) >>> 0 : 0;
}

/** A reply to build: the BOOTP fields that differ from the request, and the options in order. */
export interface DhcpReply {
  /** BOOTREQUEST for a message softnet sends as a client (a bridged VM's release); BOOTREPLY if absent. */
  op?: number;
  xid: number;
  flags: number;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  chaddr: Uint8Array;
  options: Array<readonly [number, Uint8Array]>;
}

/** The length emitDhcp will write for `reply`. */
export function dhcpReplyLen(reply: DhcpReply): number {
  let n = BOOTP.OPTIONS + 1;
  for (const [, data] of reply.options) n += 2 * Math.ceil(data.length / 255 || 1) + data.length;
  return Math.max(n, BOOTP_MIN_LEN);
}

/** Writes the message at u8[off]; options longer than 255 bytes are split (RFC 3396). Returns its length. */
export function emitDhcp(u8: Uint8Array, off: number, reply: DhcpReply): number {
  const len = dhcpReplyLen(reply);
  u8.fill(0, off, off + len);
  const dv = new DataView(u8.buffer, u8.byteOffset + off, len);
  dv.setUint8(BOOTP.OP, reply.op ?? DhcpOp.BOOTREPLY);
  dv.setUint8(BOOTP.HTYPE, 1);
  dv.setUint8(BOOTP.HLEN, 6);
  dv.setUint32(BOOTP.XID, reply.xid);
  dv.setUint16(BOOTP.FLAGS, reply.flags);
  dv.setUint32(BOOTP.CIADDR, reply.ciaddr);
  dv.setUint32(BOOTP.YIADDR, reply.yiaddr);
  dv.setUint32(BOOTP.SIADDR, reply.siaddr);
  u8.set(reply.chaddr.subarray(0, 16), off + BOOTP.CHADDR);
  dv.setUint32(BOOTP.COOKIE, MAGIC_COOKIE);
  let at = off + BOOTP.OPTIONS;
  for (const [code, data] of reply.options) {
    let from = 0;
    do {
      const n = Math.min(255, data.length - from);
      u8[at] = code;
      u8[at + 1] = n;
      u8.set(data.subarray(from, from + n), at + 2);
      at += 2 + n;
      from += n;
    } while (from < data.length);
  }
  u8[at] = DhcpOption.END;
  return len;
}

/** A 4-byte option value holding a 32-bit number (an address or a time). */
export function u32Option(v: number): Uint8Array {
  return Uint8Array.of(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff);
}

/** Option 121 (RFC 3442): each route as its prefix width, the significant octets of its destination, its router. */
export function classlessRoutes(
  routes: ReadonlyArray<{ dest: number; prefix: number; via: number }>,
): Uint8Array {
  const out: number[] = [];
  for (const r of routes) {
    out.push(r.prefix);
    for (let i = 0; i < Math.ceil(r.prefix / 8); i++) out.push((r.dest >>> (24 - 8 * i)) & 0xff);
    out.push(r.via >>> 24, (r.via >>> 16) & 0xff, (r.via >>> 8) & 0xff, r.via & 0xff);
  }
  return Uint8Array.from(out);
}
