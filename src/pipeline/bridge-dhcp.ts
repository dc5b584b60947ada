// DHCP across a bridge: a VM's client messages go to the LAN's server as if its NIC had the external MAC
// (chaddr, and a client identifier made of the MAC, rewritten), and the server's replies come back to the
// VM at its own MAC; the snoop (services/dhcp-snoop.ts) learns from both which address the VM may use.
// DHCP is the slow path: the messages are parsed into objects; the rewrite itself is in place, the UDP
// checksum updated for it. When a VM goes away, softnet sends its release for it (emitRelease).

import { randomBytes } from 'node:crypto';
import type { Attachment } from '../net/attachment.js';
import type { BridgeLan } from '../net/bridge-lan.js';
import { DHCP_CLIENT_PORT, emitDhcpDatagram } from '../services/dhcp.js';
import type { LanServer } from '../services/lease-store.js';
import { Drop } from '../stats/drops.js';
import { monotonicMs } from '../util/clock.js';
import { formatMac, parseMac } from '../wire/addr.js';
import { writeMacUpdating } from '../wire/checksum.js';
import {
  BOOTP,
  CLIENT_ID_ETHERNET,
  DhcpOp,
  DhcpOption,
  DhcpType,
  parseDhcp,
  u32Option,
} from '../wire/dhcp.js';
import { ETH, ETH_HEADER_LEN, isGroupMac, sameMac, writeMac } from '../wire/ethernet.js';
import * as ipv4 from '../wire/ipv4.js';
import * as udp from '../wire/udp.js';
import { UDP, UDP_HEADER_LEN } from '../wire/udp.js';
import { checkDhcpClient } from './dhcp-client.js';
import type { Pipeline } from './pipeline.js';

/**
 * Relays DHCP client message from `att` (the frame at `frame`, its IPv4 header at `ip`) to the LAN;
 * returns Drop.NONE or a reason.
 */
export function relayFromVm(
  p: Pipeline,
  lan: BridgeLan,
  att: Attachment,
  frame: number,
  ip: number,
  hl: number,
  total: number,
): number {
  const checked = checkDhcpClient(p, att, frame, ip, hl, total);
  if (checked !== Drop.NONE) return checked;
  const u8 = p.u8;
  const l4 = ip + hl;
  const ulen = udp.udpLen(p.dv, l4);
  const bootp = l4 + UDP_HEADER_LEN;
  const parsed = parseDhcp(u8, bootp, ulen - UDP_HEADER_LEN);
  if (!parsed.ok) return parsed.reason;
  // The VM is a client of the LAN's server, never a relay agent nor another client.
  if (parsed.msg.giaddr !== 0) return Drop.DHCP_RELAYED;
  if (!sameMac(u8, bootp + BOOTP.CHADDR, att.mac)) return Drop.DHCP_CHADDR_SPOOFED;
  const len = ETH_HEADER_LEN + total;
  if (len > lan.maxFrame) return Drop.LAN_TOO_BIG;
  const drop = lan.snoop.fromClient(att, parsed.msg);
  if (drop !== Drop.NONE) return drop;
  rewriteMacs(p, l4, ulen, att.mac, att.extMac);
  writeMac(u8, frame + ETH.SRC, att.extMac);
  p.queue(lan.tx, frame, len);
  return Drop.NONE;
}

/**
 * Relays a DHCP server message from the LAN (the frame at `frame`, its IPv4 header at `ip`) to the VM
 * whose external MAC is its chaddr; returns Drop.NONE or a reason.
 */
export function relayToVm(
  p: Pipeline,
  lan: BridgeLan,
  frame: number,
  ip: number,
  hl: number,
  total: number,
): number {
  const dv = p.dv;
  const u8 = p.u8;
  const l4 = ip + hl;
  const ulen = udp.udpLen(dv, l4);
  if (ulen < UDP_HEADER_LEN || ulen > total - hl) return Drop.UDP_MALFORMED;
  if (!udp.checksumOk(dv, u8, l4, ulen, ipv4.src(dv, ip), ipv4.dst(dv, ip))) return Drop.UDP_BAD_CHECKSUM;
  const bootp = l4 + UDP_HEADER_LEN;
  if (ulen - UDP_HEADER_LEN < BOOTP.OPTIONS) return Drop.DHCP_TRUNCATED;
  const vm = lan.vmWithMac(u8, bootp + BOOTP.CHADDR);
  if (vm === undefined) return Drop.LAN_DHCP_NOT_VM;
  const group = isGroupMac(u8, frame + ETH.DST);
  if (!group && !sameMac(u8, frame + ETH.DST, vm.extMac)) return Drop.LAN_DST_NOT_VM;
  const parsed = parseDhcp(u8, bootp, ulen - UDP_HEADER_LEN, DhcpOp.BOOTREPLY);
  if (!parsed.ok) return parsed.reason;
  const drop = lan.snoop.fromServer(vm, parsed.msg, formatMac(u8, frame + ETH.SRC), monotonicMs());
  if (drop !== Drop.NONE) return drop;
  rewriteMacs(p, l4, ulen, vm.extMac, vm.mac);
  // A broadcast reply stays one; it goes to this VM alone, as it is about no other.
  if (!group) writeMac(u8, frame + ETH.DST, vm.mac);
  p.queue(vm.port, frame, ETH_HEADER_LEN + total);
  return Drop.NONE;
}

