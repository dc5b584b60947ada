// DHCPv6 messages (RFC 8415): message types, option codes, a parser of client messages that records what
// softnet's server acts on, and a writer of the options it sends. DHCPv6 is not on the hot path, yet the
// parser refills one reusable Dhcp6Message and the writer puts bytes straight into the arena, so a message
// costs no allocation.

import { Drop } from '../stats/drops.js';

/** Message type and 3-byte transaction id (RFC 8415 8). */
export const DHCP6_HEADER_LEN = 4;
export const DHCP6_CLIENT_PORT = 546;
export const DHCP6_SERVER_PORT = 547;

export const Dhcp6Type = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  CONFIRM: 4,
  RENEW: 5,
  REBIND: 6,
  REPLY: 7,
  RELEASE: 8,
  DECLINE: 9,
  RECONFIGURE: 10,
  INFORMATION_REQUEST: 11,
  RELAY_FORW: 12,
  RELAY_REPL: 13,
} as const;

export const Dhcp6Option = {
  CLIENTID: 1,
  SERVERID: 2,
  IA_NA: 3,
  IA_TA: 4,
  IAADDR: 5,
  ORO: 6,
  PREFERENCE: 7,
  ELAPSED_TIME: 8,
  STATUS_CODE: 13,
  RAPID_COMMIT: 14,
  RECONF_ACCEPT: 20,
  DNS_SERVERS: 23,
  DOMAIN_LIST: 24,
  IA_PD: 25,
  IAPREFIX: 26,
  INFORMATION_REFRESH_TIME: 32,
  FQDN: 39,
  SOL_MAX_RT: 82,
} as const;

export const Dhcp6Status = {
  SUCCESS: 0,
  UNSPEC_FAIL: 1,
  NO_ADDRS_AVAIL: 2,
  NO_BINDING: 3,
  NOT_ON_LINK: 4,
  USE_MULTICAST: 5,
  NO_PREFIX_AVAIL: 6,
} as const;

export const DuidType = { LLT: 1, EN: 2, LL: 3, UUID: 4 } as const;

/** A DUID is a 2-byte type and 1 to 128 bytes of identifier (RFC 8415 11.1). */
export const DUID_MIN_LEN = 3;
export const DUID_MAX_LEN = 130;
/** More options than this in one message, nested ones included, is an attack, not a client. */
export const MAX_OPTIONS = 64;
/** IAs one message may carry: real clients send one IA_NA and perhaps one IA_PD. */
export const MAX_IAS = 8;
/** Addresses (IAADDR options in IA_NA and IA_TA) one message may carry. */
export const MAX_ADDRS = 16;

/** The fixed fields before an IA's options: IAID, T1, T2 (IA_NA, IA_PD) or IAID alone (IA_TA). */
export const IA_NA_LEN = 12;
export const IA_TA_LEN = 4;
/** An IAADDR's address, preferred and valid lifetimes, before its own options. */
export const IAADDR_LEN = 24;
/** An IAPREFIX's lifetimes, prefix length and prefix. */
export const IAPREFIX_LEN = 25;
/** Preference (RFC 8415 18.2.9): 255 makes the client request at once instead of waiting for others. */
export const MAX_PREFERENCE = 255;
/** "Infinity" for lifetimes, T1 and T2 (RFC 8415 7.7). */
export const INFINITY = 0xffffffff;

const read16 = (u8: Uint8Array, at: number) => (u8[at] << 8) | u8[at + 1];
const read32 = (u8: Uint8Array, at: number) =>
  (u8[at] << 24) | (u8[at + 1] << 16) | (u8[at + 2] << 8) | u8[at + 3];

/** What the server acts on in a client message; one instance is refilled by every parse. */
export class Dhcp6Message {
  type = 0;
  xid = 0;
  /** Where the client's DUID starts in the parsed array, -1 when absent. */
  clientId = -1;
  clientIdLen = 0;
  /** Where the server DUID the client names starts, -1 when absent. */
  serverId = -1;
  serverIdLen = 0;
  rapidCommit = false;
  /** Options seen so far, nested ones included. */
  options = 0;
  iaCount = 0;
  /** Per IA: its option code (IA_NA, IA_TA, IA_PD), IAID, first address index and address count. */
  readonly iaKind = new Uint16Array(MAX_IAS);
  readonly iaId = new Uint32Array(MAX_IAS);
  readonly iaFirstAddr = new Uint8Array(MAX_IAS);
  readonly iaAddrCount = new Uint8Array(MAX_IAS);
  addrCount = 0;
  /** The addresses of IAADDR options, four words each, signed like every address word. */
  readonly addrs = new Int32Array(MAX_ADDRS * 4);

  /** Forgets the previous message. */
  reset(): void {
    this.type = 0;
    this.xid = 0;
    this.clientId = -1;
    this.clientIdLen = 0;
    this.serverId = -1;
    this.serverIdLen = 0;
    this.rapidCommit = false;
    this.options = 0;
    this.iaCount = 0;
    this.addrCount = 0;
  }
}

