/*
 * DNS64 (RFC 6147) for the gateway's DNS forwarder on networks with NAT64: a VM asking AAAA for a name that
 * has only A records gets AAAAs in the NAT64 prefix, PREFIX::a.b.c.d (RFC 6052 2.2, a /96).
 *
 * Theory of operation
 * - A AAAA query goes upstream first. An answer with AAAA records for the name (at the end of its CNAME
 *   chain) goes back as it came; AAAAs in ::ffff:0:0/96 do not count and are left out (5.1.4). NXDOMAIN and
 *   truncated answers go back as they came too (5.1.2). Otherwise (NODATA, and any other RCODE, which 5.1.2
 *   treats as NODATA) the same name is asked A, and each A record becomes an AAAA, the CNAME chain kept.
 *   When nothing can be synthesized, the AAAA answer goes back as it came. Synthesized and real AAAAs are
 *   never mixed.
 * - The synthesized TTL is the A record's, capped by the negative TTL of the AAAA answer's SOA, or 600 s
 *   without one (5.1.7).
 * - With the well-known prefix 64:ff9b::/96, non-global IPv4 (the special-purpose registry) is not
 *   synthesized: RFC 6052 3.1 forbids that prefix for them.
 * - A query with both DO and CD set comes from a validating client, which synthesizes itself: it is
 *   forwarded untouched (5.5).
 * - ipv4only.arpa (RFC 7050, RFC 8880 7.2) is answered here, never upstream: AAAA gives PREFIX::192.0.0.170
 *   and PREFIX::192.0.0.171, A gives the two IPv4 addresses. The TTL is short because the prefix follows
 *   softnet's configuration, which a restart may change.
 * - A PTR query for the ip6.arpa name of an address in the prefix is answered by asking the in-addr.arpa
 *   name of the embedded IPv4 and returning its records under the asked name (5.3.1's first choice, rather
 *   than a CNAME: a stub that cannot chase a CNAME in a PTR answer still gets the name).
 * - Every other query is forwarded untouched. Answers built here are truncated to the client's UDP size
 *   (512 bytes, or its EDNS size), header and question kept and TC set, so the client retries over TCP.
 */

import { Verdict } from '../policy/rules.js';
import { specialPurposeTable } from '../policy/special.js';
import {
  buildDns,
  DnsClass,
  DnsFlag,
  type DnsMessage,
  type DnsName,
  type DnsRecord,
  DnsType,
  EDNS_DO,
  encodeName,
  labelsOf,
  OPCODE_MASK,
  opcodeOf,
  optOf,
  parseDns,
  Rcode,
  rcodeOf,
  sameName,
  withRcode,
} from '../wire/dns.js';

/** 64:ff9b::/96 (RFC 6052 2.1), its first 12 bytes. */
export const WELL_KNOWN_PREFIX = Uint8Array.of(0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0);
export const NAT64_PREFIX_LEN = 12;
/** The DNS message limit over UDP without EDNS (RFC 1035 4.2.1). */
export const UDP_MIN_SIZE = 512;
/** The largest DNS message over TCP. */
export const TCP_MAX_SIZE = 0xffff;
/** The UDP size softnet offers in the OPT record of answers it builds (the DNS flag day 2020 value). */
const EDNS_SIZE = 1232;
const IPV4ONLY_TTL = 300;
/** The TTL cap when the AAAA answer brings no SOA (RFC 6147 5.1.7). */
const NO_SOA_TTL = 600;
/** CNAMEs followed in one answer; more is a loop. */
const MAX_CHAIN = 16;
const RRSIG = 46;

const IPV4ONLY = encodeName('ipv4only.arpa')!;
/** The well-known IPv4 addresses of ipv4only.arpa (RFC 7050 2.2). */
const IPV4ONLY_ADDRS = [Uint8Array.of(192, 0, 0, 170), Uint8Array.of(192, 0, 0, 171)];
const SPECIAL = specialPurposeTable();

/** Sends a query upstream; resolves to the answer, with the id the query had, or null when none came. */
export type Ask = (query: Uint8Array) => Promise<Uint8Array | null>;

