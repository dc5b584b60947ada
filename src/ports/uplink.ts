// What the NAT uplink's sockets need of the host: the default route's interface (the uplink when none is
// named), for IPv4 and IPv6; the IPv6 address NAT66 sends from; and the filters of the packet sockets that
// capture, before the host's stack, the replies addressed to softnet's ports.

import { readFileSync } from 'node:fs';

/** The interface of the default route in this namespace, from /proc/net/route; null when there is none. */
export function defaultRouteInterface(): string | null {
  for (const line of readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 7 && f[1] === '00000000' && f[7] === '00000000') return f[0];
  }
  return null;
}

/** RTF_UP and RTF_REJECT (linux/ipv6_route.h): a route in use, and an unreachable/prohibit/blackhole one. */
const RTF_UP = 0x0001;
const RTF_REJECT = 0x0200;

/**
 * The interface of the IPv6 default route (::/0 from anywhere) in this namespace, from `path` (as
 * /proc/net/ipv6_route writes it); the one of the lowest metric when there are several; null when there is
 * none. Reject routes (unreachable, prohibit, blackhole) and those through `lo` are none.
 */
export function defaultRouteInterface6(path = '/proc/net/ipv6_route'): string | null {
  let best: string | null = null;
  let bestMetric = Infinity;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    // dest, dest prefix, source, source prefix, next hop, metric, refcount, use, flags, device
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[1] !== '00' || f[3] !== '00' || !/^0{32}$/.test(f[0])) continue;
    const flags = Number.parseInt(f[8], 16);
    if ((flags & RTF_UP) === 0 || (flags & RTF_REJECT) !== 0 || f[9] === 'lo') continue;
    const metric = Number.parseInt(f[5], 16);
    if (metric < bestMetric) {
      best = f[9];
      bestMetric = metric;
    }
  }
  return best;
}

/** IFA_F_* flags of /proc/net/if_inet6 (linux/if_addr.h). */
const IFA_F_TEMPORARY = 0x01;
const IFA_F_DADFAILED = 0x08;
const IFA_F_DEPRECATED = 0x20;
const IFA_F_TENTATIVE = 0x40;
const IFA_F_PERMANENT = 0x80;

/**
 * The IPv6 address NAT66 sends from on interface `ifname`, as four words, from `path` (as
 * /proc/net/if_inet6 writes it); null when it has none fit. Only a global-scope address that has passed
 * duplicate address detection and is not deprecated will do. A configured (permanent) non-ULA address
 * comes first, then any other non-ULA one, then a ULA (fc00::/7); within each, a stable address before a
 * temporary (privacy) one, which the kernel replaces within a day and with it every mapping; then the
 * lowest, so the choice does not change while the addresses do not.
 */
export function uplinkIpv6(ifname: string, path = '/proc/net/if_inet6'): Uint32Array | null {
  let best: string | null = null;
  let bestRank = Infinity;
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    // address, ifindex, prefix length, scope, flags, device
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || f[5] !== ifname || f[3] !== '00' || !/^[0-9a-f]{32}$/.test(f[0])) continue;
    const flags = Number.parseInt(f[4], 16);
    if ((flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED | IFA_F_DEPRECATED)) !== 0) continue;
    const ula = (Number.parseInt(f[0].slice(0, 2), 16) & 0xfe) === 0xfc;
    const tier = ula ? 2 : (flags & IFA_F_PERMANENT) !== 0 ? 0 : 1;
    const rank = tier * 2 + ((flags & IFA_F_TEMPORARY) !== 0 ? 1 : 0);
    if (rank < bestRank || (rank === bestRank && best !== null && f[0] < best)) {
      best = f[0];
      bestRank = rank;
    }
  }
  if (best === null) return null;
  const out = new Uint32Array(4);
  for (let i = 0; i < 4; i++) out[i] = Number.parseInt(best.slice(i * 8, i * 8 + 8), 16);
  return out;
}

// Classic BPF, as linux/filter.h encodes it.
const LD_W_ABS = 0x20;
const LD_H_ABS = 0x28;
const LD_B_ABS = 0x30;
const LDX_B_MSH = 0xb1;
const LD_H_IND = 0x48;
const LD_B_IND = 0x50;
const JA = 0x05;
const JEQ = 0x15;
const JGT = 0x25;
const JGE = 0x35;
const JSET = 0x45;
const RET = 0x06;

