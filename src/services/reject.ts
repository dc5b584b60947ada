// Reject mode (--reject): a blocked destination answers for itself, so a VM's connection fails at once
// instead of hanging until its timeout. TCP gets a RST (RFC 9293 3.10.7.1: the reply to a segment for
// no connection), everything else an ICMP destination unreachable, administratively prohibited.

import { checksum, pseudoHeader } from '../wire/checksum.js';
import { EtherType, emitEthernet } from '../wire/ethernet.js';
import { IcmpType } from '../wire/icmp.js';
import { emitIpv4, IPV4, IPV4_HEADER_LEN, IpProto } from '../wire/ipv4.js';
import { TCP, TCP_HEADER_LEN, TcpFlag } from '../wire/tcp.js';
import { emitIcmpError } from './icmp.js';

const ADMIN_PROHIBITED = 13;

/**
 * Writes at `out` the answer to the blocked IPv4 packet at `ip` (`total` bytes, header `hl`): a RST for
 * TCP (unless it is a RST itself: then nothing, and 0 is returned), else an ICMP unreachable. The answer
 * comes from the blocked address. Returns the frame's length.
 */
export function emitRejection(
  u8: Uint8Array,
  dv: DataView,
  out: number,
  ip: number,
  hl: number,
  total: number,
  gatewayMac: Uint8Array,
  vmMac: Uint8Array,
): number {
  const from = dv.getUint32(ip + IPV4.DST);
  if (dv.getUint8(ip + IPV4.PROTO) !== IpProto.TCP || total - hl < TCP_HEADER_LEN) {
    return emitIcmpError(
      u8,
      dv,
      out,
      ip,
      total,
      IcmpType.DEST_UNREACHABLE,
      ADMIN_PROHIBITED,
      0,
      gatewayMac,
      vmMac,
      from,
    );
  }
  const tcp = ip + hl;
  if (dv.getUint8(tcp + TCP.FLAGS) & TcpFlag.RST) return 0;
  const to = dv.getUint32(ip + IPV4.SRC);
  const rip = emitEthernet(u8, out, vmMac, 0, gatewayMac, EtherType.IPV4);
  const rtcp = rip + IPV4_HEADER_LEN;
  writeRst(dv, u8, rtcp, tcp, total - hl);
  dv.setUint16(
    rtcp + TCP.CHECKSUM,
    checksum(u8, rtcp, TCP_HEADER_LEN, pseudoHeader(from, to, IpProto.TCP, TCP_HEADER_LEN)),
  );
  emitIpv4(dv, u8, rip, IpProto.TCP, from, to, TCP_HEADER_LEN, 64);
  return rtcp + TCP_HEADER_LEN - out;
}

/**
 * Writes at `rtcp` the header of the RST that answers the TCP segment at `tcp` (`len` bytes, header and
 * data; not itself a RST), as RFC 9293 3.10.7.1 has it: ports swapped, the segment's ACK as its sequence
 * number, or an ACK of all it carried. The checksum field is left 0.
 */
export function writeRst(dv: DataView, u8: Uint8Array, rtcp: number, tcp: number, len: number): void {
  const flags = dv.getUint8(tcp + TCP.FLAGS);
  const dataLen = len - ((dv.getUint8(tcp + TCP.DATA_OFF) >>> 4) << 2);
  let seq = 0;
  let ack = 0;
  let rflags = TcpFlag.RST;
  if (flags & TcpFlag.ACK) seq = dv.getUint32(tcp + TCP.ACK);
  else {
    ack =
      (dv.getUint32(tcp + TCP.SEQ) +
        Math.max(dataLen, 0) +
        (flags & TcpFlag.SYN ? 1 : 0) +
        (flags & TcpFlag.FIN ? 1 : 0)) >>>
      0;
    rflags |= TcpFlag.ACK;
  }
  const sport = dv.getUint16(tcp + TCP.DST_PORT);
  const dport = dv.getUint16(tcp + TCP.SRC_PORT);
  u8.fill(0, rtcp, rtcp + TCP_HEADER_LEN);
  dv.setUint16(rtcp + TCP.SRC_PORT, sport);
  dv.setUint16(rtcp + TCP.DST_PORT, dport);
  dv.setUint32(rtcp + TCP.SEQ, seq);
  dv.setUint32(rtcp + TCP.ACK, ack);
  dv.setUint8(rtcp + TCP.DATA_OFF, (TCP_HEADER_LEN / 4) << 4);
  dv.setUint8(rtcp + TCP.FLAGS, rflags);
}
