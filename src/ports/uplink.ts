// What the NAT uplink's sockets need of the host: the default route's interface (the uplink when none is
// named), and the filter of the packet socket that captures, before the host's stack, the replies
// addressed to softnet's ports.

import { readFileSync } from 'node:fs';

/** The interface of the default route in this namespace, from /proc/net/route; null when there is none. */
export function defaultRouteInterface(): string | null {
  for (const line of readFileSync('/proc/net/route', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 7 && f[1] === '00000000' && f[7] === '00000000') return f[0];
  }
  return null;
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
