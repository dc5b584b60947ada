// The uplink's capture filters (ports/uplink.ts captureFilter, captureFilter6), with and without port
// forwards: the classic BPF program is run here by a small interpreter of the opcodes it uses, over crafted
// Ethernet + IPv4 or IPv6 frames, as the kernel would run it on a packet socket.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { captureFilter, captureFilter6 } from '../../src/ports/uplink.js';

const ADDR = 0xc6336402; // 198.51.100.2
const OTHER = 0xc6336403;
const LO = 61000;
const HI = 61999;
const ACCEPT = 0x40000;

/**
 * Runs a classic BPF program (struct sock_filter, little-endian as on x86 and arm64) over `pkt`. Only the
 * instructions captureFilter emits are known; any other throws. A load past the end rejects the packet,
 * as in the kernel.
 */
function runBpf(prog: Uint8Array, pkt: Uint8Array): number {
  const p = new DataView(prog.buffer, prog.byteOffset, prog.byteLength);
  const d = new DataView(pkt.buffer, pkt.byteOffset, pkt.byteLength);
  const n = prog.length / 8;
  let a = 0;
  let x = 0;
  let pc = 0;
  for (let steps = 0; steps < 10_000; steps++) {
    if (pc < 0 || pc >= n) throw new Error(`pc ${pc} outside the program`);
    const code = p.getUint16(pc * 8, true);
    const jt = p.getUint8(pc * 8 + 2);
    const jf = p.getUint8(pc * 8 + 3);
    const k = p.getUint32(pc * 8 + 4, true);
    pc++;
    const load = (at: number, size: number): boolean => {
      if (at < 0 || at + size > pkt.length) return false;
      a = size === 4 ? d.getUint32(at) : size === 2 ? d.getUint16(at) : d.getUint8(at);
      return true;
    };
    switch (code) {
      case 0x20: // ld [k]
        if (!load(k, 4)) return 0;
        break;
      case 0x28: // ldh [k]
        if (!load(k, 2)) return 0;
        break;
      case 0x30: // ldb [k]
        if (!load(k, 1)) return 0;
        break;
      case 0xb1: // ldxb 4*([k]&0xf)
        if (k >= pkt.length) return 0;
        x = (pkt[k] & 0x0f) << 2;
        break;
      case 0x48: // ldh [x+k]
        if (!load(x + k, 2)) return 0;
        break;
      case 0x50: // ldb [x+k]
        if (!load(x + k, 1)) return 0;
        break;
      case 0x05: // ja +k
        pc += k;
        break;
      case 0x15: // jeq #k
        pc += a >>> 0 === k ? jt : jf;
        break;
      case 0x25: // jgt #k
        pc += a >>> 0 > k ? jt : jf;
        break;
      case 0x35: // jge #k
        pc += a >>> 0 >= k ? jt : jf;
        break;
      case 0x45: // jset #k
        pc += (a & k) !== 0 ? jt : jf;
        break;
      case 0x06: // ret #k
        return k;
      default:
        throw new Error(`opcode 0x${code.toString(16)} at ${pc - 1} is not one captureFilter uses`);
    }
  }
  throw new Error('the program did not end');
}

interface FrameSpec {
  dst?: number;
  proto?: number;
  dport?: number;
  icmpType?: number;
  icmpId?: number;
  /** The IPv4 flags and fragment offset word. */
  frag?: number;
  /** Words of IPv4 options. */
  optWords?: number;
  etherType?: number;
}

/** An Ethernet frame with an IPv4 packet and 8 bytes of transport header, filled with 0xa5 elsewhere. */
function frame(s: FrameSpec): Uint8Array {
  const hl = 20 + 4 * (s.optWords ?? 0);
  const f = new Uint8Array(14 + hl + 8).fill(0xa5);
  const dv = new DataView(f.buffer);
  dv.setUint16(12, s.etherType ?? 0x0800);
  dv.setUint8(14, 0x40 | (hl >> 2));
  dv.setUint16(16, hl + 8);
  dv.setUint16(20, s.frag ?? 0x4000);
  dv.setUint8(22, 64);
  dv.setUint8(23, s.proto ?? 6);
  dv.setUint32(26, 0xcb00710a);
  dv.setUint32(30, s.dst ?? ADDR);
  const l4 = 14 + hl;
  if ((s.proto ?? 6) === 1) {
    dv.setUint8(l4, s.icmpType ?? 0);
    dv.setUint8(l4 + 1, 0);
    dv.setUint16(l4 + 4, s.icmpId ?? LO);
  } else {
    dv.setUint16(l4, 443);
    dv.setUint16(l4 + 2, s.dport ?? LO);
  }
  return f;
}

