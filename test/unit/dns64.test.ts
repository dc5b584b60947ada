// DNS64 (RFC 6147): the AAAA rules against a scripted upstream (own AAAA kept, NODATA and errors
// synthesized, NXDOMAIN kept, mapped AAAAs excluded, CNAME chains, TTLs, truncation), ipv4only.arpa, PTR of
// prefix addresses, the well-known prefix refusing non-global IPv4, garbage; and the forwarder itself on
// loopback with a fake upstream resolver, over UDP and TCP.

import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DnsForwarder, resolversFrom } from '../../src/services/dns.js';
import {
  type Ask,
  answer64,
  ipv4onlyAnswer,
  prefixFromWords,
  ptrTarget,
  synthesize,
  WELL_KNOWN_PREFIX,
} from '../../src/services/dns64.js';
import { Logger } from '../../src/util/log.js';
import { parseIpv6 } from '../../src/wire/addr.js';
import {
  buildDns,
  DnsClass,
  DnsFlag,
  type DnsMessage,
  type DnsRecord,
  DnsType,
  EDNS_DO,
  encodeName,
  nameText,
  parseDns,
  Rcode,
  rcodeOf,
} from '../../src/wire/dns.js';
import { prng } from '../lib/prng.js';

const name = (s: string) => encodeName(s)!;
const v6 = (s: string) => {
  const out = new Uint8Array(16);
  const view = new DataView(out.buffer);
  const words = parseIpv6(s)!;
  for (let i = 0; i < 4; i++) view.setUint32(i * 4, words[i]);
  return out;
};
const v4 = (s: string) => Uint8Array.from(s.split('.').map(Number));
const rr = (owner: string, type: number, data: Uint8Array, ttl = 300): DnsRecord => ({
  name: name(owner),
  type,
  class: DnsClass.IN,
  ttl,
  data,
});
const a = (owner: string, ip: string, ttl = 300) => rr(owner, DnsType.A, v4(ip), ttl);
const aaaa = (owner: string, ip: string, ttl = 300) => rr(owner, DnsType.AAAA, v6(ip), ttl);
const cname = (owner: string, target: string) => rr(owner, DnsType.CNAME, name(target), 3600);
const ptrRr = (owner: string, target: string) => rr(owner, DnsType.PTR, name(target), 3600);
/** An SOA whose TTL and minimum are given (negative caching takes the smaller). */
const soa = (owner: string, ttl: number, minimum: number) => {
  const numbers = new Uint8Array(20);
  new DataView(numbers.buffer).setUint32(16, minimum);
  return rr(owner, DnsType.SOA, Uint8Array.from([...name('ns.x'), ...name('h.x'), ...numbers]), ttl);
};
const edns = (size: number, flags = 0): DnsRecord => ({
  name: Uint8Array.of(0),
  type: DnsType.OPT,
  class: size,
  ttl: flags,
  data: new Uint8Array(0),
});

const TXT = 16;
const NSP = prefixFromWords(Array.from(parseIpv6('2001:db8:64::')!));
const WKP = WELL_KNOWN_PREFIX;

function query(qname: string, type: number, opts: { id?: number; flags?: number; opt?: DnsRecord } = {}) {
  return {
    id: opts.id ?? 0x4242,
    flags: opts.flags ?? DnsFlag.RD,
    questions: [{ name: name(qname), type, class: DnsClass.IN }],
    answers: [],
    authority: [],
    additional: opts.opt ? [opts.opt] : [],
  } satisfies DnsMessage;
}

interface Zone {
  rcode?: number;
  answers?: DnsRecord[];
  authority?: DnsRecord[];
  flags?: number;
}

/** A scripted resolver: answers from `zones` keyed "name/type", records what it was asked. */
class Upstream {
  readonly asked: string[] = [];
  readonly zones = new Map<string, Zone>();
  /** Raw answers as sent, to compare pass-through byte for byte. */
  readonly sent: Uint8Array[] = [];

  set(qname: string, type: number, zone: Zone): this {
    this.zones.set(`${qname}/${type}`, zone);
    return this;
  }

