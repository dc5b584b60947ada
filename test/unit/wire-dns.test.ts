// DNS messages: a compressed answer as resolvers send it, decompression inside record data (CNAME, SOA, MX),
// the builder's round trip, names as text and compared without case, every refusal of the parser, and a
// fuzz loop showing that garbage comes back null instead of throwing.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  buildDns,
  type DnsMessage,
  DnsType,
  encodeName,
  labelsOf,
  MAX_NAME_LEN,
  nameText,
  opcodeOf,
  optOf,
  parseDns,
  Rcode,
  rcodeOf,
  readName,
  sameName,
  withRcode,
} from '../../src/wire/dns.js';
import { prng } from '../lib/prng.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g) ?? [], (h) => Number.parseInt(h, 16));
const name = (s: string) => encodeName(s)!;

// What a resolver answers to "A www.example.com" (id 0x1234, RD RA, EDNS 1232), every name after the
// question a pointer: www.example.com CNAME web.example.com, web.example.com A 93.184.216.34, and the
// authority's example.com SOA with both its names compressed.
const ANSWER = hex(
  '1234 8180 0001 0002 0001 0001' +
    // 12: question www.example.com A IN (example at 16, com at 24)
    '03777777 076578616d706c65 03636f6d 00 0001 0001' +
    // 33: www CNAME web.<16>
    'c00c 0005 0001 00000e10 0006 03776562 c010' +
    // 51: web.example.com (at 45) A
    'c02d 0001 0001 0000012c 0004 5db8d822' +
    // 67: example.com SOA ns1.<16> hostmaster.<16> serial refresh retry expire minimum
    'c010 0006 0001 00000384 0027 036e7331 c010 0a686f73746d6173746572 c010' +
    '78a3b1c2 00001c20 00000e10 00093a80 0000003c' +
    // OPT: root, size 1232, DO clear
    '00 0029 04d0 00000000 0000',
);

test('a compressed answer parses: header, question, CNAME and SOA data decompressed, the OPT record', () => {
  const m = parseDns(ANSWER);
  assert.ok(m);
  assert.equal(m.id, 0x1234);
  assert.equal(m.flags, 0x8180);
  assert.equal(opcodeOf(m), 0);
  assert.equal(rcodeOf(m), Rcode.NOERROR);
  assert.equal(m.questions.length, 1);
  assert.equal(nameText(m.questions[0].name), 'www.example.com');
  assert.equal(m.questions[0].type, DnsType.A);
  const [cname, a] = m.answers;
  assert.equal(nameText(cname.name), 'www.example.com');
  assert.equal(cname.type, DnsType.CNAME);
  assert.equal(cname.ttl, 3600);
  assert.deepEqual(cname.data, name('web.example.com'));
  assert.equal(nameText(a.name), 'web.example.com');
  assert.deepEqual(a.data, Uint8Array.of(93, 184, 216, 34));
  const soa = m.authority[0];
  assert.equal(soa.type, DnsType.SOA);
  const names = [...name('ns1.example.com'), ...name('hostmaster.example.com')];
  assert.deepEqual(soa.data.subarray(0, names.length), Uint8Array.from(names));
  assert.equal(soa.data.length, names.length + 20);
  assert.equal(new DataView(soa.data.buffer, soa.data.byteOffset).getUint32(soa.data.length - 4), 60);
  const opt = optOf(m);
  assert.ok(opt);
  assert.equal(opt.class, 1232);
  assert.deepEqual(opt.name, Uint8Array.of(0));
});

test('a built message, uncompressed, parses back to the same message', () => {
  const m = parseDns(ANSWER)!;
  const out = buildDns(m);
  assert.ok(out.length > ANSWER.length, 'names are written whole');
  assert.deepEqual(parseDns(out), m);
  const changed: DnsMessage = { ...m, id: 7, flags: withRcode(m.flags, Rcode.NXDOMAIN), answers: [] };
  const back = parseDns(buildDns(changed))!;
  assert.equal(back.id, 7);
  assert.equal(rcodeOf(back), Rcode.NXDOMAIN);
  assert.equal(back.flags & 0xfff0, 0x8180);
  assert.deepEqual(back.answers, []);
  assert.equal(back.authority.length, 1);
});

test('MX data keeps its preference before the decompressed exchange name', () => {
  const msg = hex(
    '0001 8180 0001 0001 0000 0000' +
      '076578616d706c65 03636f6d 00 000f 0001' +
      'c00c 000f 0001 0000003c 0007 000a 026d78 c00c',
  );
  const m = parseDns(msg)!;
  assert.deepEqual(m.answers[0].data, Uint8Array.from([0, 10, ...name('mx.example.com')]));
});

