// An attachment: one VM NIC on one network, through one port.

import type { Mapping } from '../nat/flows.js';
import type { ForwardOwner, PortForward } from '../nat/forwards.js';
import type { DestinationPolicy } from '../policy/destinations.js';
import type { Port } from '../ports/port.js';
import type { Logger } from '../util/log.js';
import { macKey } from '../wire/ethernet.js';

/** IPv6 addresses of a VM that `show` lists: SLAAC, privacy and DHCPv6 ones come to a handful. */
const SEEN6 = 8;

/** What an attachment may reach, as a small integer for the hot path (see VmType). */
export const AttType = { SHARED: 0, HOST: 1, DISCONNECTED: 2, BRIDGE: 3 } as const;

/** Who a VM is on its network, as the engine decided when it attached. */
export interface AttachmentIdentity {
  /** The lease identity: stable across restarts of softnet for the same VM. */
  key: string;
  name: string;
  /** The internal MAC (the guest's own) and the external one the host sees. */
  mac: Uint8Array;
  extMac: Uint8Array;
  policy: DestinationPolicy;
  type: number;
  /** Where this VM's own events go (lease bound, released): the engine's log, and the VM's per-VM process. */
  log: Logger;
}

/** A VM's NIC as the pipeline sees it: its port, its MACs, its rules, and the address its lease lets it use. */
export class Attachment implements ForwardOwner {
  /** The leased address the VM may use as its source, 0 before it has a lease. */
  ip = 0;
  /** Its NAT mappings by (protocol << 16 | port), and how many per protocol (see nat/flows.ts). */
  readonly natIndex = new Map<number, Mapping>();
  readonly natCount = new Int32Array(3);
  /** The first two words of its IPv6 /64 (services/prefixes.ts); both 0 while it has none. */
  p0 = 0;
  p1 = 0;
  /** The interface identifiers it was last seen sending from in its /64 (two words each, a ring): for `show`. */
  readonly seen6 = new Int32Array(2 * SEEN6);
  seenCount = 0;
  /** The last one, checked per frame before anything is written. */
  last2 = 0;
  last3 = 0;
  /** Its NAT66 mappings and counts, as natIndex and natCount are for NAT44. */
  readonly nat6Index = new Map<number, Mapping>();
  readonly nat6Count = new Int32Array(3);
  /** Its NAT64 mappings (see nat/flows.ts MappingKind). */
  readonly nat64Index = new Map<number, Mapping>();
  /** Its network's NAT64 /96 (three words), the source of what NAT64 brings back; null without NAT64. */
  nat64: Int32Array | null = null;
  /** Its port forwards by (protocol << 16 | VM port) (see nat/forwards.ts), and those on the uplink's IPv6 address. */
  readonly forwardIndex = new Map<number, PortForward>();
  readonly forward6Index = new Map<number, PortForward>();
  readonly key: string;
  readonly name: string;
  readonly mac: Uint8Array;
  readonly extMac: Uint8Array;
  readonly policy: DestinationPolicy;
  readonly type: number;
  readonly log: Logger;
  /** The MACs as numbers, for compares on the hot path. */
  readonly macKey: number;
  readonly extMacKey: number;

  constructor(
    readonly port: Port,
    id: AttachmentIdentity,
    /** The gateway's MAC on the VM's network: the source of every frame softnet sends the VM. */
    readonly gatewayMac: Uint8Array,
  ) {
    this.key = id.key;
    this.name = id.name;
    this.mac = id.mac;
    this.extMac = id.extMac;
    this.policy = id.policy;
    this.type = id.type;
    this.log = id.log;
    this.macKey = macKey(id.mac, 0);
    this.extMacKey = macKey(id.extMac, 0);
  }

  /** Notes that the VM sent from interface identifier iid2:iid3 of its /64 (it did not just before). */
  noteSource6(iid2: number, iid3: number): void {
    this.last2 = iid2;
    this.last3 = iid3;
    const n = this.seenCount < SEEN6 ? this.seenCount : SEEN6;
    for (let i = 0; i < n; i++) if (this.seen6[2 * i] === iid2 && this.seen6[2 * i + 1] === iid3) return;
    const at = this.seenCount % SEEN6;
    this.seen6[2 * at] = iid2;
    this.seen6[2 * at + 1] = iid3;
    this.seenCount++;
  }

  /** Forgets the addresses seen (its /64 changed or went). */
  forgetSources6(): void {
    this.seenCount = 0;
    this.last2 = 0;
    this.last3 = 0;
  }

  /** The interface identifiers seen, two words each, oldest first as far as the ring keeps them. */
  sources6(): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    const n = this.seenCount < SEEN6 ? this.seenCount : SEEN6;
    for (let i = 0; i < n; i++) {
      const at = (this.seenCount - n + i) % SEEN6;
      out.push([this.seen6[2 * at], this.seen6[2 * at + 1]]);
    }
    return out;
  }
}