  readonly ask: Ask = async (raw) => {
    const m = parseDns(raw);
    assert.ok(m, 'DNS64 sends well-formed queries');
    const q = m.questions[0];
    const key = `${nameText(q.name).toLowerCase()}/${q.type}`;
    this.asked.push(key);
    const z = this.zones.get(key);
    if (!z) return null;
    const out = buildDns({
      id: m.id,
      flags: (z.flags ?? DnsFlag.QR | DnsFlag.RD | DnsFlag.RA) | (z.rcode ?? 0),
      questions: m.questions,
      answers: z.answers ?? [],
      authority: z.authority ?? [],
      additional: m.additional.filter((r) => r.type === DnsType.OPT),
    });
    this.sent.push(out);
    return out;
  };
}

async function ask64(up: Upstream, q: DnsMessage, prefix = NSP, udp = true): Promise<DnsMessage | null> {
  const out = await answer64(buildDns(q), prefix, up.ask, udp);
  if (!out) return null;
  const m = parseDns(out);
  assert.ok(m, 'the answer parses');
  return m;
}

const addrs = (m: DnsMessage) =>
  m.answers.filter((r) => r.type === DnsType.AAAA).map((r) => Array.from(r.data));

test('NODATA for AAAA: the A records come back as AAAAs in the prefix, id and question kept', async () => {
  const up = new Upstream()
    .set('v4only.test', DnsType.AAAA, { authority: [soa('test', 3600, 3600)] })
    .set('v4only.test', DnsType.A, {
      answers: [a('v4only.test', '203.0.113.7'), a('v4only.test', '10.1.2.3')],
    });
  const m = (await ask64(up, query('V4Only.Test', DnsType.AAAA, { id: 0x1234 })))!;
  assert.deepEqual(up.asked, ['v4only.test/28', 'v4only.test/1']);
  assert.equal(m.id, 0x1234);
  assert.equal(rcodeOf(m), Rcode.NOERROR);
  assert.ok(m.flags & DnsFlag.QR && m.flags & DnsFlag.RD && m.flags & DnsFlag.RA);
  assert.equal(m.flags & (DnsFlag.AA | DnsFlag.AD | DnsFlag.TC), 0);
  assert.equal(nameText(m.questions[0].name), 'V4Only.Test', 'the question as the client spelled it');
  assert.equal(m.questions[0].type, DnsType.AAAA);
  assert.deepEqual(addrs(m), [
    Array.from(v6('2001:db8:64::cb00:7107')),
    Array.from(v6('2001:db8:64::a01:203')),
  ]);
  assert.ok(
    m.answers.every((r) => r.type === DnsType.AAAA && r.ttl === 300 && nameText(r.name) === 'v4only.test'),
  );
});

test('an answer with its own AAAA goes back byte for byte, and A is never asked', async () => {
  const up = new Upstream().set('dual.test', DnsType.AAAA, {
    answers: [aaaa('dual.test', '2001:db8:2::10')],
  });
  const raw = buildDns(query('dual.test', DnsType.AAAA));
  const out = await answer64(raw, NSP, up.ask, true);
  assert.deepEqual(out, up.sent[0]);
  assert.deepEqual(up.asked, ['dual.test/28']);
});

test('a CNAME chain to an A-only name: the chain is kept and the AAAA owned by its last name', async () => {
  const up = new Upstream()
    .set('www.test', DnsType.AAAA, {
      answers: [cname('www.test', 'cdn.test'), cname('cdn.test', 'edge.test')],
    })
    .set('www.test', DnsType.A, {
      answers: [
        cname('www.test', 'cdn.test'),
        cname('cdn.test', 'edge.test'),
        a('edge.test', '192.0.2.9', 60),
      ],
    });
  const m = (await ask64(up, query('www.test', DnsType.AAAA)))!;
  assert.deepEqual(
    m.answers.map((r) => `${nameText(r.name)} ${r.type} ${r.ttl}`),
    ['www.test 5 3600', 'cdn.test 5 3600', 'edge.test 28 60'],
  );
  assert.deepEqual(m.answers[1].data, name('edge.test'));
  assert.deepEqual(addrs(m), [Array.from(v6('2001:db8:64::c000:209'))]);
});

