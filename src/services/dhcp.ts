/*
 * The DHCP server of one network (RFC 2131), answering each VM on its own port.
 *
 * Theory of operation
 * - Every message arrives from a known attachment, so the client's identity is the attachment, never a
 *   field the guest controls; chaddr must be the VM's own MAC, and relayed messages are refused.
 * - DISCOVER -> OFFER of the address the VM holds, else the one it asks for if free, else the lowest
 *   free one; a full pool gets no OFFER and a counted reason.
 * - REQUEST with our server id (SELECTING), without one (INIT-REBOOT with option 50, RENEWING and
 *   REBINDING with ciaddr): ACK when the address is free or already the VM's, NAK otherwise. softnet is
 *   the only server a VM can hear, so it answers INIT-REBOOT authoritatively rather than staying silent.
 * - REQUEST for another server id: the VM took another offer; ours is withdrawn, nothing is sent.
 * - DECLINE quarantines the address for one lease time; RELEASE frees the lease; INFORM gets the
 *   configuration without an address.
 * - Replies go to ciaddr when the client has one, else broadcast when it set the broadcast flag, else to
 *   yiaddr at chaddr; a NAK is always broadcast. Every reply is padded to BOOTP's 300 bytes.
 */

import type { Attachment } from '../net/attachment.js';
import type { NetworkConfig } from '../net/network.js';
import { inSubnet } from '../net/network.js';
import { Drop } from '../stats/drops.js';
import { formatIpv4, formatMac } from '../wire/addr.js';
import {
  BROADCAST_FLAG,
  classlessRoutes,
  type DhcpMessage,
  DhcpOption,
  type DhcpReply,
  DhcpType,
  dhcpReplyLen,
  emitDhcp,
  optionAddr,
  u32Option,
} from '../wire/dhcp.js';
import { ETH_HEADER_LEN, EtherType, emitEthernet } from '../wire/ethernet.js';
import { emitIpv4, IPV4_HEADER_LEN, IpProto } from '../wire/ipv4.js';
import { emitUdp, UDP_HEADER_LEN } from '../wire/udp.js';
import type { LeaseTable } from './leases.js';

/** How long an OFFER holds its address for the client. */
export const OFFER_HOLD_MS = 60_000;

/** A reply and where it goes. */
export interface DhcpOutcome {
  reply: DhcpReply;
  /** IPv4 destination: ciaddr, yiaddr or 255.255.255.255. */
  dstIp: number;
  /** Whether the Ethernet destination is broadcast rather than chaddr. */
  broadcast: boolean;
}

const NO_REPLY = Drop.NONE;

/** Answers DHCP for one network. */
export class DhcpServer {
  private readonly fixedOptions: Array<readonly [number, Uint8Array]>;
  private readonly routes: Uint8Array | null;

  constructor(
    private readonly net: NetworkConfig,
    private readonly leases: LeaseTable,
    /** Called when an attachment's usable address changes (0: it has none). */
    private readonly assign: (att: Attachment, ip: number) => void,
  ) {
    const enc = new TextEncoder();
    this.fixedOptions = [
      [DhcpOption.SUBNET_MASK, u32Option(net.mask)],
      [DhcpOption.ROUTER, u32Option(net.gateway)],
      [DhcpOption.DNS, concatAddrs(net.dns)],
      ...(net.domain ? [[DhcpOption.DOMAIN_NAME, enc.encode(net.domain)] as const] : []),
      [DhcpOption.MTU, Uint8Array.of(net.mtu >>> 8, net.mtu & 0xff)],
      [DhcpOption.BROADCAST, u32Option(net.broadcast)],
    ];
    // RFC 3442: a client that takes option 121 ignores option 3, so the default route goes in it too.
    this.routes =
      net.routes.length > 0
        ? classlessRoutes([...net.routes, { dest: 0, prefix: 0, via: net.gateway }])
        : null;
  }

  /** The longest reply this server can send: an ACK with every option. */
  maxReplyLen(): number {
    const ack = this.reply(
      {
        xid: 0,
        flags: 0,
        ciaddr: 0,
        yiaddr: 0,
        siaddr: 0,
        giaddr: 0,
        secs: 0,
        op: 1,
        type: 0,
        chaddr: new Uint8Array(16),
        options: new Map([[DhcpOption.PARAM_REQUEST, Uint8Array.of(DhcpOption.CLASSLESS_ROUTES)]]),
      },
      DhcpType.ACK,
      0,
      true,
    );
    return dhcpReplyLen(ack.reply);
  }