/**
 * Writes at `off` the DHCPRELEASE (RFC 2131 4.4.6) of a bridged VM that went away: from its external MAC
 * and address `ip`, unicast to the server that leased it, under the client identifier it was leased
 * under. Returns the frame's length.
 */
export function emitRelease(
  u8: Uint8Array,
  dv: DataView,
  off: number,
  extMac: Uint8Array,
  ip: number,
  server: LanServer,
): number {
  const serverMac = parseMac(server.mac);
  if (serverMac === null) throw new Error(`bad server MAC ${server.mac}`);
  const chaddr = new Uint8Array(16);
  chaddr.set(extMac);
  const options: Array<readonly [number, Uint8Array]> = [
    [DhcpOption.MESSAGE_TYPE, Uint8Array.of(DhcpType.RELEASE)],
    [DhcpOption.SERVER_ID, u32Option(server.ip)],
  ];
  if (server.clientId !== undefined)
    options.push([DhcpOption.CLIENT_ID, Buffer.from(server.clientId, 'hex')]);
  const release = {
    op: DhcpOp.BOOTREQUEST,
    xid: randomBytes(4).readUInt32BE(),
    flags: 0,
    ciaddr: ip,
    yiaddr: 0,
    siaddr: 0,
    chaddr,
    options,
  };
  return emitDhcpDatagram(u8, dv, off, release, extMac, serverMac, ip, server.ip, DHCP_CLIENT_PORT);
}

/**
 * Replaces MAC `from` by `to` in the DHCP message of the UDP datagram at `l4` (`ulen` bytes): chaddr,
 * which must be `from`, and a client identifier of type Ethernet holding `from`, so clones with one MAC
 * are two clients to the server. The UDP checksum follows.
 */
function rewriteMacs(p: Pipeline, l4: number, ulen: number, from: Uint8Array, to: Uint8Array): void {
  const u8 = p.u8;
  const dv = p.dv;
  const bootp = l4 + UDP_HEADER_LEN;
  const before = dv.getUint16(l4 + UDP.CHECKSUM);
  let check = writeMacUpdating(u8, bootp + BOOTP.CHADDR, to, l4, before);
  const id = clientIdMac(u8, bootp, l4 + ulen, from);
  if (id >= 0) check = writeMacUpdating(u8, id, to, l4, check);
  // Zero means "no checksum" in UDP; a computed zero is sent as 0xffff.
  if (before !== 0) dv.setUint16(l4 + UDP.CHECKSUM, check === 0 ? 0xffff : check);
}

/**
 * Where the MAC of a client identifier `01 MAC` (option 61) holding `mac` sits in the DHCP message at
 * `bootp` ending at `end`, in its options or the fields they overflow into (RFC 2131 4.1); -1 if none.
 * The message was parsed already, so its options are known to be well formed.
 */
function clientIdMac(u8: Uint8Array, bootp: number, end: number, mac: Uint8Array): number {
  const main = findClientId(u8, bootp + BOOTP.OPTIONS, end, mac);
  if (main >= 0) return main;
  const overload = overloadOf(u8, bootp + BOOTP.OPTIONS, end);
  if (overload & 1) {
    const at = findClientId(u8, bootp + BOOTP.FILE, bootp + BOOTP.COOKIE, mac);
    if (at >= 0) return at;
  }
  return overload & 2 ? findClientId(u8, bootp + BOOTP.SNAME, bootp + BOOTP.FILE, mac) : -1;
}

function findClientId(u8: Uint8Array, at: number, end: number, mac: Uint8Array): number {
  while (at + 1 < end && u8[at] !== DhcpOption.END) {
    if (u8[at] === DhcpOption.PAD) {
      at++;
      continue;
    }
    const len = u8[at + 1];
    if (
      u8[at] === DhcpOption.CLIENT_ID &&
      len === 7 &&
      at + 9 <= end &&
      u8[at + 2] === CLIENT_ID_ETHERNET &&
      sameMac(u8, at + 3, mac)
    )
      return at + 3;
    at += 2 + len;
  }
  return -1;
}

function overloadOf(u8: Uint8Array, at: number, end: number): number {
  while (at + 1 < end && u8[at] !== DhcpOption.END) {
    if (u8[at] === DhcpOption.PAD) {
      at++;
      continue;
    }
    if (u8[at] === DhcpOption.OVERLOAD && u8[at + 1] === 1 && at + 2 < end) return u8[at + 2];
    at += 2 + u8[at + 1];
  }
  return 0;
}