test("an AAAA that belongs to the chain's first name only does not count: it is the end name's that does", async () => {
  const up = new Upstream()
    .set('www.test', DnsType.AAAA, {
      answers: [cname('www.test', 'edge.test'), aaaa('www.test', '2001:db8::1')],
    })
    .set('www.test', DnsType.A, { answers: [cname('www.test', 'edge.test'), a('edge.test', '192.0.2.1')] });
  const m = (await ask64(up, query('www.test', DnsType.AAAA)))!;
  assert.deepEqual(addrs(m), [Array.from(v6('2001:db8:64::c000:201'))]);
});

test('NXDOMAIN goes back as it came; SERVFAIL and REFUSED are treated as NODATA (RFC 6147 5.1.2)', async () => {
  const nx = new Upstream().set('gone.test', DnsType.AAAA, {
    rcode: Rcode.NXDOMAIN,
    authority: [soa('test', 60, 60)],
  });
  const m = (await ask64(nx, query('gone.test', DnsType.AAAA)))!;
  assert.equal(rcodeOf(m), Rcode.NXDOMAIN);
  assert.equal(m.authority.length, 1);
  assert.deepEqual(nx.asked, ['gone.test/28']);
  for (const rcode of [Rcode.SERVFAIL, Rcode.REFUSED]) {
    const up = new Upstream()
      .set('flaky.test', DnsType.AAAA, { rcode })
      .set('flaky.test', DnsType.A, { answers: [a('flaky.test', '198.51.100.1')] });
    const s = (await ask64(up, query('flaky.test', DnsType.AAAA)))!;
    assert.equal(rcodeOf(s), Rcode.NOERROR, `rcode ${rcode}`);
    assert.deepEqual(addrs(s), [Array.from(v6('2001:db8:64::c633:6401'))]);
  }
});

test('when nothing can be synthesized (A NODATA, NXDOMAIN, unanswered), the AAAA answer goes back', async () => {
  for (const zone of [{}, { rcode: Rcode.NXDOMAIN }, null]) {
    const up = new Upstream().set('none.test', DnsType.AAAA, { authority: [soa('test', 30, 30)] });
    if (zone) up.set('none.test', DnsType.A, zone);
    const raw = buildDns(query('none.test', DnsType.AAAA));
    assert.deepEqual(await answer64(raw, NSP, up.ask, true), up.sent[0], JSON.stringify(zone));
    assert.equal(up.asked.length, 2);
  }
  const silent = new Upstream();
  assert.equal(await answer64(buildDns(query('x.test', DnsType.AAAA)), NSP, silent.ask, true), null);
});

test('AAAAs in ::ffff:0:0/96 are excluded: alone they mean NODATA, beside real ones they are left out', async () => {
  const mapped = new Upstream()
    .set('m.test', DnsType.AAAA, { answers: [aaaa('m.test', '::ffff:192.0.2.5')] })
    .set('m.test', DnsType.A, { answers: [a('m.test', '192.0.2.5')] });
  const m = (await ask64(mapped, query('m.test', DnsType.AAAA)))!;
  assert.deepEqual(addrs(m), [Array.from(v6('2001:db8:64::c000:205'))]);
  const mixed = new Upstream().set('mix.test', DnsType.AAAA, {
    answers: [aaaa('mix.test', '::ffff:192.0.2.5'), aaaa('mix.test', '2001:db8:2::7')],
  });
  const x = (await ask64(mixed, query('mix.test', DnsType.AAAA)))!;
  assert.deepEqual(addrs(x), [Array.from(v6('2001:db8:2::7'))]);
  assert.deepEqual(mixed.asked, ['mix.test/28'], 'never mixed with synthesized ones');
});

