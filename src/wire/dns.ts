// DNS messages (RFC 1035 4, EDNS RFC 6891): a parser that follows name compression and bounds-checks every
// read, and a builder that writes names uncompressed. DNS is not on the hot path: a parsed message is a
// plain object, names are kept in their (decompressed) wire form so that any label round-trips exactly.

export const DNS_HEADER_LEN = 12;
/** The largest name in wire form, its terminating root label included (RFC 1035 3.1). */
export const MAX_NAME_LEN = 255;
const MAX_LABEL_LEN = 63;
/** Compression pointers followed in one name; real messages need a handful. */
const MAX_POINTERS = 64;

export const DnsType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  AAAA: 28,
  DNAME: 39,
  OPT: 41,
} as const;

export const DnsClass = { IN: 1 } as const;

export const Rcode = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

/** Bits of the header's second 16-bit word; the opcode sits in bits 11-14 and the RCODE in bits 0-3. */
export const DnsFlag = {
  QR: 0x8000,
  AA: 0x0400,
  TC: 0x0200,
  RD: 0x0100,
  RA: 0x0080,
  AD: 0x0020,
  CD: 0x0010,
} as const;
export const OPCODE_MASK = 0x7800;
const RCODE_MASK = 0x000f;
/** EDNS's DO bit (RFC 3225), in the OPT record's TTL field. */
export const EDNS_DO = 0x8000;

/** A name in uncompressed wire form: length-prefixed labels ending with the empty root label. */
export type DnsName = Uint8Array;

export interface DnsQuestion {
  name: DnsName;
  type: number;
  class: number;
}

/** A resource record; names inside the data of the types in NAME_DATA are stored decompressed. */
export interface DnsRecord {
  name: DnsName;
  type: number;
  class: number;
  ttl: number;
  data: Uint8Array;
}

export interface DnsMessage {
  id: number;
  /** QR, opcode, AA, TC, RD, RA, Z, AD, CD and RCODE, as the header carries them. */
  flags: number;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authority: DnsRecord[];
  additional: DnsRecord[];
}

/**
 * Record types whose data holds names that may be compressed (RFC 3597 4): the bytes before the first name,
 * the number of names, the bytes after the last. Their data is rewritten decompressed, so a record can be
 * copied into another message.
 */
const NAME_DATA = new Map<number, readonly [number, number, number]>([
  [DnsType.NS, [0, 1, 0]],
  [DnsType.CNAME, [0, 1, 0]],
  [DnsType.PTR, [0, 1, 0]],
  [DnsType.DNAME, [0, 1, 0]],
  [DnsType.MX, [2, 1, 0]],
  [DnsType.SOA, [0, 2, 20]],
]);

/** The message's opcode (0: a standard query). */
export function opcodeOf(m: DnsMessage): number {
  return (m.flags & OPCODE_MASK) >>> 11;
}

/** The message's RCODE (the header's four bits; EDNS's extended bits are not consulted). */
export function rcodeOf(m: DnsMessage): number {
  return m.flags & RCODE_MASK;
}

/** `flags` with its RCODE replaced by `rcode`. */
export function withRcode(flags: number, rcode: number): number {
  return (flags & ~RCODE_MASK) | (rcode & RCODE_MASK);
}

/** The message's EDNS OPT record, or null. */
export function optOf(m: DnsMessage): DnsRecord | null {
  return m.additional.find((r) => r.type === DnsType.OPT) ?? null;
}

/** A name read at `at` and the offset just past it where it sits (not where pointers led), or null. */
export function readName(msg: Uint8Array, at: number): { name: DnsName; end: number } | null {
  const out = new Uint8Array(MAX_NAME_LEN);
  let len = 0;
  let pos = at;
  let end = -1;
  let pointers = 0;
  for (;;) {
    if (pos >= msg.length) return null;
    const b = msg[pos];
    if ((b & 0xc0) === 0xc0) {
      if (pos + 1 >= msg.length || ++pointers > MAX_POINTERS) return null;
      const target = ((b & 0x3f) << 8) | msg[pos + 1];
      // Only backwards, to "a prior occurrence" (RFC 1035 4.1.4): with the length bound, no loop survives.
      if (target >= pos) return null;
      if (end < 0) end = pos + 2;
      pos = target;
      continue;
    }
    if (b > MAX_LABEL_LEN) return null; // 0x40 and 0x80: extended and binary labels, long obsolete
    if (len + 1 + b > MAX_NAME_LEN || pos + 1 + b > msg.length) return null;
    out.set(msg.subarray(pos, pos + 1 + b), len);
    len += 1 + b;
    pos += 1 + b;
    if (b === 0) break;
  }
  return { name: out.slice(0, len), end: end < 0 ? pos : end };
}

/** The data of a record of `type` found at msg[at, at+len), names decompressed; null when it is malformed. */
function readData(msg: Uint8Array, at: number, len: number, type: number): Uint8Array | null {
  const layout = NAME_DATA.get(type);
  if (!layout) return msg.slice(at, at + len);
  const [before, names, after] = layout;
  const limit = msg.subarray(0, at + len);
  if (before > len) return null;
  const parts: Uint8Array[] = [msg.subarray(at, at + before)];
  let pos = at + before;
  for (let i = 0; i < names; i++) {
    const n = readName(limit, pos);
    if (!n) return null;
    parts.push(n.name);
    pos = n.end;
  }
  if (pos + after !== at + len) return null;
  parts.push(msg.subarray(pos, pos + after));
  return concat(parts);
}

