// Hand-made IPv4 frames, good and bad, sent from inside a VM namespace through a packet socket, so a test
// controls every header field. Built here, independently of src/wire, so a bug there cannot hide in both.

import type { Topology } from './topology.js';

const PYTHON = '/usr/bin/python3';

// Sends each argument after the first (hex) as one frame on interface argv[1].
const SENDER = `
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for h in sys.argv[2:]:
    s.send(bytes.fromhex(h))
`;

/** The Internet checksum of `b` (RFC 1071), as it goes into a header. */
export function inetChecksum(b: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length % 2) sum += b[b.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ip4(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

function mac(m: string): Buffer {
  return Buffer.from(m.split(':').map((x) => Number.parseInt(x, 16)));
}

/** Where a frame comes from and goes to. */
export interface Ends {
  srcMac: string;
  dstMac: string;
  src: string;
  dst: string;
}

/** What to get wrong (or right) in a frame. */
export interface Faults {
  /** Added to the L4 checksum (0: correct). */
  checksumDelta?: number;
  /** Added to the UDP length field. */
  udpLenDelta?: number;
  /** Added to the IPv4 total length field. */
  ipLenDelta?: number;
  /** TCP data offset in 32-bit words (default 5). */
  tcpDataOffset?: number;
}

function frame(ends: Ends, proto: number, l4: Buffer, f: Faults): Buffer {
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + l4.length + (f.ipLenDelta ?? 0), 2);
  ip.writeUInt16BE(Math.floor(Math.random() * 0xffff), 4);
  ip.writeUInt16BE(0x4000, 6); // DF
  ip[8] = 64;
  ip[9] = proto;
  ip4(ends.src).copy(ip, 12);
  ip4(ends.dst).copy(ip, 16);
  ip.writeUInt16BE(inetChecksum(ip), 10);
  const eth = Buffer.concat([mac(ends.dstMac), mac(ends.srcMac), Buffer.from([0x08, 0x00])]);
  return Buffer.concat([eth, ip, l4]);
}

function pseudoSum(ends: Ends, proto: number, len: number): number {
  const p = Buffer.concat([ip4(ends.src), ip4(ends.dst), Buffer.from([0, proto, len >> 8, len & 0xff])]);
  return ~inetChecksum(p) & 0xffff;
}

/** An Ethernet frame carrying IPv4/UDP. */
export function udpFrame(ends: Ends, sport: number, dport: number, payload: Buffer, f: Faults = {}): Buffer {
  const udp = Buffer.alloc(8 + payload.length);
  udp.writeUInt16BE(sport, 0);
  udp.writeUInt16BE(dport, 2);
  udp.writeUInt16BE(udp.length + (f.udpLenDelta ?? 0), 4);
  payload.copy(udp, 8);
  const sum = inetChecksum(udp, pseudoSum(ends, 17, udp.length)) || 0xffff;
  udp.writeUInt16BE((sum + (f.checksumDelta ?? 0)) & 0xffff, 6);
  return frame(ends, 17, udp, f);
}

export const TcpFlag = { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10 } as const;

/** An Ethernet frame carrying IPv4/TCP with `flags` and no payload. */
export function tcpFrame(ends: Ends, sport: number, dport: number, flags: number, f: Faults = {}): Buffer {
  const tcp = Buffer.alloc(20);
  tcp.writeUInt16BE(sport, 0);
  tcp.writeUInt16BE(dport, 2);
  tcp.writeUInt32BE(Math.floor(Math.random() * 0xffffffff), 4);
  tcp[12] = (f.tcpDataOffset ?? 5) << 4;
  tcp[13] = flags;
  tcp.writeUInt16BE(64240, 14);
  const sum = inetChecksum(tcp, pseudoSum(ends, 6, tcp.length));
  tcp.writeUInt16BE((sum + (f.checksumDelta ?? 0)) & 0xffff, 16);
  return frame(ends, 6, tcp, f);
}

/** Sends `frames` in order on `ifname` inside `ns`. */
export async function sendFrames(
  topo: Topology,
  ns: string,
  ifname: string,
  frames: Buffer[],
): Promise<void> {
  await topo.exec(ns, PYTHON, ['-c', SENDER, ifname, ...frames.map((b) => b.toString('hex'))], 10_000);
}