test('the well-known prefix synthesizes global IPv4 only; a network-specific prefix takes any', async () => {
  const zone = () =>
    new Upstream().set('lan.test', DnsType.AAAA, {}).set('lan.test', DnsType.A, {
      answers: [
        a('lan.test', '10.0.0.5'),
        a('lan.test', '192.168.1.1'),
        a('lan.test', '100.64.0.1'),
        a('lan.test', '203.0.113.10'),
        a('lan.test', '93.184.216.34'),
        a('lan.test', '192.0.0.9'),
      ],
    });
  const wk = (await ask64(zone(), query('lan.test', DnsType.AAAA), WKP))!;
  assert.deepEqual(addrs(wk), [Array.from(v6('64:ff9b::5db8:d822')), Array.from(v6('64:ff9b::c000:9'))]);
  const ns = (await ask64(zone(), query('lan.test', DnsType.AAAA), NSP))!;
  assert.equal(addrs(ns).length, 6);
  assert.deepEqual(addrs(ns)[0], Array.from(v6('2001:db8:64::a00:5')));
  // Private only, with the well-known prefix: nothing to synthesize, so the NODATA goes back.
  const priv = new Upstream()
    .set('p.test', DnsType.AAAA, {})
    .set('p.test', DnsType.A, { answers: [a('p.test', '172.16.0.1')] });
  const p = (await ask64(priv, query('p.test', DnsType.AAAA), WKP))!;
  assert.equal(rcodeOf(p), Rcode.NOERROR);
  assert.deepEqual(p.answers, []);
});

test("synthesize: the TTL is capped by the AAAA answer's negative TTL, or 600 s without an SOA", () => {
  const q = query('t.test', DnsType.AAAA);
  const ans = { ...q, flags: DnsFlag.QR | DnsFlag.RA, answers: [a('t.test', '192.0.2.1', 86400)] };
  const ttl = (aaaaAnswer?: DnsMessage) => synthesize(q, ans, NSP, aaaaAnswer).answers[0].ttl;
  assert.equal(ttl(), 86400);
  assert.equal(ttl({ ...q, authority: [soa('test', 900, 120)] }), 120);
  assert.equal(ttl({ ...q, authority: [soa('test', 90, 120)] }), 90);
  assert.equal(ttl({ ...q, authority: [] }), 600);
  const nx = synthesize(q, { ...ans, flags: DnsFlag.QR | Rcode.NXDOMAIN, answers: [] }, NSP);
  assert.equal(rcodeOf(nx), Rcode.NXDOMAIN, "the RCODE is the A answer's");
});

test("too big for the client's UDP size: TC with the question only; over TCP or with EDNS it fits", async () => {
  const many = Array.from({ length: 30 }, (_, i) => a('big.test', `192.0.2.${i + 1}`));
  const up = () =>
    new Upstream().set('big.test', DnsType.AAAA, {}).set('big.test', DnsType.A, { answers: many });
  const udp = (await ask64(up(), query('big.test', DnsType.AAAA)))!;
  assert.ok(udp.flags & DnsFlag.TC);
  assert.deepEqual(udp.answers, []);
  assert.equal(udp.questions.length, 1);
  const tcp = (await ask64(up(), query('big.test', DnsType.AAAA), NSP, false))!;
  assert.equal(tcp.flags & DnsFlag.TC, 0);
  assert.equal(addrs(tcp).length, 30);
  const big = (await ask64(up(), query('big.test', DnsType.AAAA, { opt: edns(4096) })))!;
  assert.equal(addrs(big).length, 30);
  assert.equal(big.additional[0].type, DnsType.OPT);
});

test('a truncated AAAA answer goes back as it came, so the client asks over TCP', async () => {
  const up = new Upstream().set('tc.test', DnsType.AAAA, { flags: DnsFlag.QR | DnsFlag.TC });
  const m = (await ask64(up, query('tc.test', DnsType.AAAA)))!;
  assert.ok(m.flags & DnsFlag.TC);
  assert.deepEqual(up.asked, ['tc.test/28']);
});

