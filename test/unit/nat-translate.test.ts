// NAT rewriting (nat/translate.ts): address, port or echo id and TTL changed in place, with every checksum
// updated incrementally. Packets are built byte by byte in junk-filled buffers at odd offsets, and every
// result is checked by recomputing its checksums in full.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decrementTtl, rewrite } from '../../src/nat/translate.js';
import { checksum, pseudoHeader, sum } from '../../src/wire/checksum.js';
import { IPV4, IpProto } from '../../src/wire/ipv4.js';
import { prng } from '../lib/prng.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));

interface Spec {
  proto: number;
  src: number;
  dst: number;
  sport: number;
  dport: number;
  ttl?: number;
  /** Words of IPv4 options (0 to 10). */
  ipOptWords?: number;
  /** Words of TCP options (0 to 10). */
  tcpOptWords?: number;
  payload?: Uint8Array;
  /** UDP only: send without a checksum. */
  noChecksum?: boolean;
  /** ICMP only: the message type (echo request by default). */
  icmpType?: number;
  flags?: number;
}

interface Built {
  u8: Uint8Array;
  dv: DataView;
  ip: number;
  l4: number;
  total: number;
}

/** Writes the packet of `spec` at `ip` in a buffer filled with 0xa5 beyond it; every checksum filled in. */
function build(spec: Spec, ip: number, rand: () => number = prng(0)): Built {
  const payload = spec.payload ?? new Uint8Array(0);
  const hl = 20 + 4 * (spec.ipOptWords ?? 0);
  const l4hl =
    spec.proto === IpProto.TCP ? 20 + 4 * (spec.tcpOptWords ?? 0) : spec.proto === IpProto.UDP ? 8 : 8;
  const total = hl + l4hl + payload.length;
  const u8 = new Uint8Array(ip + total + 7).fill(0xa5);
  const dv = new DataView(u8.buffer);
  dv.setUint8(ip, 0x40 | (hl >> 2));
  dv.setUint8(ip + 1, 0);
  dv.setUint16(ip + 2, total);
  dv.setUint16(ip + 4, Math.floor(rand() * 0x10000));
  dv.setUint16(ip + 6, 0x4000);
  dv.setUint8(ip + 8, spec.ttl ?? 64);
  dv.setUint8(ip + 9, spec.proto);
  dv.setUint16(ip + 10, 0);
  dv.setUint32(ip + 12, spec.src);
  dv.setUint32(ip + 16, spec.dst);
  for (let i = 20; i < hl; i++) u8[ip + i] = Math.floor(rand() * 256);
  dv.setUint16(ip + 10, checksum(u8, ip, hl));
  const l4 = ip + hl;
  const l4len = total - hl;
  u8.set(payload, l4 + l4hl);
  if (spec.proto === IpProto.TCP) {
    dv.setUint16(l4, spec.sport);
    dv.setUint16(l4 + 2, spec.dport);
    dv.setUint32(l4 + 4, Math.floor(rand() * 2 ** 32));
    dv.setUint32(l4 + 8, Math.floor(rand() * 2 ** 32));
    dv.setUint8(l4 + 12, (l4hl >> 2) << 4);
    dv.setUint8(l4 + 13, spec.flags ?? 0x02);
    dv.setUint16(l4 + 14, 64240);
    dv.setUint16(l4 + 16, 0);
    dv.setUint16(l4 + 18, 0);
    for (let i = 20; i < l4hl; i++) u8[l4 + i] = Math.floor(rand() * 256);
    dv.setUint16(l4 + 16, checksum(u8, l4, l4len, pseudoHeader(spec.src, spec.dst, IpProto.TCP, l4len)));
  } else if (spec.proto === IpProto.UDP) {
    dv.setUint16(l4, spec.sport);
    dv.setUint16(l4 + 2, spec.dport);
    dv.setUint16(l4 + 4, l4len);
    dv.setUint16(l4 + 6, 0);
    if (!spec.noChecksum) {
      const c = checksum(u8, l4, l4len, pseudoHeader(spec.src, spec.dst, IpProto.UDP, l4len));
      dv.setUint16(l4 + 6, c === 0 ? 0xffff : c);
    }
  } else {
    dv.setUint8(l4, spec.icmpType ?? 8);
    dv.setUint8(l4 + 1, 0);
    dv.setUint16(l4 + 2, 0);
    dv.setUint16(l4 + 4, spec.sport);
    dv.setUint16(l4 + 6, spec.dport);
    dv.setUint16(l4 + 2, checksum(u8, l4, l4len));
  }
  return { u8, dv, ip, l4, total };
}