/** Reads `count` records from `at` into `into`; the offset after them, or -1. */
function readRecords(msg: Uint8Array, view: DataView, at: number, count: number, into: DnsRecord[]): number {
  let pos = at;
  for (let i = 0; i < count; i++) {
    const n = readName(msg, pos);
    if (!n || n.end + 10 > msg.length) return -1;
    pos = n.end;
    const type = view.getUint16(pos);
    const cls = view.getUint16(pos + 2);
    const ttl = view.getUint32(pos + 4);
    const len = view.getUint16(pos + 8);
    pos += 10;
    if (pos + len > msg.length) return -1;
    const data = readData(msg, pos, len, type);
    if (!data) return -1;
    into.push({ name: n.name, type, class: cls, ttl, data });
    pos += len;
  }
  return pos;
}

/** Parses a whole message; null when any part of it is malformed or cut short. Never throws. */
export function parseDns(msg: Uint8Array): DnsMessage | null {
  if (msg.length < DNS_HEADER_LEN) return null;
  const view = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const m: DnsMessage = {
    id: view.getUint16(0),
    flags: view.getUint16(2),
    questions: [],
    answers: [],
    authority: [],
    additional: [],
  };
  let pos = DNS_HEADER_LEN;
  const qd = view.getUint16(4);
  for (let i = 0; i < qd; i++) {
    const n = readName(msg, pos);
    if (!n || n.end + 4 > msg.length) return null;
    m.questions.push({ name: n.name, type: view.getUint16(n.end), class: view.getUint16(n.end + 2) });
    pos = n.end + 4;
  }
  pos = readRecords(msg, view, pos, view.getUint16(6), m.answers);
  if (pos >= 0) pos = readRecords(msg, view, pos, view.getUint16(8), m.authority);
  if (pos >= 0) pos = readRecords(msg, view, pos, view.getUint16(10), m.additional);
  return pos < 0 ? null : m;
}

/** The message in wire form, names uncompressed. */
export function buildDns(m: DnsMessage): Uint8Array {
  const records = [...m.answers, ...m.authority, ...m.additional];
  let len = DNS_HEADER_LEN;
  for (const q of m.questions) len += q.name.length + 4;
  for (const r of records) len += r.name.length + 10 + r.data.length;
  const out = new Uint8Array(len);
  const view = new DataView(out.buffer);
  view.setUint16(0, m.id);
  view.setUint16(2, m.flags);
  view.setUint16(4, m.questions.length);
  view.setUint16(6, m.answers.length);
  view.setUint16(8, m.authority.length);
  view.setUint16(10, m.additional.length);
  let pos = DNS_HEADER_LEN;
  for (const q of m.questions) {
    out.set(q.name, pos);
    pos += q.name.length;
    view.setUint16(pos, q.type);
    view.setUint16(pos + 2, q.class);
    pos += 4;
  }
  for (const r of records) {
    out.set(r.name, pos);
    pos += r.name.length;
    view.setUint16(pos, r.type);
    view.setUint16(pos + 2, r.class);
    view.setUint32(pos + 4, r.ttl >>> 0);
    view.setUint16(pos + 8, r.data.length);
    out.set(r.data, pos + 10);
    pos += 10 + r.data.length;
  }
  return out;
}

/** A name in wire form from dotted text ("example.com", "." for the root); null when a label is too long. */
export function encodeName(text: string): DnsName | null {
  const bare = text.endsWith('.') ? text.slice(0, -1) : text;
  const labels = bare === '' ? [] : bare.split('.').map((l) => new TextEncoder().encode(l));
  if (labels.some((l) => l.length === 0 || l.length > MAX_LABEL_LEN)) return null;
  const parts = labels.flatMap((l) => [Uint8Array.of(l.length), l]);
  parts.push(Uint8Array.of(0));
  const out = concat(parts);
  return out.length > MAX_NAME_LEN ? null : out;
}

/** A name as dotted text, with bytes other than printable ASCII (and dots within labels) as \DDD. */
export function nameText(name: DnsName): string {
  const labels: string[] = [];
  for (let pos = 0; pos < name.length && name[pos] !== 0; pos += 1 + name[pos]) {
    let label = '';
    for (const b of name.subarray(pos + 1, pos + 1 + name[pos]))
      label +=
        b > 0x20 && b < 0x7f && b !== 0x2e && b !== 0x5c
          ? String.fromCharCode(b)
          : `\\${String(b).padStart(3, '0')}`;
    labels.push(label);
  }
  return labels.length === 0 ? '.' : labels.join('.');
}

/** Whether two wire-form names are equal, ASCII letters compared without case (RFC 4343). */
export function sameName(a: DnsName, b: DnsName): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (fold(a[i]) !== fold(b[i])) return false;
  return true;
}

/** A byte with ASCII upper case folded to lower case; length bytes (at most 63) are left alone by it. */
function fold(b: number): number {
  return b >= 0x41 && b <= 0x5a ? b | 0x20 : b;
}

/** The labels of a wire-form name, the root left out. */
export function labelsOf(name: DnsName): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let pos = 0; pos < name.length && name[pos] !== 0; pos += 1 + name[pos])
    out.push(name.subarray(pos + 1, pos + 1 + name[pos]));
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}