  /** Handles one message from `att`; returns the reply, Drop.NONE when none is due, or a Drop reason. */
  handle(msg: DhcpMessage, att: Attachment, now: number): DhcpOutcome | number {
    if (msg.giaddr !== 0) return Drop.DHCP_RELAYED;
    for (let i = 0; i < 6; i++) if (msg.chaddr[i] !== att.mac[i]) return Drop.DHCP_CHADDR_SPOOFED;
    switch (msg.type) {
      case DhcpType.DISCOVER:
        return this.discover(msg, att, now);
      case DhcpType.REQUEST:
        return this.request(msg, att, now);
      case DhcpType.DECLINE:
        return this.decline(msg, att, now);
      case DhcpType.RELEASE:
        return this.release(msg, att);
      case DhcpType.INFORM:
        return this.inform(msg);
      default:
        return Drop.DHCP_BAD_TYPE;
    }
  }

  private discover(msg: DhcpMessage, att: Attachment, now: number): DhcpOutcome | number {
    const ip = this.leases.choose(att.key, formatMac(att.mac), optionAddr(msg, DhcpOption.REQUESTED_IP), now);
    if (ip === 0) {
      att.log.warn('dhcp pool exhausted', { network: this.net.name, mac: formatMac(att.mac) });
      return Drop.DHCP_POOL_EXHAUSTED;
    }
    this.leases.offer(att.key, formatMac(att.mac), ip, now + OFFER_HOLD_MS);
    att.log.info('lease offered', { ip: formatIpv4(ip), mac: formatMac(att.mac) });
    return this.reply(msg, DhcpType.OFFER, ip, true);
  }

  private request(msg: DhcpMessage, att: Attachment, now: number): DhcpOutcome | number {
    const server = optionAddr(msg, DhcpOption.SERVER_ID);
    if (server !== 0 && server !== this.net.gateway) {
      const own = this.leases.get(att.key);
      if (own?.state === 'offered') this.leases.release(att.key);
      return Drop.DHCP_OTHER_SERVER;
    }
    const ip = optionAddr(msg, DhcpOption.REQUESTED_IP) || msg.ciaddr;
    if (ip === 0 || !inSubnet(this.net, ip) || !this.leases.available(att.key, formatMac(att.mac), ip, now)) {
      att.log.info('lease refused', { ip: formatIpv4(ip), mac: formatMac(att.mac) });
      return this.nak(msg);
    }
    const host = msg.options.get(DhcpOption.HOSTNAME);
    const hostname = host ? new TextDecoder().decode(host).replace(/[^\w.-]/g, '?') : undefined;
    const event = this.leases.bind(
      att.key,
      formatMac(att.mac),
      ip,
      now + this.net.leaseTime * 1000,
      hostname,
    );
    this.assign(att, ip);
    att.log.info(`lease ${event}`, {
      ip: formatIpv4(ip),
      mac: formatMac(att.mac),
      lease: this.net.leaseTime,
      hostname,
    });
    return this.reply(msg, DhcpType.ACK, ip, true);
  }

  private decline(msg: DhcpMessage, att: Attachment, now: number): number {
    const ip = optionAddr(msg, DhcpOption.REQUESTED_IP);
    if (ip === 0) return Drop.DHCP_BAD_OPTION;
    if (!this.leases.decline(att.key, ip, now + this.net.leaseTime * 1000)) return Drop.DHCP_NO_BINDING;
    if (att.ip === ip) this.assign(att, 0);
    att.log.info('lease declined', { ip: formatIpv4(ip), mac: formatMac(att.mac) });
    return NO_REPLY;
  }

  private release(msg: DhcpMessage, att: Attachment): number {
    const own = this.leases.get(att.key);
    if (!own || own.ip !== msg.ciaddr) return Drop.DHCP_NO_BINDING;
    this.leases.release(att.key);
    this.assign(att, 0);
    att.log.info('lease released', { ip: formatIpv4(own.ip), mac: formatMac(att.mac) });
    return NO_REPLY;
  }

  private inform(msg: DhcpMessage): DhcpOutcome | number {
    if (msg.ciaddr === 0) return Drop.DHCP_NO_BINDING;
    return this.reply(msg, DhcpType.ACK, 0, false);
  }