const filter = captureFilter(ADDR, LO, HI);
const verdict = (s: FrameSpec) => runBpf(filter, frame(s));
/** The same filter with port forwards, which must change nothing else. */
const FORWARDS = { tcp: [22000, 8080], udp: [5353] };
const withForwards = captureFilter(ADDR, LO, HI, FORWARDS);

describe('captureFilter', () => {
  test('is a whole number of sock_filter instructions, within BPF_MAXINSNS', () => {
    assert.equal(filter.length % 8, 0);
    assert.ok(filter.length / 8 <= 4096);
  });

  const accepted: Array<[string, FrameSpec]> = [
    ['TCP to port lo', { proto: 6, dport: LO }],
    ['TCP to port hi', { proto: 6, dport: HI }],
    ['TCP to a port mid-range', { proto: 6, dport: 61500 }],
    ['UDP to port lo', { proto: 17, dport: LO }],
    ['UDP to port hi', { proto: 17, dport: HI }],
    ['UDP to a port mid-range', { proto: 17, dport: 61234 }],
    ['TCP with IPv4 options to a port in range', { proto: 6, dport: 61001, optWords: 3 }],
    ['UDP with 40 bytes of IPv4 options to port hi', { proto: 17, dport: HI, optWords: 10 }],
    ['an ICMP echo reply with id lo', { proto: 1, icmpType: 0, icmpId: LO }],
    ['an ICMP echo reply with id hi', { proto: 1, icmpType: 0, icmpId: HI }],
    [
      'an ICMP echo reply with id mid-range, after options',
      { proto: 1, icmpType: 0, icmpId: 61500, optWords: 2 },
    ],
    ['ICMP destination unreachable (3)', { proto: 1, icmpType: 3, icmpId: 0 }],
    ['ICMP time exceeded (11)', { proto: 1, icmpType: 11, icmpId: 0 }],
    ['ICMP parameter problem (12)', { proto: 1, icmpType: 12, icmpId: 0 }],
    ['a later UDP fragment (offset 185)', { proto: 17, frag: 185, dport: 0 }],
    ['a later fragment with MF (offset 1)', { proto: 6, frag: 0x2001, dport: 1 }],
    ['a later fragment of another protocol', { proto: 47, frag: 0x1fff }],
    ['a first fragment (MF, offset 0) of UDP to a port in range', { proto: 17, frag: 0x2000, dport: 61999 }],
  ];
  for (const [name, s] of accepted) {
    test(`accepts ${name}`, () => {
      assert.equal(verdict(s), ACCEPT);
      assert.equal(runBpf(withForwards, frame(s)), ACCEPT, 'with forwards');
    });
  }

  const rejected: Array<[string, FrameSpec]> = [
    ['TCP to another address', { proto: 6, dst: OTHER, dport: 61500 }],
    ['UDP to another address', { proto: 17, dst: OTHER, dport: 61500 }],
    ['an echo reply to another address', { proto: 1, dst: OTHER, icmpType: 0, icmpId: 61500 }],
    ['a later fragment to another address', { proto: 17, dst: OTHER, frag: 185 }],
    ['TCP to port lo-1', { proto: 6, dport: LO - 1 }],
    ['TCP to port hi+1', { proto: 6, dport: HI + 1 }],
    ['UDP to port lo-1', { proto: 17, dport: LO - 1 }],
    ['UDP to port hi+1', { proto: 17, dport: HI + 1 }],
    ['UDP to port 0', { proto: 17, dport: 0 }],
    ['UDP to port 65535', { proto: 17, dport: 65535 }],
    ['TCP to port 22', { proto: 6, dport: 22 }],
    ['TCP with options to port hi+1', { proto: 6, dport: HI + 1, optWords: 5 }],
    ['an ICMP echo request', { proto: 1, icmpType: 8, icmpId: 61500 }],
    ['an echo reply with id lo-1', { proto: 1, icmpType: 0, icmpId: LO - 1 }],
    ['an echo reply with id hi+1', { proto: 1, icmpType: 0, icmpId: HI + 1 }],
    ['ICMP redirect (5)', { proto: 1, icmpType: 5, icmpId: 61500 }],
    ['ICMP source quench (4)', { proto: 1, icmpType: 4 }],
    ['ICMP timestamp reply (14)', { proto: 1, icmpType: 14, icmpId: 61500 }],
    ['GRE', { proto: 47, dport: 61500 }],
    ['IGMP', { proto: 2, dport: 61500 }],
    ['SCTP to a port in range', { proto: 132, dport: 61500 }],
    ['ESP', { proto: 50 }],
  ];
  for (const [name, s] of rejected) {
    test(`rejects ${name}`, () => {
      assert.equal(verdict(s), 0);
      assert.equal(runBpf(withForwards, frame(s)), 0, 'with forwards');
    });
  }

  test('with forwards: TCP and UDP to a forwarded port of their protocol, only to the address', () => {
    const v = (s: FrameSpec) => runBpf(withForwards, frame(s));
    assert.equal(v({ proto: 6, dport: 8080 }), ACCEPT);
    assert.equal(v({ proto: 6, dport: 22000 }), ACCEPT);
    assert.equal(v({ proto: 6, dport: 8080, optWords: 4 }), ACCEPT);
    assert.equal(v({ proto: 17, dport: 5353 }), ACCEPT);
    assert.equal(v({ proto: 17, dport: 8080 }), 0, 'a TCP forward takes no UDP');
    assert.equal(v({ proto: 6, dport: 5353 }), 0, 'a UDP forward takes no TCP');
    for (const port of [8079, 8081, 21999, 22001, 5352, 5354]) {
      assert.equal(v({ proto: 6, dport: port }), 0, `TCP ${port}`);
      assert.equal(v({ proto: 17, dport: port }), 0, `UDP ${port}`);
    }
    assert.equal(v({ proto: 6, dport: 8080, dst: OTHER }), 0);
    assert.equal(v({ proto: 1, icmpType: 0, icmpId: 8080 }), 0, 'an echo reply with a forwarded id');
    assert.equal(runBpf(filter, frame({ proto: 6, dport: 8080 })), 0, 'without forwards');
  });

  test('1024 forwards of each protocol: every one taken, the ports between not, within BPF_MAXINSNS', () => {
    const tcp = Array.from({ length: 1024 }, (_, i) => 1000 + 3 * i);
    const udp = Array.from({ length: 1024 }, (_, i) => 40000 + 2 * i);
    const f = captureFilter(ADDR, LO, HI, { tcp, udp });
    assert.ok(f.length / 8 <= 4096, `${f.length / 8} instructions`);
    for (const port of tcp) {
      assert.equal(runBpf(f, frame({ proto: 6, dport: port })), ACCEPT, `TCP ${port}`);
      assert.equal(runBpf(f, frame({ proto: 6, dport: port + 1 })), 0, `TCP ${port + 1}`);
    }
    for (const port of udp) {
      assert.equal(runBpf(f, frame({ proto: 17, dport: port })), ACCEPT, `UDP ${port}`);
      assert.equal(runBpf(f, frame({ proto: 17, dport: port + 1 })), 0, `UDP ${port + 1}`);
      assert.equal(runBpf(f, frame({ proto: 6, dport: port })), 0, `TCP ${port}`);
    }
    assert.equal(runBpf(f, frame({ proto: 17, dport: 61500 })), ACCEPT, 'the NAT range still');
    assert.equal(runBpf(f, frame({ proto: 1, icmpType: 11 })), ACCEPT, 'ICMP errors still');
  });

  test('a frame too short for the destination address is rejected, not read past its end', () => {
    assert.equal(runBpf(filter, frame({}).subarray(0, 33)), 0);
    assert.equal(runBpf(filter, new Uint8Array(0)), 0);
  });

  test('a TCP header cut before its destination port is rejected', () => {
    assert.equal(runBpf(filter, frame({ proto: 6, dport: 61500 }).subarray(0, 14 + 20 + 3)), 0);
  });

  test('every port of a small range, and the ports around it', () => {
    const f = captureFilter(ADDR, 100, 120);
    for (let port = 90; port <= 130; port++) {
      const want = port >= 100 && port <= 120 ? ACCEPT : 0;
      assert.equal(runBpf(f, frame({ proto: 17, dport: port })), want, `UDP ${port}`);
      assert.equal(runBpf(f, frame({ proto: 1, icmpType: 0, icmpId: port })), want, `echo id ${port}`);
    }
  });

  test('an address above 2^31 and the full port range', () => {
    const f = captureFilter(0xfffffffe, 1, 65535);
    assert.equal(runBpf(f, frame({ dst: 0xfffffffe, dport: 65535 })), ACCEPT);
    assert.equal(runBpf(f, frame({ dst: 0xfffffffe, dport: 0 })), 0);
    assert.equal(runBpf(f, frame({ dst: 0x7ffffffe, dport: 80 })), 0);
  });

  // The packet socket is opened for ETH_P_IP (native/softnet.c packet_socket), so only IPv4 frames reach
  // the filter; the filter must not depend on that, though: offset 30 of an IPv6 packet is in its source
  // address, and offset 20 (next header, hop limit) looks like a fragment offset. Up to 408b9d5 the
  // filter did not load the EtherType and accepted both frames below; 10da981 added the check.
  test('a non-IPv4 frame (IPv6, ARP) is rejected even when offset 30 holds the address', () => {
    const v6 = frame({ etherType: 0x86dd, frag: 0x1140 });
    v6[14] = 0x60;
    assert.equal(runBpf(filter, v6), 0, 'IPv6');
    const arp = frame({ etherType: 0x0806, proto: 17, dport: 61500 });
    assert.equal(runBpf(filter, arp), 0, 'ARP');
  });
});

