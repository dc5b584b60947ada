/*
 * DHCP snooping for a bridge network: the LAN's DHCP server leases addresses to the VMs' external MACs,
 * and softnet learns from the messages it relays which address each VM may use as its source.
 *
 * Theory of operation
 * - The LAN's server is the authority; the VMs are untrusted clients (as a snooping switch trusts its
 *   uplink port and not its access ports). A VM's own messages cannot give it an address: only the
 *   server's ACK binds one, and only a reply to the VM's latest transaction (its xid) is believed, so a
 *   LAN host cannot hand a VM an address it did not ask for.
 * - From a VM: every message is relayed; its xid is remembered. RELEASE of the bound address and DECLINE
 *   end the binding (the VM gave the address back, or found it in use).
 * - From the server: OFFER binds nothing (the VM may still take another offer). ACK with an address binds
 *   it to the VM until its lease time (option 51) runs out; ACK to INFORM (no address) changes nothing.
 *   NAK ends the binding. An address ACKed to one VM is taken from any other VM that held it.
 * - A binding keeps what a release needs (the server's address and MAC, the client identifier the VM was
 *   leased under, as relayed), so when the VM goes away its lease goes back to the LAN's server
 *   (segment.ts) instead of holding an address of the LAN's pool until it runs out: every VM run under a
 *   new external MAC would otherwise take another.
 * - Bindings live in a LeaseTable keyed by the attachment's key (the identity a shared network's leases
 *   use) with the whole address space as its pool. It is written after every change, restored when the
 *   VM attaches again, so a restarted softnet does not cut a VM off until its next renewal, and expired by
 *   the segment's one-second tick. The table holds the external MAC: the one the server leased to.
 * - The segment's `assign` is the only way an attachment's address changes, as with softnet's own server.
 */

import type { Attachment } from '../net/attachment.js';
import { Drop } from '../stats/drops.js';
import { formatIpv4, formatMac } from '../wire/addr.js';
import { CLIENT_ID_ETHERNET, type DhcpMessage, DhcpOption, DhcpType, optionAddr } from '../wire/dhcp.js';
import type { LeaseTable } from './leases.js';

/** The longest lease a binding keeps (an "infinite" one included): 2^31 - 1 seconds, about 68 years. */
const MAX_LEASE_S = 0x7fffffff;
/** The longest client identifier kept for a release: one option's worth, so the release fits its frame. */
const MAX_CLIENT_ID = 255;

/** Learns the VMs' addresses on one bridge network from their DHCP exchanges. */
export class DhcpSnoop {
  /** Each VM's latest transaction id. */
  private readonly xids = new WeakMap<Attachment, number>();
  /** The client identifier of each VM's latest message, as relayed to the LAN (hex), if it had one. */
  private readonly clientIds = new WeakMap<Attachment, string | undefined>();

  constructor(
    private readonly leases: LeaseTable,
    /** Sets an attachment's usable address (0: none). */
    private readonly assign: (att: Attachment, ip: number) => void,
    /** The attachment holding address `ip`, if any. */
    private readonly holder: (ip: number) => Attachment | undefined,
  ) {}

  /** A message `att` sends (already checked: BOOTREQUEST, its own chaddr, not relayed); Drop.NONE or a reason. */
  fromClient(att: Attachment, msg: DhcpMessage): number {
    switch (msg.type) {
      case DhcpType.DISCOVER:
      case DhcpType.REQUEST:
      case DhcpType.INFORM:
        break;
      case DhcpType.RELEASE:
        if (att.ip !== 0 && msg.ciaddr === att.ip) this.end(att, 'released');
        break;
      case DhcpType.DECLINE:
        if (att.ip !== 0 && optionAddr(msg, DhcpOption.REQUESTED_IP) === att.ip) this.end(att, 'declined');
        break;
      default:
        return Drop.DHCP_BAD_TYPE;
    }
    this.xids.set(att, msg.xid);
    this.clientIds.set(att, relayedClientId(att, msg.options.get(DhcpOption.CLIENT_ID)));
    return Drop.NONE;
  }

  /**
   * A server's reply for `att` (by its external MAC), sent from `serverMac`; Drop.NONE when it is to be
   * delivered, or a reason.
   */
  fromServer(att: Attachment, msg: DhcpMessage, serverMac: string, now: number): number {
    if (this.xids.get(att) !== msg.xid) return Drop.DHCP_UNSOLICITED;
    if (msg.type === DhcpType.OFFER) return Drop.NONE;
    if (msg.type === DhcpType.NAK) {
      if (att.ip !== 0) this.end(att, 'refused');
      return Drop.NONE;
    }
    if (msg.type !== DhcpType.ACK) return Drop.DHCP_BAD_TYPE;
    const ip = msg.yiaddr;
    if (ip === 0) return Drop.NONE;
    if (!isHostAddress(ip)) return Drop.DHCP_ACK_BAD_ADDRESS;
    const lease = msg.options.get(DhcpOption.LEASE_TIME);
    if (lease === undefined) return Drop.DHCP_ACK_NO_LEASE;
    const seconds = Math.min(optionAddr(msg, DhcpOption.LEASE_TIME), MAX_LEASE_S);
    const other = this.holder(ip);
    if (other !== undefined && other !== att) {
      this.leases.release(other.key);
      this.assign(other, 0);
      other.log.info('lease released', {
        ip: formatIpv4(ip),
        mac: formatMac(other.mac),
        reason: 'given-to-another-vm',
      });
    }
    const mac = formatMac(att.extMac);
    const serverId = optionAddr(msg, DhcpOption.SERVER_ID);
    const server =
      serverId === 0 ? undefined : { ip: serverId, mac: serverMac, clientId: this.clientIds.get(att) };
    const event = this.leases.bind(att.key, mac, ip, now + seconds * 1000, undefined, server);
    this.assign(att, ip);
    att.log.info(`lease ${event}`, {
      ip: formatIpv4(ip),
      mac: formatMac(att.mac),
      external_mac: mac,
      lease: seconds,
      server: formatIpv4(optionAddr(msg, DhcpOption.SERVER_ID)),
    });
    return Drop.NONE;
  }

  private end(att: Attachment, reason: string): void {
    const ip = att.ip;
    this.leases.release(att.key);
    this.assign(att, 0);
    att.log.info('lease released', { ip: formatIpv4(ip), mac: formatMac(att.mac), reason });
  }
}

/**
 * A client identifier as the LAN sees it (one of the MAC form holding the VM's MAC holds its external MAC),
 * as hex; undefined when there is none, or one longer than one option (a release could not carry it).
 */
function relayedClientId(att: Attachment, id: Uint8Array | undefined): string | undefined {
  if (id === undefined || id.length > MAX_CLIENT_ID) return undefined;
  const out = Buffer.from(id);
  if (out.length === 7 && out[0] === CLIENT_ID_ETHERNET && out.subarray(1).equals(att.mac))
    out.set(att.extMac, 1);
  return out.toString('hex');
}

/** Whether `ip` can be a host's own address: not 0.0.0.0/8, loopback, multicast, reserved or broadcast. */
function isHostAddress(ip: number): boolean {
  const first = ip >>> 24;
  return first !== 0 && first !== 127 && first < 224;
}
