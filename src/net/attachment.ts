// An attachment: one VM NIC on one network, through one port.

import type { Mapping } from '../nat/flows.js';
import type { ForwardOwner, PortForward } from '../nat/forwards.js';
import type { DestinationPolicy } from '../policy/destinations.js';
import type { Port } from '../ports/port.js';
import type { Logger } from '../util/log.js';
import { macKey } from '../wire/ethernet.js';

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
  /** Its port forwards by (protocol << 16 | VM port) (see nat/forwards.ts). */
  readonly forwardIndex = new Map<number, PortForward>();
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
}