/** The 12 bytes of a NAT64 /96 from its first three 32-bit words (signed or not). */
export function prefixFromWords(words: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(NAT64_PREFIX_LEN);
  const view = new DataView(out.buffer);
  for (let i = 0; i < 3; i++) view.setUint32(i * 4, words[i] >>> 0);
  return out;
}

/**
 * The answer to the VM's query `raw` through DNS64 with `prefix` (12 bytes), asking upstream with `ask`;
 * null when upstream never answered. `udp`: the answer must fit the client's UDP size.
 */
export async function answer64(
  raw: Uint8Array,
  prefix: Uint8Array,
  ask: Ask,
  udp: boolean,
): Promise<Uint8Array | null> {
  const query = parseDns(raw);
  if (!query || query.flags & DnsFlag.QR || opcodeOf(query) !== 0 || query.questions.length !== 1)
    return ask(raw);
  const q = query.questions[0];
  if (q.class !== DnsClass.IN) return ask(raw);
  const limit = udp ? udpLimit(query) : TCP_MAX_SIZE;
  const local = ipv4onlyAnswer(query, prefix);
  if (local) return fit(local, limit);
  if (validating(query)) return ask(raw);
  if (q.type === DnsType.AAAA) return aaaa(raw, query, prefix, ask, limit);
  const target = q.type === DnsType.PTR ? ptrTarget(q.name, prefix) : null;
  if (target) return ptr(query, target, ask, limit);
  return ask(raw);
}

/** The AAAA rules of RFC 6147 5.1: the upstream AAAA answer when it has a usable AAAA, else a synthesis. */
async function aaaa(
  raw: Uint8Array,
  query: DnsMessage,
  prefix: Uint8Array,
  ask: Ask,
  limit: number,
): Promise<Uint8Array | null> {
  const q = query.questions[0];
  const first = await ask(raw);
  if (!first) return null;
  const got = parseDns(first);
  if (!got || got.flags & DnsFlag.TC || rcodeOf(got) === Rcode.NXDOMAIN) return first;
  if (rcodeOf(got) === Rcode.NOERROR) {
    const end = chainEnd(q.name, got.answers);
    const own = got.answers.filter((r) => isAaaa(r) && sameName(r.name, end));
    const mapped = own.filter((r) => isMapped(r.data));
    if (own.length > mapped.length) {
      if (mapped.length === 0) return first;
      return fit({ ...got, answers: got.answers.filter((r) => !mapped.includes(r)) }, limit);
    }
  }
  const second = await ask(buildDns({ ...query, questions: [{ ...q, type: DnsType.A }] }));
  const a = second && parseDns(second);
  if (!a || !asked(a, q.name, DnsType.A)) return first;
  const synth = synthesize(query, a, prefix, got);
  return synth.answers.some(isAaaa) ? fit(synth, limit) : first;
}

/**
 * The AAAA response to `query` synthesized from `aAnswer`, the upstream's answer to the A query of the same
 * name: the CNAME chain (and DNAMEs) kept, each A of the chain's last name as PREFIX::a.b.c.d, with the
 * query's id and question and the A answer's RCODE. `aaaaAnswer`, the negative AAAA answer, caps the TTL.
 */
export function synthesize(
  query: DnsMessage,
  aAnswer: DnsMessage,
  prefix: Uint8Array,
  aaaaAnswer?: DnsMessage,
): DnsMessage {
  const q = query.questions[0];
  const chain = cnameChain(q.name, aAnswer.answers);
  const end = chain.length > 0 ? chain[chain.length - 1].data : q.name;
  const cap = aaaaAnswer ? negativeTtl(aaaaAnswer) : Number.POSITIVE_INFINITY;
  const wellKnown = sameBytes(prefix, WELL_KNOWN_PREFIX);
  const synthesized: DnsRecord[] = [];
  for (const r of aAnswer.answers) {
    if (r.type !== DnsType.A || r.class !== DnsClass.IN || r.data.length !== 4 || !sameName(r.name, end))
      continue;
    if (wellKnown && !isGlobal(r.data)) continue;
    synthesized.push({ ...r, type: DnsType.AAAA, ttl: Math.min(r.ttl, cap), data: embed(prefix, r.data) });
  }
  const dnames = aAnswer.answers.filter((r) => r.type === DnsType.DNAME);
  return {
    id: query.id,
    flags: withRcode(responseFlags(query, aAnswer), rcodeOf(aAnswer)),
    questions: [q],
    answers: [...dnames, ...chain, ...synthesized],
    authority: [],
    additional: ednsOf(aAnswer),
  };
}