test('ipv4only.arpa is answered locally, AAAA in the prefix and A, never upstream', async () => {
  const up = new Upstream();
  const m = (await ask64(up, query('IPv4Only.Arpa', DnsType.AAAA, { id: 9 })))!;
  assert.equal(m.id, 9);
  assert.equal(rcodeOf(m), Rcode.NOERROR);
  assert.deepEqual(addrs(m), [
    Array.from(v6('2001:db8:64::c000:aa')),
    Array.from(v6('2001:db8:64::c000:ab')),
  ]);
  const wk = (await ask64(up, query('ipv4only.arpa', DnsType.AAAA), WKP))!;
  assert.deepEqual(addrs(wk), [Array.from(v6('64:ff9b::c000:aa')), Array.from(v6('64:ff9b::c000:ab'))]);
  const four = (await ask64(up, query('ipv4only.arpa', DnsType.A, { opt: edns(1232) })))!;
  assert.deepEqual(
    four.answers.map((r) => Array.from(r.data)),
    [
      [192, 0, 0, 170],
      [192, 0, 0, 171],
    ],
  );
  assert.equal(four.additional[0]?.type, DnsType.OPT, 'an EDNS query gets an EDNS answer');
  assert.deepEqual(up.asked, []);
  assert.equal(ipv4onlyAnswer(query('ipv4only.arpa', TXT), NSP), null);
  assert.equal(ipv4onlyAnswer(query('ipv4only.arpa.test', DnsType.AAAA), NSP), null);
});

/** The ip6.arpa name of an address. */
const reverse6 = (ip: string) =>
  `${Array.from(v6(ip))
    .flatMap((b) => [b >> 4, b & 15])
    .reverse()
    .map((n) => n.toString(16))
    .join('.')}.ip6.arpa`;

test('PTR of a prefix address: the in-addr.arpa name is asked and its records come back under the asked name', async () => {
  const asked = reverse6('2001:db8:64::cb00:7107');
  assert.equal(nameText(ptrTarget(name(asked), NSP)!), '7.113.0.203.in-addr.arpa');
  assert.equal(nameText(ptrTarget(name(asked.toUpperCase()), NSP)!), '7.113.0.203.in-addr.arpa');
  assert.equal(ptrTarget(name(asked), WKP), null);
  assert.equal(ptrTarget(name(reverse6('2001:db8:65::1')), NSP), null);
  assert.equal(ptrTarget(name(asked.slice(2)), NSP), null, 'a shorter name is a zone, not an address');
  assert.equal(ptrTarget(name(asked.replace(/^7/, 'g')), NSP), null);
  const up = new Upstream().set('7.113.0.203.in-addr.arpa', DnsType.PTR, {
    answers: [ptrRr('7.113.0.203.in-addr.arpa', 'server.test')],
  });
  const m = (await ask64(up, query(asked, DnsType.PTR, { id: 77 })))!;
  assert.deepEqual(up.asked, ['7.113.0.203.in-addr.arpa/12']);
  assert.equal(m.id, 77);
  assert.equal(nameText(m.questions[0].name), asked);
  assert.deepEqual(
    m.answers.map((r) => [nameText(r.name), r.type, nameText(r.data)]),
    [[asked, DnsType.PTR, 'server.test']],
  );
  const nx = new Upstream().set('7.113.0.203.in-addr.arpa', DnsType.PTR, { rcode: Rcode.NXDOMAIN });
  assert.equal(rcodeOf((await ask64(nx, query(asked, DnsType.PTR)))!), Rcode.NXDOMAIN);
  // Outside the prefix the query is forwarded untouched.
  const other = reverse6('2001:db8:2::10');
  const plain = new Upstream().set(other, DnsType.PTR, { answers: [ptrRr(other, 'world.test')] });
  await ask64(plain, query(other, DnsType.PTR));
  assert.deepEqual(plain.asked, [`${other}/12`]);
});

test('a validating client (DO and CD) and other types are forwarded untouched', async () => {
  const up = new Upstream().set('v.test', DnsType.AAAA, {}).set('v.test', DnsType.MX, {});
  const raw = buildDns(
    query('v.test', DnsType.AAAA, { flags: DnsFlag.RD | DnsFlag.CD, opt: edns(1232, EDNS_DO) }),
  );
  assert.deepEqual(await answer64(raw, NSP, up.ask, true), up.sent[0]);
  await ask64(up, query('v.test', DnsType.MX));
  assert.deepEqual(up.asked, ['v.test/28', 'v.test/15']);
});