/** Records a top-level option; returns Drop.NONE or why the message is refused. */
function topLevel(u8: Uint8Array, code: number, body: number, len: number, m: Dhcp6Message): number {
  switch (code) {
    case Dhcp6Option.CLIENTID:
      if (m.clientId >= 0 || len < DUID_MIN_LEN || len > DUID_MAX_LEN) return Drop.DHCP6_MALFORMED;
      m.clientId = body;
      m.clientIdLen = len;
      return Drop.NONE;
    case Dhcp6Option.SERVERID:
      if (m.serverId >= 0 || len < DUID_MIN_LEN || len > DUID_MAX_LEN) return Drop.DHCP6_MALFORMED;
      m.serverId = body;
      m.serverIdLen = len;
      return Drop.NONE;
    case Dhcp6Option.RAPID_COMMIT:
      m.rapidCommit = true;
      return Drop.NONE;
    case Dhcp6Option.IA_NA:
    case Dhcp6Option.IA_TA:
    case Dhcp6Option.IA_PD: {
      const fixed = code === Dhcp6Option.IA_TA ? IA_TA_LEN : IA_NA_LEN;
      if (len < fixed || m.iaCount === MAX_IAS) return Drop.DHCP6_MALFORMED;
      const ia = m.iaCount++;
      m.iaKind[ia] = code;
      m.iaId[ia] = read32(u8, body);
      m.iaFirstAddr[ia] = m.addrCount;
      m.iaAddrCount[ia] = 0;
      return walk(u8, body + fixed, body + len, m, ia);
    }
    default:
      return Drop.NONE;
  }
}

/** Records an option inside IA number `ia`; IAs nested in IAs are not a thing and are skipped. */
function inIa(u8: Uint8Array, code: number, body: number, len: number, m: Dhcp6Message, ia: number): number {
  const kind = m.iaKind[ia];
  if (code === Dhcp6Option.IAPREFIX && kind === Dhcp6Option.IA_PD) {
    return len < IAPREFIX_LEN ? Drop.DHCP6_MALFORMED : Drop.NONE;
  }
  if (code !== Dhcp6Option.IAADDR || kind === Dhcp6Option.IA_PD) return Drop.NONE;
  if (len < IAADDR_LEN || m.addrCount === MAX_ADDRS) return Drop.DHCP6_MALFORMED;
  const w = m.addrCount++ * 4;
  for (let i = 0; i < 4; i++) m.addrs[w + i] = read32(u8, body + 4 * i);
  m.iaAddrCount[ia]++;
  return Drop.NONE;
}

/** Walks the options in u8[at, end), top-level when `ia` is -1; returns Drop.NONE or a reason. */
function walk(u8: Uint8Array, at: number, end: number, m: Dhcp6Message, ia: number): number {
  while (at < end) {
    if (end - at < 4) return Drop.DHCP6_MALFORMED;
    const code = read16(u8, at);
    const len = read16(u8, at + 2);
    const body = at + 4;
    if (len > end - body || ++m.options > MAX_OPTIONS) return Drop.DHCP6_MALFORMED;
    const r = ia < 0 ? topLevel(u8, code, body, len, m) : inIa(u8, code, body, len, m, ia);
    if (r !== Drop.NONE) return r;
    at = body + len;
  }
  return Drop.NONE;
}

/**
 * Parses the client message in u8[off, off+len) (a UDP payload, not a relay message) into `m`; returns
 * Drop.NONE, or Drop.DHCP6_MALFORMED for a short header, an option past the end, a repeated or misfit
 * DUID, a short IA or IAADDR, or too many options, IAs or addresses. Never throws.
 */
export function parseDhcp6(u8: Uint8Array, off: number, len: number, m: Dhcp6Message): number {
  m.reset();
  if (len < DHCP6_HEADER_LEN || off < 0 || off + len > u8.length) return Drop.DHCP6_MALFORMED;
  m.type = u8[off];
  m.xid = (u8[off + 1] << 16) | (u8[off + 2] << 8) | u8[off + 3];
  return walk(u8, off + DHCP6_HEADER_LEN, off + len, m, -1);
}

/** DUID-LL (RFC 8415 11.4) of an Ethernet MAC: type 3, hardware type 1, the MAC. */
export function duidLl(mac: Uint8Array): Uint8Array {
  const d = new Uint8Array(4 + 6);
  d[1] = DuidType.LL;
  d[3] = 1;
  d.set(mac.subarray(0, 6), 4);
  return d;
}

/**
 * A search domain in DNS wire format (RFC 1035 3.1) for DOMAIN_LIST (RFC 3646): length-prefixed labels and
 * a zero byte; null when it is not a valid name (an empty or 64-byte label, over 255 bytes).
 */
export function encodeDomain(name: string): Uint8Array | null {
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  if (bare === '') return null;
  const enc = new TextEncoder();
  const labels = bare.split('.').map((l) => enc.encode(l));
  const len = labels.reduce((n, l) => n + 1 + l.length, 1);
  if (len > 255 || labels.some((l) => l.length === 0 || l.length > 63)) return null;
  const out = new Uint8Array(len);
  let at = 0;
  for (const l of labels) {
    out[at] = l.length;
    out.set(l, at + 1);
    at += 1 + l.length;
  }
  return out;
}