/** An instruction; jump targets are labels (or 0 for the next one), and so is a JA's k. */
type Insn = [code: number, jt: string | number, jf: string | number, k: number | string, label?: string];

/**
 * Assembles instructions into sock_filter bytes. A conditional jump reaches at most 255 instructions
 * ahead; one further is a bug in the program's layout and throws.
 */
function assemble(prog: Insn[]): Uint8Array {
  const at = new Map<string, number>();
  prog.forEach((insn, i) => {
    if (insn[4]) at.set(insn[4], i);
  });
  const out = new Uint8Array(prog.length * 8);
  const dv = new DataView(out.buffer);
  prog.forEach(([code, jt, jf, k], i) => {
    const rel = (j: string | number) => {
      if (typeof j === 'number') return j;
      const to = at.get(j);
      if (to === undefined || to <= i) throw new Error(`BPF: no label ${j} after instruction ${i}`);
      return to - i - 1;
    };
    const t = rel(jt);
    const f = rel(jf);
    if (t > 255 || f > 255) throw new Error(`BPF: a jump from instruction ${i} is too far`);
    dv.setUint16(i * 8, code, true);
    dv.setUint8(i * 8 + 2, t);
    dv.setUint8(i * 8 + 3, f);
    dv.setUint32(i * 8 + 4, rel(k) >>> 0, true);
  });
  return out;
}

/** Where the IPv4 header starts in a captured frame: after the uplink's Ethernet header. */
const IP = 14;
/** Ports compared in one run of a forward list before a long jump to the next: short jumps stay short. */
const RUN = 200;

/** Forwarded external ports, by protocol. */
export interface ForwardedPorts {
  tcp: readonly number[];
  udp: readonly number[];
}

/**
 * Accepts a port in `ports` (the destination port is in A), else drops: a compare per port, in runs that
 * each end with their own accept, so every conditional jump stays within reach.
 */
function portList(label: string, ports: readonly number[]): Insn[] {
  if (ports.length === 0) return [[RET, 0, 0, 0, label]];
  const out: Insn[] = [];
  for (let run = 0; run * RUN < ports.length; run++) {
    const part = ports.slice(run * RUN, (run + 1) * RUN);
    const accept = `${label}-accept-${run}`;
    part.forEach((port, i) => {
      out.push([JEQ, accept, 0, port, i === 0 ? (run === 0 ? label : `${label}-${run}`) : undefined]);
    });
    const last = (run + 1) * RUN >= ports.length;
    out.push(last ? [RET, 0, 0, 0] : [JA, 0, 0, `${label}-${run + 1}`]);
    out.push([RET, 0, 0, 0x40000, accept]);
  }
  return out;
}

/**
 * The capture filter (the socket takes only IPv4 frames already; the filter checks again, cheaply): IPv4 to
 * `addr` that is TCP or UDP to a port in [lo, hi] or to a forwarded port of its protocol, an ICMP echo
 * reply with an id in [lo, hi], an ICMP error (unreachable, time exceeded, parameter problem; softnet
 * checks what it quotes), or a later fragment (softnet checks whose it is).
 */