  private reply(msg: DhcpMessage, type: number, yiaddr: number, withLease: boolean): DhcpOutcome {
    const options: Array<readonly [number, Uint8Array]> = [
      [DhcpOption.MESSAGE_TYPE, Uint8Array.of(type)],
      [DhcpOption.SERVER_ID, u32Option(this.net.gateway)],
    ];
    if (withLease) {
      const t = this.net.leaseTime;
      options.push(
        [DhcpOption.LEASE_TIME, u32Option(t)],
        [DhcpOption.RENEWAL_T1, u32Option(Math.floor(t / 2))],
        [DhcpOption.REBINDING_T2, u32Option(Math.floor((t * 7) / 8))],
      );
    }
    options.push(...this.fixedOptions);
    const prl = msg.options.get(DhcpOption.PARAM_REQUEST);
    if (this.routes && prl?.includes(DhcpOption.CLASSLESS_ROUTES)) {
      options.push([DhcpOption.CLASSLESS_ROUTES, this.routes]);
    }
    const reply: DhcpReply = {
      xid: msg.xid,
      flags: msg.flags & BROADCAST_FLAG,
      ciaddr: msg.ciaddr,
      yiaddr,
      siaddr: 0,
      chaddr: msg.chaddr,
      options,
    };
    if (msg.ciaddr !== 0) return { reply, dstIp: msg.ciaddr, broadcast: false };
    if (msg.flags & BROADCAST_FLAG) return { reply, dstIp: 0xffffffff, broadcast: true };
    return { reply, dstIp: yiaddr, broadcast: false };
  }

  private nak(msg: DhcpMessage): DhcpOutcome {
    return {
      reply: {
        xid: msg.xid,
        flags: msg.flags & BROADCAST_FLAG,
        ciaddr: 0,
        yiaddr: 0,
        siaddr: 0,
        chaddr: msg.chaddr,
        options: [
          [DhcpOption.MESSAGE_TYPE, Uint8Array.of(DhcpType.NAK)],
          [DhcpOption.SERVER_ID, u32Option(this.net.gateway)],
        ],
      },
      dstIp: 0xffffffff,
      broadcast: true,
    };
  }
}

function concatAddrs(addrs: number[]): Uint8Array {
  const out = new Uint8Array(addrs.length * 4);
  addrs.forEach((a, i) => {
    out.set(u32Option(a), i * 4);
  });
  return out;
}

const BROADCAST_MAC = Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;

/** Writes the Ethernet/IPv4/UDP frame carrying `out` from the gateway at `off`; returns its length. */
export function emitDhcpFrame(
  u8: Uint8Array,
  dv: DataView,
  off: number,
  out: DhcpOutcome,
  gatewayMac: Uint8Array,
  gateway: number,
): number {
  const dstMac = out.broadcast ? BROADCAST_MAC : out.reply.chaddr;
  return emitDhcpDatagram(u8, dv, off, out.reply, gatewayMac, dstMac, gateway, out.dstIp, DHCP_SERVER_PORT);
}

/**
 * Writes at `off` the Ethernet/IPv4/UDP frame carrying DHCP message `msg` from `srcMac` and `src`, port
 * `srcPort`, to `dstMac` and `dst` at the other DHCP port; returns its length.
 */
export function emitDhcpDatagram(
  u8: Uint8Array,
  dv: DataView,
  off: number,
  msg: DhcpReply,
  srcMac: Uint8Array,
  dstMac: Uint8Array,
  src: number,
  dst: number,
  srcPort: number,
): number {
  const ip = emitEthernet(u8, off, dstMac, 0, srcMac, EtherType.IPV4);
  const udp = ip + IPV4_HEADER_LEN;
  const payload = udp + UDP_HEADER_LEN;
  const len = emitDhcp(u8, payload, msg);
  const dstPort = srcPort === DHCP_SERVER_PORT ? DHCP_CLIENT_PORT : DHCP_SERVER_PORT;
  emitUdp(dv, u8, udp, src, dst, srcPort, dstPort, len);
  emitIpv4(dv, u8, ip, IpProto.UDP, src, dst, UDP_HEADER_LEN + len, 64);
  return payload + len - off;
}

/** The longest frame emitDhcpFrame can write for a network: its options are fixed at start. */
export function maxDhcpFrameLen(server: DhcpServer): number {
  return ETH_HEADER_LEN + IPV4_HEADER_LEN + UDP_HEADER_LEN + server.maxReplyLen();
}
