// Attachments for tests that build them by hand: a VM's identity with a derived external MAC, the default
// destination policy, and a logger that keeps its lines.

import { Attachment, type AttachmentIdentity, AttType } from '../../src/net/attachment.js';
import { DestinationPolicy } from '../../src/policy/destinations.js';
import { RuleTable } from '../../src/policy/rules.js';
import type { Port } from '../../src/ports/port.js';
import { Logger } from '../../src/util/log.js';

/** The external MAC tests give a VM: its own with the locally administered bit, and the first byte's low bits changed. */
export function externalMacOf(mac: Uint8Array): Uint8Array {
  const ext = Uint8Array.from(mac);
  ext[0] = (mac[0] & 0xfc) ^ 0x06;
  return ext;
}

/** An identity for a VM with MAC `mac` and lease key `key` on a network whose gateway is `gateway`. */
export function identity(
  mac: Uint8Array,
  key: string,
  o: { gateway?: number; log?: Logger; policy?: DestinationPolicy; type?: number } = {},
): AttachmentIdentity {
  return {
    key,
    name: key,
    mac,
    extMac: externalMacOf(mac),
    policy: o.policy ?? new DestinationPolicy(new RuleTable(), o.gateway ?? 0xc0a84001),
    type: o.type ?? AttType.SHARED,
    log: o.log ?? new Logger('text', () => {}),
  };
}

/** An attachment made outside any segment (for the DHCP server and flow table tests). */
export function attachment(port: Port, mac: Uint8Array, key: string, log?: Logger): Attachment {
  return new Attachment(port, identity(mac, key, { log }), Uint8Array.of(2, 0, 0, 0, 0, 1));
}