export function captureFilter(
  addr: number,
  lo: number,
  hi: number,
  forwards: ForwardedPorts = { tcp: [], udp: [] },
): Uint8Array {
  return assemble([
    [LD_H_ABS, 0, 0, 12],
    [JEQ, 0, 'drop', 0x0800],
    [LD_W_ABS, 0, 0, IP + 16],
    [JEQ, 0, 'drop', addr],
    [LD_H_ABS, 0, 0, IP + 6],
    [JSET, 'accept', 0, 0x1fff],
    [LD_B_ABS, 0, 0, IP + 9],
    [JEQ, 'tcp', 0, 6],
    [JEQ, 'udp', 0, 17],
    [JEQ, 'icmp', 'drop', 1],
    [LDX_B_MSH, 0, 0, IP, 'tcp'],
    [LD_H_IND, 0, 0, IP + 2],
    [JGE, 0, 'to-tcp-forwards', lo],
    [JGT, 'to-tcp-forwards', 'accept', hi],
    // The lists come last, maybe further than a conditional jump reaches.
    [JA, 0, 0, 'tcp-forwards', 'to-tcp-forwards'],
    [LDX_B_MSH, 0, 0, IP, 'udp'],
    [LD_H_IND, 0, 0, IP + 2],
    [JGE, 0, 'to-udp-forwards', lo],
    [JGT, 'to-udp-forwards', 'accept', hi],
    [JA, 0, 0, 'udp-forwards', 'to-udp-forwards'],
    [LDX_B_MSH, 0, 0, IP, 'icmp'],
    [LD_B_IND, 0, 0, IP],
    [JEQ, 0, 'errors', 0],
    [LD_H_IND, 0, 0, IP + 4],
    [JGE, 0, 'drop', lo],
    [JGT, 'drop', 'accept', hi],
    [JEQ, 'accept', 0, 3, 'errors'],
    [JEQ, 'accept', 0, 11],
    [JEQ, 'accept', 'drop', 12],
    [RET, 0, 0, 0x40000, 'accept'],
    [RET, 0, 0, 0, 'drop'],
    ...portList('tcp-forwards', forwards.tcp),
    ...portList('udp-forwards', forwards.udp),
  ]);
}

/** Where the IPv6 header starts in a captured frame, and where its transport header does when it follows at once. */
const IP6 = 14;
const L4 = IP6 + 40;

/**
 * The IPv6 capture filter (the socket takes only IPv6 frames already; the filter checks again, cheaply):
 * IPv6 to `addr` (four words) whose next header is TCP or UDP to a port in [lo, hi] or to a forwarded port
 * of its protocol, an ICMPv6 echo reply with an identifier in [lo, hi], an ICMPv6 error (destination
 * unreachable, packet too big, time exceeded, parameter problem; softnet checks what it quotes), or a
 * Fragment header (softnet checks whose it is). Any other extension header first is dropped: replies to
 * softnet's flows carry none.
 */
export function captureFilter6(
  addr: ArrayLike<number>,
  lo: number,
  hi: number,
  forwards: ForwardedPorts = { tcp: [], udp: [] },
): Uint8Array {
  return assemble([
    [LD_H_ABS, 0, 0, 12],
    [JEQ, 0, 'drop', 0x86dd],
    [LD_W_ABS, 0, 0, IP6 + 24],
    [JEQ, 0, 'drop', addr[0]],
    [LD_W_ABS, 0, 0, IP6 + 28],
    [JEQ, 0, 'drop', addr[1]],
    [LD_W_ABS, 0, 0, IP6 + 32],
    [JEQ, 0, 'drop', addr[2]],
    [LD_W_ABS, 0, 0, IP6 + 36],
    [JEQ, 0, 'drop', addr[3]],
    [LD_B_ABS, 0, 0, IP6 + 6],
    [JEQ, 'tcp', 0, 6],
    [JEQ, 'udp', 0, 17],
    [JEQ, 'icmp', 0, 58],
    [JEQ, 'accept', 'drop', 44],
    [LD_H_ABS, 0, 0, L4 + 2, 'tcp'],
    [JGE, 0, 'to-tcp-forwards', lo],
    [JGT, 'to-tcp-forwards', 'accept', hi],
    // The lists come last, maybe further than a conditional jump reaches.
    [JA, 0, 0, 'tcp-forwards', 'to-tcp-forwards'],
    [LD_H_ABS, 0, 0, L4 + 2, 'udp'],
    [JGE, 0, 'to-udp-forwards', lo],
    [JGT, 'to-udp-forwards', 'accept', hi],
    [JA, 0, 0, 'udp-forwards', 'to-udp-forwards'],
    [LD_B_ABS, 0, 0, L4, 'icmp'],
    [JEQ, 0, 'errors', 129],
    [LD_H_ABS, 0, 0, L4 + 4],
    [JGE, 0, 'drop', lo],
    [JGT, 'drop', 'accept', hi],
    // Types 1 to 4; 0 is unassigned.
    [JGT, 'drop', 0, 4, 'errors'],
    [JGE, 'accept', 'drop', 1],
    [RET, 0, 0, 0x40000, 'accept'],
    [RET, 0, 0, 0, 'drop'],
    ...portList('tcp-forwards', forwards.tcp),
    ...portList('udp-forwards', forwards.udp),
  ]);
}
