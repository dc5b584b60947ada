// An attachment: one VM NIC on one network, through one port.

import type { Mapping, NatOwner } from '../nat/flows.js';
import type { Port } from '../ports/port.js';
import { macKey } from '../wire/ethernet.js';

/** A VM's NIC as the pipeline sees it: its port, its MAC, and the address its lease lets it use. */
export class Attachment implements NatOwner {
  /** The leased address the VM may use as its source, 0 before it has a lease. */
  ip = 0;
  /** Its NAT mappings by (protocol << 16 | port), and how many per protocol (see nat/flows.ts). */
  readonly natIndex = new Map<number, Mapping>();
  readonly natCount = new Int32Array(3);
  /** The MAC as one number, for compares on the hot path. */
  readonly macKey: number;

  constructor(
    readonly port: Port,
    readonly mac: Uint8Array,
    /** The lease identity: stable across restarts of softnet for the same VM. */
    readonly key: string,
  ) {
    this.macKey = macKey(mac, 0);
  }
}