/** Every checksum of the packet, recomputed in full; throws with what is wrong. */
function assertChecksums(b: Built, why = ''): void {
  const { u8, dv, ip, total } = b;
  const hl = (u8[ip] & 0x0f) << 2;
  assert.equal(checksum(u8, ip, hl), 0, `IPv4 header checksum ${why}`);
  const proto = u8[ip + 9];
  const src = dv.getUint32(ip + 12);
  const dst = dv.getUint32(ip + 16);
  const l4 = ip + hl;
  const len = total - hl;
  if (proto === IpProto.TCP) {
    assert.equal(checksum(u8, l4, len, pseudoHeader(src, dst, proto, len)), 0, `TCP checksum ${why}`);
  } else if (proto === IpProto.UDP) {
    if (dv.getUint16(l4 + 6) === 0) return;
    assert.equal(checksum(u8, l4, len, pseudoHeader(src, dst, proto, len)), 0, `UDP checksum ${why}`);
  } else if (proto === IpProto.ICMP) {
    assert.equal(checksum(u8, l4, len), 0, `ICMP checksum ${why}`);
  }
}

/** The offsets of bytes that differ between two buffers. */
function changed(a: Uint8Array, b: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) out.push(i);
  return out;
}

const randAddr = (rand: () => number) => {
  const r = rand();
  if (r < 0.05) return 0;
  if (r < 0.1) return 0xffffffff;
  return Math.floor(rand() * 2 ** 32);
};
const randPort = (rand: () => number) => {
  const r = rand();
  if (r < 0.05) return 0;
  if (r < 0.1) return 0xffff;
  return Math.floor(rand() * 0x10000);
};
const randBytes = (rand: () => number, n: number) =>
  Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));

/** Fields a rewrite may change: the address, the IPv4 checksum, and the port/id and transport checksum. */
function allowedChanges(b: Built, which: number, proto: number, withL4: boolean): Set<number> {
  const s = new Set<number>();
  for (let i = 0; i < 4; i++) s.add(b.ip + which + i);
  s.add(b.ip + IPV4.CHECKSUM).add(b.ip + IPV4.CHECKSUM + 1);
  if (!withL4) return s;
  if (proto === IpProto.ICMP) {
    for (const o of [2, 3, 4, 5]) s.add(b.l4 + o);
  } else {
    const port = which === IPV4.SRC ? 0 : 2;
    s.add(b.l4 + port).add(b.l4 + port + 1);
    const at = proto === IpProto.TCP ? 16 : 6;
    s.add(b.l4 + at).add(b.l4 + at + 1);
  }
  return s;
}

/** Rewrites and checks the result against a full recomputation and the fields that must have changed. */
function rewriteAndCheck(
  b: Built,
  proto: number,
  which: number,
  addr: number,
  port: number,
  why: string,
): void {
  const before = b.u8.slice();
  const hadChecksum = proto !== IpProto.UDP || b.dv.getUint16(b.l4 + 6) !== 0;
  rewrite(b.dv, b.u8, b.ip, b.l4, proto, which, addr, port);
  assert.equal(b.dv.getUint32(b.ip + which), addr >>> 0, `address ${why}`);
  if (proto === IpProto.ICMP) assert.equal(b.dv.getUint16(b.l4 + 4), port, `echo id ${why}`);
  else assert.equal(b.dv.getUint16(b.l4 + (which === IPV4.SRC ? 0 : 2)), port, `port ${why}`);
  if (proto === IpProto.UDP) {
    assert.equal(b.dv.getUint16(b.l4 + 6) !== 0, hadChecksum, `UDP checksum presence ${why}`);
  }
  const allowed = allowedChanges(b, which, proto, true);
  for (const i of changed(before, b.u8))
    assert.ok(allowed.has(i), `byte ${i - b.ip} of the packet changed ${why}`);
  assertChecksums(b, why);
}

