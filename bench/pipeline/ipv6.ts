// The in-process bench's IPv6 scenarios, on the same network and VM as its IPv4 ones: the VM's echo,
// router and neighbor solicitations to fe80::1 (answered in place), NAT66 out to the world for UDP and TCP
// (a flow the VM opened first, as a guest does), and the world's replies back through the uplink's IPv6
// capture. Frames come from test/lib/frames6.ts, whose checksums are its own, so a scenario whose frame
// softnet rejects fails the bench instead of measuring a drop.

import type { Port } from '../../src/ports/port.js';
import { TcpFlag } from '../../src/wire/tcp.js';
import {
  bytes,
  capture6,
  echo6,
  eth6,
  full6,
  linkLocalOf,
  ns6,
  parse6,
  rs6,
  solicitedNode,
  tcp6,
  udp6,
} from '../../test/lib/frames6.js';
import type { InProcess } from '../../test/lib/in-process.js';

/** A scenario: name, port fed, frame, port whose sends are counted, whether the VM is captured meanwhile. */
export type Scenario = [name: string, port: Port, frame: Uint8Array, outPort: number, captured: boolean];

/** The bench network's ULA /48 and the address its VM, attached first, uses in its /64 (subnet id 1). */
export const BENCH_ULA = 'fd00:5:be::/48';
const VM6 = 'fd00:5:be:1::a';
/** The world's host and the uplink's global address NAT66 translates to. */
export const WORLD6 = '2001:db8:2::10';
export const UPLINK6 = '2001:db8:1::2';
/** What the bench's policy allows the VM beyond the defaults (documentation prefixes are blocked). */
export const WORLD6_NET = '2001:db8:2::/64';

const ETH_IP6 = 14 + 40;
const UDP_PORT = 40001;
const TCP_PORT = 40002;
const SERVER_PORT = 5201;

/** The UDP payload that makes a frame of `len` bytes. */
const udpPayload = (len: number) => bytes(len - ETH_IP6 - 8);
/** The TCP payload that makes a frame of `len` bytes (a segment without options). */
const tcpPayload = (len: number) => bytes(len - ETH_IP6 - 20);

/**
 * The IPv6 scenarios of `net` (built with BENCH_ULA and NAT66 from UPLINK6, allowing WORLD6_NET), whose VM
 * has MAC `vmMac` and sees the gateway at `gwMac`. Opens a UDP and a TCP flow to the world first; throws
 * if either gets no mapping.
 */
export function ipv6Scenarios(net: InProcess, vmMac: Uint8Array, gwMac: Uint8Array): Scenario[] {
  const { io, p, vmPort } = net;
  const raw6 = net.nat?.v6?.raw;
  const capture = net.capture6;
  if (!raw6 || !capture) throw new Error('the bench network has no NAT66');
  const vmLl = linkLocalOf(vmMac);
  const fromVm = (pkt: Uint8Array) => eth6(pkt, vmMac, gwMac);

  /** Sends `frame` from `port` and returns the one packet NAT66 sent out, or throws. */
  const exchange = (port: Port, frame: Uint8Array, out: number, what: string): Uint8Array => {
    const keep = io.keep;
    io.keep = true;
    io.deliver(port.id, frame);
    p.drain(port);
    const sent = io.take(out);
    io.keep = keep;
    if (sent.length !== 1) throw new Error(`${what}: ${sent.length} packets out instead of 1`);
    return sent[0];
  };
  const outPort = (pkt: Uint8Array, what: string): number => {
    const ip = parse6(pkt, 0);
    if (ip.src !== full6(UPLINK6)) throw new Error(`${what}: NAT66 sent from ${ip.src}, not ${UPLINK6}`);
    return ip.sport;
  };

  const udpExt = outPort(
    exchange(vmPort, fromVm(udp6(VM6, WORLD6, UDP_PORT, SERVER_PORT, udpPayload(64))), raw6.id, 'UDP out'),
    'UDP out',
  );
  // The TCP flow as a guest opens it: SYN out, SYN-ACK in, then the segments measured.
  const { SYN, ACK, PSH } = TcpFlag;
  const tcpExt = outPort(
    exchange(vmPort, fromVm(tcp6(VM6, WORLD6, TCP_PORT, SERVER_PORT, SYN)), raw6.id, 'TCP SYN out'),
    'TCP SYN out',
  );
  exchange(capture, capture6(tcp6(WORLD6, UPLINK6, SERVER_PORT, tcpExt, SYN | ACK)), vmPort.id, 'SYN-ACK in');
  exchange(vmPort, fromVm(tcp6(VM6, WORLD6, TCP_PORT, SERVER_PORT, ACK)), raw6.id, 'TCP ACK out');

  const tcpOut = (len: number) =>
    fromVm(tcp6(VM6, WORLD6, TCP_PORT, SERVER_PORT, len > 74 ? ACK | PSH : ACK, {}, tcpPayload(len)));
  const tcpIn = (len: number) =>
    capture6(tcp6(WORLD6, UPLINK6, SERVER_PORT, tcpExt, len > 74 ? ACK | PSH : ACK, {}, tcpPayload(len)));
  const udpIn = capture6(udp6(WORLD6, UPLINK6, SERVER_PORT, udpExt, udpPayload(64)));
  const sn = solicitedNode('fe80::1');
  return [
    [
      'vm -> fe80::1 ICMPv6 echo, 86 B (answered in place)',
      vmPort,
      fromVm(echo6(vmLl, 'fe80::1', 7, 1)),
      vmPort.id,
      false,
    ],
    [
      'vm -> fe80::1 router solicitation, 70 B (answered with an RA)',
      vmPort,
      eth6(rs6(vmLl, 'ff02::2', vmMac), vmMac, Uint8Array.of(0x33, 0x33, 0, 0, 0, 2)),
      vmPort.id,
      false,
    ],
    [
      'vm -> fe80::1 neighbor solicitation, 86 B (answered with an NA)',
      vmPort,
      eth6(ns6(vmLl, sn.ip, 'fe80::1', vmMac), vmMac, sn.mac),
      vmPort.id,
      false,
    ],
    [
      'vm -> world UDP over IPv6, 64 B (NAT66 out, checksum verified)',
      vmPort,
      fromVm(udp6(VM6, WORLD6, UDP_PORT, SERVER_PORT, udpPayload(64))),
      raw6.id,
      false,
    ],
    [
      'vm -> world UDP over IPv6, 1514 B (NAT66 out, checksum verified)',
      vmPort,
      fromVm(udp6(VM6, WORLD6, UDP_PORT, SERVER_PORT, udpPayload(1514))),
      raw6.id,
      false,
    ],
    [
      'vm -> world TCP ACK over IPv6, 74 B (NAT66 out, checksum verified)',
      vmPort,
      tcpOut(74),
      raw6.id,
      false,
    ],
    [
      'vm -> world TCP over IPv6, 1514 B (NAT66 out, checksum verified)',
      vmPort,
      tcpOut(1514),
      raw6.id,
      false,
    ],
    ['world -> vm UDP over IPv6, 64 B (NAT66 in)', capture, udpIn, vmPort.id, false],
    ['world -> vm TCP ACK over IPv6, 74 B (NAT66 in)', capture, tcpIn(74), vmPort.id, false],
    ['world -> vm TCP over IPv6, 1514 B (NAT66 in)', capture, tcpIn(1514), vmPort.id, false],
    [
      'world -> vm TCP over IPv6, 1514 B, the VM captured (softnet capture)',
      capture,
      tcpIn(1514),
      vmPort.id,
      true,
    ],
  ];
}