/** The local answer to an A or AAAA query for ipv4only.arpa, or null for any other query. */
export function ipv4onlyAnswer(query: DnsMessage, prefix: Uint8Array): DnsMessage | null {
  const q = query.questions[0];
  if (!q || q.class !== DnsClass.IN || !sameName(q.name, IPV4ONLY)) return null;
  if (q.type !== DnsType.A && q.type !== DnsType.AAAA) return null;
  const answers = IPV4ONLY_ADDRS.map((v4) => ({
    name: q.name,
    type: q.type,
    class: DnsClass.IN,
    ttl: IPV4ONLY_TTL,
    data: q.type === DnsType.A ? v4 : embed(prefix, v4),
  }));
  const opt: DnsRecord[] = optOf(query)
    ? [{ name: Uint8Array.of(0), type: DnsType.OPT, class: EDNS_SIZE, ttl: 0, data: new Uint8Array(0) }]
    : [];
  return {
    id: query.id,
    flags: responseFlags(query, null) | DnsFlag.RA,
    questions: [q],
    answers,
    authority: [],
    additional: opt,
  };
}

/** The in-addr.arpa name of the IPv4 embedded in `name` when it is the ip6.arpa name of an address in `prefix`. */
export function ptrTarget(name: DnsName, prefix: Uint8Array): DnsName | null {
  const labels = labelsOf(name);
  if (labels.length !== 34 || !isText(labels[32], 'ip6') || !isText(labels[33], 'arpa')) return null;
  const nibbles: number[] = [];
  for (let i = 31; i >= 0; i--) {
    const l = labels[i];
    const n = l.length === 1 ? Number.parseInt(String.fromCharCode(l[0]), 16) : Number.NaN;
    if (Number.isNaN(n)) return null;
    nibbles.push(n);
  }
  const addr = Uint8Array.from({ length: 16 }, (_, k) => (nibbles[2 * k] << 4) | nibbles[2 * k + 1]);
  if (!sameBytes(addr.subarray(0, NAT64_PREFIX_LEN), prefix)) return null;
  return encodeName(`${addr[15]}.${addr[14]}.${addr[13]}.${addr[12]}.in-addr.arpa`);
}

/** Asks the in-addr.arpa name and answers with its records under the ip6.arpa name asked (RFC 6147 5.3.1). */
async function ptr(query: DnsMessage, target: DnsName, ask: Ask, limit: number): Promise<Uint8Array | null> {
  const q = query.questions[0];
  const got = await ask(buildDns({ ...query, questions: [{ ...q, name: target }] }));
  if (!got) return null;
  const p = parseDns(got);
  const ok = p !== null && asked(p, target, DnsType.PTR);
  return fit(
    {
      id: query.id,
      flags: ok
        ? withRcode(responseFlags(query, p), rcodeOf(p))
        : withRcode(responseFlags(query, null), Rcode.SERVFAIL),
      questions: [q],
      answers: ok
        ? p.answers
            .filter((r) => r.type !== RRSIG)
            .map((r) => (sameName(r.name, target) ? { ...r, name: q.name } : r))
        : [],
      authority: [],
      additional: ok ? ednsOf(p) : [],
    },
    limit,
  );
}

/** The client's UDP size: 512, or the larger size its EDNS OPT record offers. */
export function udpLimit(query: DnsMessage): number {
  const opt = optOf(query);
  return opt ? Math.max(UDP_MIN_SIZE, opt.class) : UDP_MIN_SIZE;
}