test('names: text both ways, the root, escapes, case-insensitive comparison, labels', () => {
  assert.deepEqual(name('a.bc'), hex('01 61 02 6263 00'));
  assert.deepEqual(name('a.bc.'), name('a.bc'));
  assert.deepEqual(name('.'), Uint8Array.of(0));
  assert.deepEqual(name(''), Uint8Array.of(0));
  assert.equal(nameText(Uint8Array.of(0)), '.');
  assert.equal(nameText(hex('03 612e62 01 20 00')), 'a\\046b.\\032');
  assert.equal(encodeName(`${'x'.repeat(64)}.com`), null);
  assert.equal(encodeName('a..b'), null);
  assert.equal(encodeName(Array(128).fill('a').join('.')), null, '257 bytes');
  assert.ok(encodeName(Array(127).fill('a').join('.')), '255 bytes');
  assert.ok(sameName(name('IPv4Only.ARPA'), name('ipv4only.arpa')));
  assert.ok(!sameName(name('ipv4only.arpa'), name('ipv4only.arpb')));
  assert.ok(!sameName(name('a.b'), name('ab')));
  // Only ASCII folds: 0xc1 and 0xe1 (Latin-1 A acute in both cases) differ.
  assert.ok(!sameName(hex('01 c1 00'), hex('01 e1 00')));
  assert.deepEqual(
    labelsOf(name('x.ip6.arpa')).map((l) => nameText(Uint8Array.from([l.length, ...l, 0]))),
    ['x', 'ip6', 'arpa'],
  );
});

test('readName refuses pointer loops, forward pointers, long names, obsolete label types and short input', () => {
  assert.equal(readName(hex('c000'), 0), null, 'pointer to itself');
  assert.equal(readName(hex('c002 00'), 0), null, 'forward pointer');
  assert.equal(readName(hex('01 61 c000'), 0), null, 'loop through a label');
  assert.equal(readName(hex('c0'), 0), null, 'half a pointer');
  assert.equal(readName(hex('05 6162'), 0), null, 'label past the end');
  assert.equal(readName(hex('01 61'), 0), null, 'no root');
  assert.equal(readName(hex('41 00'), 0), null, 'extended label type');
  assert.equal(readName(hex('81 00'), 0), null, 'binary label type');
  // 4 labels of 63 make 256 bytes with the root: one too many.
  const long = Uint8Array.from([...Array(4)].flatMap(() => [63, ...Array(63).fill(0x61)]).concat([0]));
  assert.equal(readName(long, 0), null);
  const fits = Uint8Array.from([...long.subarray(0, 3 * 64), 61, ...Array(61).fill(0x61), 0]);
  assert.equal(fits.length, MAX_NAME_LEN);
  assert.equal(readName(fits, 0)?.name.length, MAX_NAME_LEN);
  const chained = readName(hex('01 61 00 01 62 c000'), 3);
  assert.deepEqual(chained, { name: hex('01 62 01 61 00'), end: 7 });
});

test('record data whose names run past its length, or do not fill it, is malformed', () => {
  const head = '0001 8180 0000 0001 0000 0000';
  assert.ok(parseDns(hex(`${head} 01 61 00 0005 0001 00000000 0003 01 62 00`)));
  assert.equal(
    parseDns(hex(`${head} 01 61 00 0005 0001 00000000 0002 01 62 00`)),
    null,
    'name past rdlength',
  );
  assert.equal(parseDns(hex(`${head} 01 61 00 0005 0001 00000000 0004 01 62 00 00`)), null, 'bytes after it');
  assert.equal(
    parseDns(hex(`${head} 01 61 00 0006 0001 00000000 0003 01 62 00`)),
    null,
    'SOA without its numbers',
  );
  assert.equal(
    parseDns(hex(`${head} 01 61 00 000f 0001 00000000 0001 00`)),
    null,
    'MX without its preference',
  );
  // A type without names keeps its data as it is, pointer-looking bytes included.
  const txt = parseDns(hex(`${head} 01 61 00 0010 0001 00000000 0002 c000`))!;
  assert.deepEqual(txt.answers[0].data, hex('c000'));
});

test('every cut of a message, and counts larger than the records, parse to null', () => {
  for (let len = 0; len < ANSWER.length; len++)
    assert.equal(parseDns(ANSWER.subarray(0, len)), null, `cut at ${len}`);
  const more = Uint8Array.from(ANSWER);
  more[11] = 2;
  assert.equal(parseDns(more), null);
  // A header alone with no counts is a valid (empty) message.
  assert.deepEqual(parseDns(new Uint8Array(12))?.questions, []);
});

test('garbage never throws: random bytes and random mutations of a real answer', () => {
  const rand = prng(0xd45);
  for (let i = 0; i < 20_000; i++) {
    const len = Math.floor(rand() * 80);
    const junk = Uint8Array.from({ length: len }, () => Math.floor(rand() * 256));
    if (len >= 12 && rand() < 0.5) junk.set([0, 1, 0, 1, 0, 1, 0, 1], 4);
    parseDns(junk);
    readName(junk, Math.floor(rand() * (len + 1)));
    const edited = Uint8Array.from(ANSWER);
    for (let e = 0; e < 3; e++) edited[Math.floor(rand() * edited.length)] = Math.floor(rand() * 256);
    const m = parseDns(edited);
    if (m) assert.ok(parseDns(buildDns(m)), 'what parses builds and parses again');
  }
});