/**
 * Writes one message into an array: a header, then options whose lengths are patched when they close.
 * Nothing is written at or past the bound given to begin(); a write that would cross it marks the message
 * overflowed instead, and length() then says so.
 */
export class Dhcp6Writer {
  private u8: Uint8Array = new Uint8Array(0);
  private start = 0;
  private end = 0;
  private at = 0;
  private overflow = false;

  /** Starts a message of `type` and transaction id `xid` at u8[at], to end before u8[end]. */
  begin(u8: Uint8Array, at: number, end: number, type: number, xid: number): void {
    this.u8 = u8;
    this.start = at;
    this.end = Math.min(end, u8.length);
    this.at = at;
    this.overflow = false;
    if (this.room(DHCP6_HEADER_LEN)) {
      u8[this.at++] = type;
      this.put24(xid);
    }
  }

  /** The message's length so far, or -1 when it overflowed its bound. */
  length(): number {
    return this.overflow ? -1 : this.at - this.start;
  }

  /** Opens option `code`; returns its position for close(), -1 when it does not fit. */
  open(code: number): number {
    if (!this.room(4)) return -1;
    const hdr = this.at;
    this.put16(code);
    this.put16(0);
    return hdr;
  }

  /** Closes the option open() returned `hdr` for: its length is whatever was written since. */
  close(hdr: number): void {
    if (hdr < 0 || this.overflow) return;
    const len = this.at - hdr - 4;
    this.u8[hdr + 2] = len >>> 8;
    this.u8[hdr + 3] = len & 0xff;
  }

  /** An option holding `len` bytes copied from src[from...]; src may be the array written to. */
  bytes(code: number, src: Uint8Array, from: number, len: number): void {
    if (!this.room(4 + len)) return;
    this.put16(code);
    this.put16(len);
    for (let i = 0; i < len; i++) this.u8[this.at + i] = src[from + i];
    this.at += len;
  }

  /** An option without data (Rapid Commit). */
  empty(code: number): void {
    if (this.room(4)) this.header(code, 0);
  }

  /** An option holding one byte (Preference). */
  u8Option(code: number, v: number): void {
    if (!this.room(5)) return;
    this.header(code, 1);
    this.u8[this.at++] = v;
  }

  /** An option holding a 32-bit number (Information Refresh Time). */
  u32Option(code: number, v: number): void {
    if (!this.room(8)) return;
    this.header(code, 4);
    this.put32(v);
  }

  /** An option holding the first `count` addresses of `words` (four words each): DNS_SERVERS. */
  addresses(code: number, words: ArrayLike<number>, count: number): void {
    if (!this.room(4 + 16 * count)) return;
    this.header(code, 16 * count);
    for (let i = 0; i < 4 * count; i++) this.put32(words[i]);
  }

  /** A Status Code option without a message. */
  status(code: number): void {
    if (!this.room(6)) return;
    this.header(Dhcp6Option.STATUS_CODE, 2);
    this.put16(code);
  }

  /** Opens an IA_NA or IA_PD (with T1, T2) or an IA_TA (without); returns its position for close(). */
  ia(kind: number, iaid: number, t1: number, t2: number): number {
    const ta = kind === Dhcp6Option.IA_TA;
    if (!this.room(4 + (ta ? IA_TA_LEN : IA_NA_LEN))) return -1;
    const hdr = this.open(kind);
    this.put32(iaid);
    if (!ta) {
      this.put32(t1);
      this.put32(t2);
    }
    return hdr;
  }

  /** An IAADDR option for the address in words w0..w3, without options of its own. */
  iaAddr(w0: number, w1: number, w2: number, w3: number, preferred: number, valid: number): void {
    if (!this.room(4 + IAADDR_LEN)) return;
    this.header(Dhcp6Option.IAADDR, IAADDR_LEN);
    this.put32(w0);
    this.put32(w1);
    this.put32(w2);
    this.put32(w3);
    this.put32(preferred);
    this.put32(valid);
  }

  private room(n: number): boolean {
    if (!this.overflow && this.at + n <= this.end) return true;
    this.overflow = true;
    return false;
  }

  private header(code: number, len: number): void {
    this.put16(code);
    this.put16(len);
  }

  private put16(v: number): void {
    this.u8[this.at] = v >>> 8;
    this.u8[this.at + 1] = v;
    this.at += 2;
  }

  private put24(v: number): void {
    this.u8[this.at] = v >>> 16;
    this.u8[this.at + 1] = v >>> 8;
    this.u8[this.at + 2] = v;
    this.at += 3;
  }

  private put32(v: number): void {
    this.u8[this.at] = v >>> 24;
    this.u8[this.at + 1] = v >>> 16;
    this.u8[this.at + 2] = v >>> 8;
    this.u8[this.at + 3] = v;
    this.at += 4;
  }
}