// 2001:db8:0:1::2, and addresses that differ from it in one word each (two with the top bit set, so the
// compares must be of unsigned words).
const ADDR6 = [0x20010db8, 0x00000001, 0x00000000, 0x00000002];
const OTHERS6: Array<[string, number[]]> = [
  ['word 0', [0x20010db9, 1, 0, 2]],
  ['word 1', [0x20010db8, 0x80000001, 0, 2]],
  ['word 2', [0x20010db8, 1, 0x00000100, 2]],
  ['word 3', [0x20010db8, 1, 0, 0x80000002]],
];

interface Frame6Spec {
  dst?: number[];
  /** The IPv6 header's next header. */
  next?: number;
  dport?: number;
  icmpType?: number;
  icmpId?: number;
  etherType?: number;
}

/** An Ethernet frame with an IPv6 packet and 8 bytes after its header, filled with 0xa5 elsewhere. */
function frame6(s: Frame6Spec): Uint8Array {
  const f = new Uint8Array(14 + 40 + 8).fill(0xa5);
  const dv = new DataView(f.buffer);
  dv.setUint16(12, s.etherType ?? 0x86dd);
  dv.setUint32(14, 0x60000000);
  dv.setUint16(18, 8);
  dv.setUint8(20, s.next ?? 6);
  dv.setUint8(21, 64);
  for (let i = 0; i < 4; i++) dv.setUint32(22 + 4 * i, [0x20010db8, 0xffff, 0, 0x10][i]);
  (s.dst ?? ADDR6).forEach((w, i) => {
    dv.setUint32(38 + 4 * i, w >>> 0);
  });
  if ((s.next ?? 6) === 58) {
    dv.setUint8(54, s.icmpType ?? 129);
    dv.setUint8(55, 0);
    dv.setUint16(58, s.icmpId ?? LO);
  } else if ((s.next ?? 6) === 44) {
    // A Fragment header: next header UDP, offset 185, no more fragments.
    dv.setUint8(54, 17);
    dv.setUint16(56, 185 << 3);
  } else {
    dv.setUint16(54, 443);
    dv.setUint16(56, s.dport ?? LO);
  }
  return f;
}