/** `m` in wire form, or when longer than `limit` its header, question and OPT with TC set. */
export function fit(m: DnsMessage, limit: number): Uint8Array {
  const out = buildDns(m);
  if (out.length <= limit) return out;
  const opt = m.additional.filter((r) => r.type === DnsType.OPT);
  return buildDns({ ...m, flags: m.flags | DnsFlag.TC, answers: [], authority: [], additional: opt });
}

/**
 * The header flags of an answer to `query`: QR, the query's opcode, RD and CD, and from the upstream answer
 * RA and TC. AA and AD are never set: a synthesized record is neither authoritative nor validated.
 */
function responseFlags(query: DnsMessage, upstream: DnsMessage | null): number {
  const mine = query.flags & (OPCODE_MASK | DnsFlag.RD | DnsFlag.CD);
  return DnsFlag.QR | mine | (upstream ? upstream.flags & (DnsFlag.RA | DnsFlag.TC) : 0);
}

/** Whether the client validates DNSSEC itself (DO and CD both set), so must see the real answer. */
function validating(query: DnsMessage): boolean {
  const opt = optOf(query);
  return opt !== null && (opt.ttl & EDNS_DO) !== 0 && (query.flags & DnsFlag.CD) !== 0;
}

/** Whether the answer is to the question `name`, `type`. */
function asked(m: DnsMessage, name: DnsName, type: number): boolean {
  return m.questions.length === 1 && m.questions[0].type === type && sameName(m.questions[0].name, name);
}

/** The CNAME records leading from `name` through `records`, in order. */
function cnameChain(name: DnsName, records: DnsRecord[]): DnsRecord[] {
  const chain: DnsRecord[] = [];
  let at = name;
  for (let i = 0; i < MAX_CHAIN; i++) {
    const c = records.find((r) => r.type === DnsType.CNAME && sameName(r.name, at));
    if (!c) break;
    chain.push(c);
    at = c.data;
  }
  return chain;
}

/** The name the CNAME chain from `name` ends at. */
function chainEnd(name: DnsName, records: DnsRecord[]): DnsName {
  const chain = cnameChain(name, records);
  return chain.length > 0 ? chain[chain.length - 1].data : name;
}

/** The negative TTL of an answer: its SOA's TTL capped by the SOA's minimum (RFC 2308 5), or 600 s. */
function negativeTtl(m: DnsMessage): number {
  const soa = m.authority.find((r) => r.type === DnsType.SOA && r.data.length >= 22);
  if (!soa) return NO_SOA_TTL;
  const minimum = new DataView(soa.data.buffer, soa.data.byteOffset).getUint32(soa.data.length - 4);
  return Math.min(soa.ttl, minimum);
}

/** The upstream answer's OPT record, to be carried into an answer built from it. */
function ednsOf(m: DnsMessage): DnsRecord[] {
  const opt = optOf(m);
  return opt ? [opt] : [];
}

function isAaaa(r: DnsRecord): boolean {
  return r.type === DnsType.AAAA && r.class === DnsClass.IN && r.data.length === 16;
}

/** Whether a 16-byte address is IPv4-mapped, ::ffff:0:0/96 (excluded by RFC 6147 5.1.4). */
function isMapped(a: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

/** Whether an IPv4 address is not in the special-purpose registry's non-global ranges. */
function isGlobal(v4: Uint8Array): boolean {
  const addr = (v4[0] << 24) | (v4[1] << 16) | (v4[2] << 8) | v4[3] | 0;
  return SPECIAL.lookup(addr) !== Verdict.BLOCK;
}

/** PREFIX::a.b.c.d. */
function embed(prefix: Uint8Array, v4: Uint8Array): Uint8Array {
  const out = new Uint8Array(16);
  out.set(prefix.subarray(0, NAT64_PREFIX_LEN));
  out.set(v4, NAT64_PREFIX_LEN);
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Whether a label is `text` (lower-case ASCII), case aside. */
function isText(label: Uint8Array, text: string): boolean {
  return (
    label.length === text.length &&
    label.every((b, i) => (b >= 0x41 && b <= 0x5a ? b | 0x20 : b) === text.charCodeAt(i))
  );
}