// A known UDP datagram: the DNS query of checksum.test.ts (UDP checksum 33ed, confirmed by tcpdump),
// 192.168.64.2:53123 -> 192.168.64.1:53, behind an IPv4 header (id 0x1c46, DF, TTL 64, checksum 1d1a).
const DNS_PACKET = hex(
  '45000039 1c464000 4011 1d1a c0a84002 c0a84001' +
    'cf83 0035 0025 33ed 2b3c 0100 0001 0000 0000 0000 07 6578616d706c65 03 636f6d 00 0001 0001',
);

describe('rewrite', () => {
  test('a known DNS query: source to 198.51.100.2:61000, then back, with checksums right each time', () => {
    const u8 = new Uint8Array(DNS_PACKET.length + 11).fill(0xa5);
    u8.set(DNS_PACKET, 5);
    const b: Built = { u8, dv: new DataView(u8.buffer), ip: 5, l4: 25, total: DNS_PACKET.length };
    assertChecksums(b, 'as captured');
    rewriteAndCheck(b, IpProto.UDP, IPV4.SRC, 0xc6336402, 61000, 'out');
    assert.deepEqual([...u8.subarray(5 + 12, 5 + 16)], [198, 51, 100, 2]);
    assert.deepEqual([...u8.subarray(25, 27)], [0xee, 0x48]);
    rewriteAndCheck(b, IpProto.UDP, IPV4.SRC, 0xc0a84002 | 0, 53123, 'back');
    assert.deepEqual([...u8.subarray(5, 5 + DNS_PACKET.length)], [...DNS_PACKET]);
  });

  const protos: Array<[string, number]> = [
    ['TCP', IpProto.TCP],
    ['UDP', IpProto.UDP],
    ['UDP without checksum', -IpProto.UDP],
    ['ICMP echo', IpProto.ICMP],
  ];
  for (const [name, p] of protos) {
    test(`${name}: source and destination rewrites verify in full, 4000 random packets (seed ${900 + p})`, () => {
      const rand = prng(900 + p);
      const proto = Math.abs(p);
      for (let n = 0; n < 4000; n++) {
        const spec: Spec = {
          proto,
          src: randAddr(rand),
          dst: randAddr(rand),
          sport: randPort(rand),
          dport: randPort(rand),
          ttl: 1 + Math.floor(rand() * 255),
          ipOptWords: rand() < 0.2 ? Math.floor(rand() * 11) : 0,
          tcpOptWords: rand() < 0.5 ? Math.floor(rand() * 11) : 0,
          payload: randBytes(rand, rand() < 0.1 ? 0 : Math.floor(rand() * 200)),
          noChecksum: p < 0,
          icmpType: rand() < 0.5 ? 8 : 0,
          flags: Math.floor(rand() * 256),
        };
        const b = build(spec, 1 + Math.floor(rand() * 40), rand);
        assertChecksums(b, 'as built');
        const why = JSON.stringify({ ...spec, payload: spec.payload!.length, n });
        // The hot path passes addresses as `| 0`; either must work.
        const a1 = randAddr(rand);
        rewriteAndCheck(b, proto, IPV4.SRC, rand() < 0.5 ? a1 | 0 : a1, randPort(rand), `src ${why}`);
        const a2 = randAddr(rand);
        rewriteAndCheck(b, proto, IPV4.DST, rand() < 0.5 ? a2 | 0 : a2, randPort(rand), `dst ${why}`);
        if (p < 0) assert.equal(b.dv.getUint16(b.l4 + 6), 0, 'UDP checksum 0 stays 0');
      }
    });
  }

  test('UDP: a rewrite whose checksum comes out as 0 stores 0xffff (RFC 768), and it verifies', () => {
    const rand = prng(768);
    let found = 0;
    for (let n = 0; n < 500; n++) {
      const b = build(
        {
          proto: IpProto.UDP,
          src: randAddr(rand),
          dst: randAddr(rand),
          sport: randPort(rand),
          dport: randPort(rand),
          payload: randBytes(rand, Math.floor(rand() * 50)),
        },
        3,
        rand,
      );
      const newAddr = randAddr(rand);
      // The source port that makes the full checksum 0: the ones'-complement sum of everything else,
      // with the port and checksum fields at 0, plus the port must be ffff.
      const copy = b.u8.slice();
      const cdv = new DataView(copy.buffer);
      cdv.setUint32(b.ip + 12, newAddr);
      cdv.setUint16(b.l4, 0);
      cdv.setUint16(b.l4 + 6, 0);
      const len = b.total - 20;
      let s = sum(copy, b.l4, len, pseudoHeader(newAddr, b.dv.getUint32(b.ip + 16), IpProto.UDP, len));
      while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
      const port = 0xffff - s;
      if (port === 0) continue;
      found++;
      rewrite(b.dv, b.u8, b.ip, b.l4, IpProto.UDP, IPV4.SRC, newAddr, port);
      assert.equal(b.dv.getUint16(b.l4 + 6), 0xffff);
      assertChecksums(b);
    }
    assert.ok(found > 400);
  });

  test('UDP without a checksum: 0 stays 0 through any rewrite, the IPv4 checksum still follows', () => {
    const b = build(
      { proto: IpProto.UDP, src: 0x0a000001, dst: 0x08080808, sport: 1, dport: 53, noChecksum: true },
      9,
    );
    for (let i = 0; i < 100; i++) {
      rewrite(
        b.dv,
        b.u8,
        b.ip,
        b.l4,
        IpProto.UDP,
        i % 2 ? IPV4.SRC : IPV4.DST,
        0x01010101 * (i + 1),
        1000 + i,
      );
      assert.equal(b.dv.getUint16(b.l4 + 6), 0);
      assert.equal(checksum(b.u8, b.ip, 20), 0);
    }
  });

  test('l4 = -1 (a later fragment): only the address and the header checksum change', () => {
    const rand = prng(791);
    for (let n = 0; n < 1000; n++) {
      const proto = [IpProto.TCP, IpProto.UDP, IpProto.ICMP, 47][n % 4];
      const b = build(
        { proto, src: randAddr(rand), dst: randAddr(rand), sport: 1, dport: 2, payload: randBytes(rand, 30) },
        7,
        rand,
      );
      const before = b.u8.slice();
      const which = n & 4 ? IPV4.SRC : IPV4.DST;
      const addr = randAddr(rand);
      rewrite(b.dv, b.u8, b.ip, -1, proto, which, addr | 0, 0);
      assert.equal(b.dv.getUint32(b.ip + which), addr);
      const allowed = allowedChanges(b, which, proto, false);
      for (const i of changed(before, b.u8)) assert.ok(allowed.has(i), `byte ${i - b.ip} changed`);
      assert.equal(checksum(b.u8, b.ip, 20), 0);
    }
  });

  test('ICMP echo: the id is the port in both directions', () => {
    const b = build({ proto: IpProto.ICMP, src: 0xc0a84002, dst: 0xcb00710a, sport: 0x1234, dport: 7 }, 1);
    rewrite(b.dv, b.u8, b.ip, b.l4, IpProto.ICMP, IPV4.SRC, 0xc6336402, 61234);
    assert.equal(b.dv.getUint16(b.l4 + 4), 61234);
    assert.equal(b.dv.getUint16(b.l4 + 6), 7, 'the sequence number is untouched');
    assertChecksums(b);
    rewrite(b.dv, b.u8, b.ip, b.l4, IpProto.ICMP, IPV4.DST, 0xc0a84002, 0x1234);
    assert.equal(b.dv.getUint16(b.l4 + 4), 0x1234);
    assertChecksums(b);
  });

  // Regression (a bug up to 408b9d5, fixed in 10da981; the random ICMP test above found it too): the echo
  // id was updated with RFC 1624 eqn. 3 and stored as is. When the message becomes all zeros (an echo
  // reply, code 0, id translated back to 0, sequence 0, no data) eqn. 3 gives 0x0000 where the checksum
  // must be 0xffff, and the kernel drops the reply. services/icmp.ts already handled the same case.
  test('ICMP echo reply translated back to id 0, seq 0, no data: the checksum still verifies', () => {
    const b = build(
      { proto: IpProto.ICMP, src: 0xcb00710a, dst: 0xc6336402, sport: 61000, dport: 0, icmpType: 0 },
      3,
    );
    assertChecksums(b, 'as built');
    rewrite(b.dv, b.u8, b.ip, b.l4, IpProto.ICMP, IPV4.DST, 0xc0a84002, 0);
    assert.equal(b.dv.getUint16(b.l4 + 4), 0);
    assertChecksums(b, 'after the id went back to 0');
  });

  test('TCP with every flag combination and odd payload lengths', () => {
    const rand = prng(9293);
    for (let flags = 0; flags < 256; flags++) {
      const b = build(
        {
          proto: IpProto.TCP,
          src: 0xc0a84002,
          dst: 0xcb00710a,
          sport: 40000 + flags,
          dport: 443,
          flags,
          payload: randBytes(rand, 2 * flags + 1),
        },
        1 + (flags % 3),
        rand,
      );
      rewriteAndCheck(b, IpProto.TCP, IPV4.SRC, 0xc6336402, 61000 + flags, `flags ${flags}`);
      assert.equal(b.u8[b.l4 + 13], flags);
      rewriteAndCheck(b, IpProto.TCP, IPV4.DST, 0xc0a84002, 443, `flags ${flags} back`);
    }
  });
});

