// Frames a test VM sends without a kernel behind it (over --vm-fd and --vm-socket), built with the
// project's own wire builders, frames of other kinds for in-process tests, the bench and the fuzzer, and a
// reader for the DHCP replies that come back.

import { type DhcpOutcome, emitDhcpFrame } from '../../src/services/dhcp.js';
import { ArpOp, emitArp } from '../../src/wire/arp.js';
import { checksum } from '../../src/wire/checksum.js';
import { type DhcpMessage, DhcpOp, DhcpOption, DhcpType, parseDhcp, u32Option } from '../../src/wire/dhcp.js';
import { ETH_HEADER_LEN, EtherType, emitEthernet } from '../../src/wire/ethernet.js';
import { ICMP, IcmpType } from '../../src/wire/icmp.js';
import * as ipv4 from '../../src/wire/ipv4.js';
import { IPV4_HEADER_LEN, IpProto } from '../../src/wire/ipv4.js';
import { TCP } from '../../src/wire/tcp.js';
import { emitUdp, UDP_HEADER_LEN } from '../../src/wire/udp.js';

const BROADCAST = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff);

/** A DHCP client message from `mac` as a whole Ethernet frame, sent from 0.0.0.0 to broadcast. */
export function dhcpFrame(
  mac: Uint8Array,
  xid: number,
  type: number,
  options: Array<[number, number[]]> = [],
): Uint8Array {
  const dhcp = new Uint8Array(300);
  const dv = new DataView(dhcp.buffer);
  dv.setUint8(0, DhcpOp.BOOTREQUEST);
  dv.setUint8(1, 1);
  dv.setUint8(2, 6);
  dv.setUint32(4, xid);
  dhcp.set(mac, 28);
  dv.setUint32(236, 0x63825363);
  let at = 240;
  for (const [code, data] of [[DhcpOption.MESSAGE_TYPE, [type]] as [number, number[]], ...options]) {
    dhcp[at] = code;
    dhcp[at + 1] = data.length;
    dhcp.set(data, at + 2);
    at += 2 + data.length;
  }
  dhcp[at] = DhcpOption.END;
  const frame = new Uint8Array(ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + dhcp.length);
  const fdv = new DataView(frame.buffer);
  const ip = emitEthernet(frame, 0, BROADCAST, 0, mac, EtherType.IPV4);
  const udp = ip + IPV4_HEADER_LEN;
  frame.set(dhcp, udp + UDP_HEADER_LEN);
  emitUdp(fdv, frame, udp, 0, 0xffffffff, 68, 67, dhcp.length);
  ipv4.emitIpv4(fdv, frame, ip, IpProto.UDP, 0, 0xffffffff, UDP_HEADER_LEN + dhcp.length, 64);
  return frame;
}

/**
 * An Ethernet/IPv4 frame of `len` bytes from `src` to `dst`: UDP 40000 -> 5001, TCP 40000 -> 80 with
 * `tcpFlags` (its checksum left zero), or an ICMP echo request with id 7; zero payload.
 */
export function ipFrame(
  src: Uint8Array,
  dst: Uint8Array,
  srcIp: number,
  dstIp: number,
  proto: number,
  len = 64,
  tcpFlags = 0,
): Uint8Array {
  const f = new Uint8Array(len);
  const dv = new DataView(f.buffer);
  const ip = emitEthernet(f, 0, dst, 0, src, EtherType.IPV4);
  const l4 = ip + IPV4_HEADER_LEN;
  const payload = len - l4;
  if (proto === IpProto.UDP) emitUdp(dv, f, l4, srcIp, dstIp, 40000, 5001, payload - UDP_HEADER_LEN);
  if (proto === IpProto.TCP) {
    dv.setUint16(l4 + TCP.SRC_PORT, 40000);
    dv.setUint16(l4 + TCP.DST_PORT, 80);
    dv.setUint8(l4 + TCP.DATA_OFF, 0x50);
    dv.setUint8(l4 + TCP.FLAGS, tcpFlags);
  }
  if (proto === IpProto.ICMP) {
    f[l4 + ICMP.TYPE] = IcmpType.ECHO_REQUEST;
    dv.setUint16(l4 + ICMP.ID, 7);
    dv.setUint16(l4 + ICMP.CHECKSUM, checksum(f, l4, payload));
  }
  ipv4.emitIpv4(dv, f, ip, proto, srcIp, dstIp, payload, 64);
  return f;
}

