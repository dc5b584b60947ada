// The checks a DHCP client message from a VM passes before anyone serves it, the gateway (from-vm.ts) or,
// across a bridge, the LAN's server (bridge-dhcp.ts): one place, so the two cannot drift apart.

import type { Attachment } from '../net/attachment.js';
import { DHCP_CLIENT_PORT } from '../services/dhcp.js';
import { Drop } from '../stats/drops.js';
import * as ipv4 from '../wire/ipv4.js';
import * as udp from '../wire/udp.js';
import { settleChecksum } from './offload.js';
import type { Pipeline } from './pipeline.js';

/**
 * Checks the UDP datagram of a DHCP client message from `att` (the frame at `frame`, its IPv4 header at
 * `ip`, `hl` and `total` long): whole, from the client port, its checksum right, from the VM's own address
 * or none yet; returns Drop.NONE or a reason.
 */
export function checkDhcpClient(
  p: Pipeline,
  att: Attachment,
  frame: number,
  ip: number,
  hl: number,
  total: number,
): number {
  const dv = p.dv;
  const l4 = ip + hl;
  const ulen = udp.udpLen(dv, l4);
  if (ulen < udp.UDP_HEADER_LEN || ulen > total - hl) return Drop.UDP_MALFORMED;
  if (udp.srcPort(dv, l4) !== DHCP_CLIENT_PORT) return Drop.DHCP_NOT_CLIENT_PORT;
  // A client's unicast renewal through the VM's UDP stack may leave its checksum to offload; it is filled
  // in before the check (and before a bridge rewrites chaddr, which updates it).
  if (!settleChecksum(p, frame, ip, hl, total)) return Drop.BAD_OFFLOAD;
  const src = ipv4.src(dv, ip);
  if (!udp.checksumOk(dv, p.u8, l4, ulen, src, ipv4.dst(dv, ip))) return Drop.UDP_BAD_CHECKSUM;
  if (src !== 0 && src !== att.ip) return Drop.IP_SRC_SPOOFED;
  return Drop.NONE;
}