describe('decrementTtl', () => {
  test('every TTL from 255 down to 1: one less, and the header checksum stays valid (random headers)', () => {
    const rand = prng(1812);
    for (let n = 0; n < 20; n++) {
      const b = build(
        {
          proto: [IpProto.TCP, IpProto.UDP, IpProto.ICMP][n % 3],
          src: randAddr(rand),
          dst: randAddr(rand),
          sport: randPort(rand),
          dport: randPort(rand),
          ttl: 255,
          ipOptWords: n % 4,
          payload: randBytes(rand, 10),
        },
        1 + (n % 5),
        rand,
      );
      const before = b.u8.slice();
      for (let ttl = 255; ttl >= 1; ttl--) {
        assert.equal(b.u8[b.ip + IPV4.TTL], ttl);
        decrementTtl(b.dv, b.ip);
        assert.equal(b.u8[b.ip + IPV4.TTL], ttl - 1);
        assert.equal(b.u8[b.ip + IPV4.PROTO], before[b.ip + IPV4.PROTO]);
        assertChecksums(b, `ttl ${ttl} -> ${ttl - 1}`);
      }
      const diff = changed(before, b.u8);
      assert.ok(diff.every((i) => i === b.ip + 8 || i === b.ip + 10 || i === b.ip + 11));
    }
  });

  test('the Wikipedia header: TTL 64 -> 63, checksum b861 -> b961', () => {
    const h = hex('45000073 00004000 4011b861 c0a80001 c0a800c7');
    const dv = new DataView(h.buffer);
    decrementTtl(dv, 0);
    assert.equal(h[8], 0x3f);
    assert.equal(dv.getUint16(10), 0xb961);
  });
});