/** The address as signed words, as the engine holds them. */
const filter6 = captureFilter6(
  ADDR6.map((w) => w | 0),
  LO,
  HI,
);
const withForwards6 = captureFilter6(ADDR6, LO, HI, FORWARDS);

describe('captureFilter6', () => {
  test('is a whole number of sock_filter instructions, within BPF_MAXINSNS', () => {
    assert.equal(filter6.length % 8, 0);
    assert.ok(filter6.length / 8 <= 4096);
  });

  const accepted: Array<[string, Frame6Spec]> = [
    ['TCP to port lo', { next: 6, dport: LO }],
    ['TCP to port hi', { next: 6, dport: HI }],
    ['UDP to port lo', { next: 17, dport: LO }],
    ['UDP to port hi', { next: 17, dport: HI }],
    ['UDP to a port mid-range', { next: 17, dport: 61234 }],
    ['an echo reply with id lo', { next: 58, icmpType: 129, icmpId: LO }],
    ['an echo reply with id hi', { next: 58, icmpType: 129, icmpId: HI }],
    ['destination unreachable (1)', { next: 58, icmpType: 1, icmpId: 0 }],
    ['packet too big (2)', { next: 58, icmpType: 2, icmpId: 0 }],
    ['time exceeded (3)', { next: 58, icmpType: 3, icmpId: 0 }],
    ['parameter problem (4)', { next: 58, icmpType: 4, icmpId: 0 }],
    ['a fragment', { next: 44 }],
  ];
  for (const [name, s] of accepted) {
    test(`accepts ${name}`, () => {
      assert.equal(runBpf(filter6, frame6(s)), ACCEPT);
      assert.equal(runBpf(withForwards6, frame6(s)), ACCEPT, 'with forwards');
    });
  }

  const rejected: Array<[string, Frame6Spec]> = [
    ['TCP to port lo-1', { next: 6, dport: LO - 1 }],
    ['TCP to port hi+1', { next: 6, dport: HI + 1 }],
    ['UDP to port lo-1', { next: 17, dport: LO - 1 }],
    ['UDP to port hi+1', { next: 17, dport: HI + 1 }],
    ['UDP to port 0', { next: 17, dport: 0 }],
    ['an echo request (128)', { next: 58, icmpType: 128, icmpId: 61500 }],
    ['an echo reply with id lo-1', { next: 58, icmpType: 129, icmpId: LO - 1 }],
    ['an echo reply with id hi+1', { next: 58, icmpType: 129, icmpId: HI + 1 }],
    ['ICMPv6 type 0', { next: 58, icmpType: 0, icmpId: 61500 }],
    ['ICMPv6 type 5', { next: 58, icmpType: 5, icmpId: 61500 }],
    ['a neighbour solicitation (135)', { next: 58, icmpType: 135, icmpId: 61500 }],
    ['a neighbour advertisement (136)', { next: 58, icmpType: 136, icmpId: 61500 }],
    ['a router advertisement (134)', { next: 58, icmpType: 134 }],
    ['hop-by-hop options first (0)', { next: 0, dport: 61500 }],
    ['a routing header first (43)', { next: 43, dport: 61500 }],
    ['a destination options header first (60)', { next: 60, dport: 61500 }],
    ['ESP (50)', { next: 50 }],
    ['SCTP to a port in range', { next: 132, dport: 61500 }],
    ['ICMP (1, the IPv4 protocol number)', { next: 1, icmpType: 0, icmpId: 61500 }],
    ['an IPv4 EtherType', { etherType: 0x0800, next: 6, dport: 61500 }],
  ];
  for (const [name, s] of rejected) {
    test(`rejects ${name}`, () => {
      assert.equal(runBpf(filter6, frame6(s)), 0);
      assert.equal(runBpf(withForwards6, frame6(s)), 0, 'with forwards');
    });
  }

  for (const [word, dst] of OTHERS6) {
    test(`rejects every kind of packet to an address that differs in ${word}`, () => {
      for (const s of accepted.map(([, spec]) => spec)) {
        assert.equal(runBpf(filter6, frame6({ ...s, dst })), 0, JSON.stringify(s));
        assert.equal(runBpf(withForwards6, frame6({ ...s, dst, dport: 8080 })), 0, 'a forward');
      }
    });
  }

  test('with forwards: TCP and UDP to a forwarded port of their protocol, only to the address', () => {
    const v = (s: Frame6Spec) => runBpf(withForwards6, frame6(s));
    assert.equal(v({ next: 6, dport: 8080 }), ACCEPT);
    assert.equal(v({ next: 6, dport: 22000 }), ACCEPT);
    assert.equal(v({ next: 17, dport: 5353 }), ACCEPT);
    assert.equal(v({ next: 17, dport: 8080 }), 0, 'a TCP forward takes no UDP');
    assert.equal(v({ next: 6, dport: 5353 }), 0, 'a UDP forward takes no TCP');
    for (const port of [8079, 8081, 5352, 5354]) {
      assert.equal(v({ next: 6, dport: port }), 0, `TCP ${port}`);
      assert.equal(v({ next: 17, dport: port }), 0, `UDP ${port}`);
    }
    assert.equal(v({ next: 58, icmpType: 129, icmpId: 8080 }), 0, 'an echo reply with a forwarded id');
    assert.equal(runBpf(filter6, frame6({ next: 6, dport: 8080 })), 0, 'without forwards');
  });

  test('1024 forwards of each protocol: every one taken, the ports between not, within BPF_MAXINSNS', () => {
    const tcp = Array.from({ length: 1024 }, (_, i) => 1000 + 3 * i);
    const udp = Array.from({ length: 1024 }, (_, i) => 40000 + 2 * i);
    const f = captureFilter6(ADDR6, LO, HI, { tcp, udp });
    assert.ok(f.length / 8 <= 4096, `${f.length / 8} instructions`);
    for (const port of tcp) {
      assert.equal(runBpf(f, frame6({ next: 6, dport: port })), ACCEPT, `TCP ${port}`);
      assert.equal(runBpf(f, frame6({ next: 6, dport: port + 1 })), 0, `TCP ${port + 1}`);
    }
    for (const port of udp) {
      assert.equal(runBpf(f, frame6({ next: 17, dport: port })), ACCEPT, `UDP ${port}`);
      assert.equal(runBpf(f, frame6({ next: 6, dport: port })), 0, `TCP ${port}`);
    }
    assert.equal(runBpf(f, frame6({ next: 58, icmpType: 2 })), ACCEPT, 'ICMPv6 errors still');
  });

  test('a frame cut short is rejected, not read past its end', () => {
    assert.equal(runBpf(filter6, frame6({}).subarray(0, 14 + 40)), 0, 'no transport header');
    assert.equal(runBpf(filter6, frame6({}).subarray(0, 14 + 30)), 0, 'cut in the address');
    assert.equal(runBpf(filter6, new Uint8Array(0)), 0);
  });

  test('every port of a small range, and the ports around it', () => {
    const f = captureFilter6(ADDR6, 100, 120);
    for (let port = 90; port <= 130; port++) {
      const want = port >= 100 && port <= 120 ? ACCEPT : 0;
      assert.equal(runBpf(f, frame6({ next: 17, dport: port })), want, `UDP ${port}`);
      assert.equal(runBpf(f, frame6({ next: 58, icmpType: 129, icmpId: port })), want, `echo id ${port}`);
    }
  });

  test('the IPv4 filter rejects IPv6 frames to the same words, and the IPv6 one IPv4 frames', () => {
    assert.equal(runBpf(captureFilter(ADDR6[0], LO, HI), frame6({ next: 17, dport: 61500 })), 0);
    assert.equal(runBpf(filter6, frame({ proto: 17, dport: 61500 })), 0);
  });
});