test('garbage in never throws: random queries, random upstream answers', async () => {
  const rand = prng(0x64);
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
  const junk: Ask = async (q) => {
    const r = rand();
    if (r < 0.2) return null;
    if (r < 0.5) return bytes(Math.floor(rand() * 60));
    const out = Uint8Array.from(q);
    out[2] |= 0x80;
    for (let e = 0; e < 3; e++) out[Math.floor(rand() * out.length)] = Math.floor(rand() * 256);
    return out;
  };
  const seeds = [
    buildDns(query('x.test', DnsType.AAAA)),
    buildDns(query('ipv4only.arpa', DnsType.AAAA)),
    buildDns(query(reverse6('2001:db8:64::1.2.3.4'), DnsType.PTR)),
  ];
  for (let i = 0; i < 3000; i++) {
    const q = rand() < 0.3 ? bytes(Math.floor(rand() * 40)) : Uint8Array.from(seeds[i % seeds.length]);
    if (rand() < 0.5) q[Math.floor(rand() * q.length)] = Math.floor(rand() * 256);
    await answer64(q, rand() < 0.5 ? NSP : WKP, junk, rand() < 0.5);
  }
});

// The forwarder itself: softnet's DNS on 127.0.0.x (IPv4) and ::1 (the "gateway IPv6" listener), a fake
// resolver on 127.0.0.y port 53 over UDP and TCP, named by a resolv.conf of the test's own.

const UPSTREAM = '127.0.0.153';
const GATEWAY4 = '127.0.0.154';

/** The fake resolver's answer to a query: v4only.test has an A and no AAAA. */
function resolve(raw: Buffer): Buffer | null {
  const m = parseDns(raw);
  const q = m?.questions.length === 1 ? m.questions[0] : null;
  if (!m || !q) return null;
  const hit = nameText(q.name).toLowerCase() === 'v4only.test';
  return Buffer.from(
    buildDns({
      ...m,
      flags: DnsFlag.QR | DnsFlag.RD | DnsFlag.RA | (hit ? 0 : Rcode.NXDOMAIN),
      answers: hit && q.type === DnsType.A ? [a('v4only.test', '203.0.113.7')] : [],
      authority: hit && q.type === DnsType.A ? [] : [soa('test', 60, 60)],
      additional: [],
    }),
  );
}