/** A 60-byte broadcast ARP frame (a request unless `op` says otherwise) from `sha`. */
export function arpFrame(sha: Uint8Array, spa: number, tpa: number, op: number = ArpOp.REQUEST): Uint8Array {
  const f = new Uint8Array(60);
  const a = emitEthernet(f, 0, BROADCAST, 0, sha, EtherType.ARP);
  emitArp(new DataView(f.buffer), f, a, op, sha, spa, new Uint8Array(6), 0, tpa);
  return f;
}

/**
 * A DHCP server's reply as a LAN server sends it: from `serverMac`/`serverIp` to broadcast (unless `dstMac`
 * and `dstIp` say otherwise), for client `chaddr`, offering or acknowledging `yiaddr`.
 */
export function dhcpServerFrame(
  serverMac: Uint8Array,
  serverIp: number,
  chaddr: Uint8Array,
  xid: number,
  type: number,
  yiaddr: number,
  options: Array<[number, number[]]> = [],
  dst: { mac: Uint8Array; ip: number } | null = null,
): Uint8Array {
  const chaddr16 = new Uint8Array(16);
  chaddr16.set(chaddr);
  const out: DhcpOutcome = {
    reply: {
      xid,
      flags: 0,
      ciaddr: 0,
      yiaddr,
      siaddr: 0,
      chaddr: chaddr16,
      options: [
        [DhcpOption.MESSAGE_TYPE, Uint8Array.of(type)],
        [DhcpOption.SERVER_ID, u32Option(serverIp)],
        ...options.map(([code, data]) => [code, Uint8Array.from(data)] as const),
      ],
    },
    dstIp: dst?.ip ?? 0xffffffff,
    broadcast: dst === null,
  };
  const buf = new Uint8Array(1024);
  const len = emitDhcpFrame(buf, new DataView(buf.buffer), 0, out, serverMac, serverIp);
  const f = buf.slice(0, len);
  if (dst) f.set(dst.mac, 0);
  return f;
}

/** The DHCP reply carried by an Ethernet frame, and the UDP payload length; null if the frame is not one. */
export function dhcpReply(frame: Uint8Array): { msg: DhcpMessage; payloadLen: number } | null {
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.length);
  if (frame.length < ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN || dv.getUint16(12) !== EtherType.IPV4)
    return null;
  const ip = ETH_HEADER_LEN;
  if (ipv4.proto(dv, ip) !== IpProto.UDP) return null;
  const udp = ip + ipv4.headerLen(dv, ip);
  if (dv.getUint16(udp + 2) !== 68) return null;
  const payloadLen = dv.getUint16(udp + 4) - UDP_HEADER_LEN;
  const parsed = parseDhcp(frame, udp + UDP_HEADER_LEN, payloadLen, DhcpOp.BOOTREPLY);
  return parsed.ok ? { msg: parsed.msg, payloadLen } : null;
}

export { DhcpOption, DhcpType };

/** The DHCP client message carried by an Ethernet frame (to port 67); null if the frame is not one. */
export function dhcpRequest(frame: Uint8Array): DhcpMessage | null {
  const dv = new DataView(frame.buffer, frame.byteOffset, frame.length);
  if (frame.length < ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN || dv.getUint16(12) !== EtherType.IPV4)
    return null;
  const udp = ETH_HEADER_LEN + ipv4.headerLen(dv, ETH_HEADER_LEN);
  if (ipv4.proto(dv, ETH_HEADER_LEN) !== IpProto.UDP || dv.getUint16(udp + 2) !== 67) return null;
  const parsed = parseDhcp(frame, udp + UDP_HEADER_LEN, dv.getUint16(udp + 4) - UDP_HEADER_LEN);
  return parsed.ok ? parsed.msg : null;
}