function udpAsk(to: string, q: DnsMessage): Promise<DnsMessage> {
  const s = createSocket(to.includes(':') ? 'udp6' : 'udp4');
  return new Promise<DnsMessage>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer from ${to}`)), 3000);
    s.on('message', (msg) => {
      clearTimeout(timer);
      const m = parseDns(msg);
      if (m) resolve(m);
      else reject(new Error('unparseable answer'));
    });
    s.send(buildDns(q), 53, to);
  }).finally(() => s.close());
}

function tcpAsk(to: string, q: DnsMessage): Promise<DnsMessage> {
  return new Promise<DnsMessage>((resolve, reject) => {
    const c = connect(53, to);
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`no TCP answer from ${to}`));
    }, 3000);
    c.on('error', reject);
    c.on('data', (chunk) => {
      got = Buffer.concat([got, chunk]);
      if (got.length < 2 || got.length < 2 + got.readUInt16BE(0)) return;
      clearTimeout(timer);
      c.destroy();
      const m = parseDns(got.subarray(2, 2 + got.readUInt16BE(0)));
      if (m) resolve(m);
      else reject(new Error('unparseable answer'));
    });
    const msg = buildDns(q);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(msg.length);
    c.write(Buffer.concat([len, msg]));
  });
}

/** Binds a UDP and a TCP fake resolver on UPSTREAM port 53. */
async function fakeResolver(): Promise<{ udp: Socket; tcp: Server; queries: string[] }> {
  const queries: string[] = [];
  const note = (raw: Buffer, via: string) => {
    const m = parseDns(raw);
    if (m?.questions[0]) queries.push(`${via} ${nameText(m.questions[0].name)}/${m.questions[0].type}`);
  };
  const udp = createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    note(msg, 'udp');
    const out = resolve(msg);
    if (out) udp.send(out, rinfo.port, rinfo.address);
  });
  const tcp = createServer((c) => {
    let got = Buffer.alloc(0);
    c.on('error', () => c.destroy());
    c.on('data', (chunk) => {
      got = Buffer.concat([got, chunk]);
      while (got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        const msg = got.subarray(2, 2 + got.readUInt16BE(0));
        got = got.subarray(2 + msg.length);
        note(msg, 'tcp');
        const out = resolve(msg);
        if (!out) continue;
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        c.write(Buffer.concat([len, out]));
      }
    });
  });
  await new Promise<void>((ok, fail) => {
    udp.once('error', fail);
    udp.bind(53, UPSTREAM, () => ok());
  });
  await new Promise<void>((ok, fail) => {
    tcp.once('error', fail);
    tcp.listen(53, UPSTREAM, () => ok());
  }).catch((e) => {
    udp.close();
    throw e;
  });
  return { udp, tcp, queries };
}

test('the forwarder synthesizes on its IPv6 listener only, over UDP and TCP', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'softnet-dns64-'));
  const conf = join(dir, 'resolv.conf');
  writeFileSync(conf, `nameserver ${UPSTREAM}\n`);
  const saved = process.env.SOFTNET_RESOLV_CONF;
  process.env.SOFTNET_RESOLV_CONF = conf;
  let upstream: Awaited<ReturnType<typeof fakeResolver>> | null = null;
  let fwd: DnsForwarder | null = null;
  try {
    try {
      upstream = await fakeResolver();
      fwd = await DnsForwarder.start(GATEWAY4, resolversFrom(conf), new Logger('text', () => {}));
      await fwd.listenAlso('::1', { dns64: NSP });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL') {
        t.skip(`cannot bind port 53 on loopback here: ${code}`);
        return;
      }
      throw e;
    }
    const want = [Array.from(v6('2001:db8:64::cb00:7107'))];
    const viaUdp = await udpAsk('::1', query('v4only.test', DnsType.AAAA, { id: 0xbeef }));
    assert.equal(viaUdp.id, 0xbeef);
    assert.equal(rcodeOf(viaUdp), Rcode.NOERROR);
    assert.deepEqual(addrs(viaUdp), want);
    const viaTcp = await tcpAsk('::1', query('v4only.test', DnsType.AAAA, { id: 0xcafe }));
    assert.equal(viaTcp.id, 0xcafe);
    assert.deepEqual(addrs(viaTcp), want);
    const local = await udpAsk('::1', query('ipv4only.arpa', DnsType.AAAA));
    assert.equal(addrs(local).length, 2);
    // The IPv4 listener forwards as before: the NODATA comes back untouched.
    const plain = await udpAsk(GATEWAY4, query('v4only.test', DnsType.AAAA, { id: 0x1111 }));
    assert.equal(plain.id, 0x1111);
    assert.deepEqual(plain.answers, []);
    assert.equal(plain.authority[0]?.type, DnsType.SOA);
    // DNS64 off again: the IPv6 listener forwards as the IPv4 one does.
    fwd.setDns64(null);
    const off = await udpAsk('::1', query('v4only.test', DnsType.AAAA));
    assert.deepEqual(off.answers, []);
    assert.deepEqual(upstream.queries, [
      'udp v4only.test/28',
      'udp v4only.test/1',
      'tcp v4only.test/28',
      'tcp v4only.test/1',
      'udp v4only.test/28',
      'udp v4only.test/28',
    ]);
    assert.throws(() => fwd?.setDns64(new Uint8Array(16)), RangeError);
  } finally {
    fwd?.close();
    upstream?.udp.close();
    upstream?.tcp.close();
    if (saved === undefined) delete process.env.SOFTNET_RESOLV_CONF;
    else process.env.SOFTNET_RESOLV_CONF = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});
