// Makes a capture's frames come from the replaying network's VM: its leased address instead of the one
// the VM had when the capture was taken, and the gateway's address instead of the capture's gateway,
// with the IPv4 and TCP/UDP checksums updated (RFC 1624, as NAT does). Done once when a capture is
// loaded, never per replayed frame. The MACs need no change: the network is built with the capture's.

import { rewrite } from '../../src/nat/translate.js';
import { Drop } from '../../src/stats/drops.js';
import * as arp from '../../src/wire/arp.js';
import { ETH, ETH_HEADER_LEN, EtherType } from '../../src/wire/ethernet.js';
import * as ipv4 from '../../src/wire/ipv4.js';
import { IPV4, IpProto } from '../../src/wire/ipv4.js';
import type { Capture } from './capture.js';

/** Bytes of a TCP or UDP header up to and including its checksum, which rewrite() updates. */
const L4_NEEDED = { [IpProto.TCP]: 18, [IpProto.UDP]: 8 } as Record<number, number>;

/**
 * Rewrites `cap`'s VM and gateway addresses to `vmIp` and `gatewayIp` in its frames and in `cap` itself;
 * returns how many frames changed.
 */
export function retarget(cap: Capture, vmIp: number, gatewayIp: number): number {
  const fromVm = cap.vmIp !== 0 && cap.vmIp !== vmIp;
  const toGateway = cap.gatewayIp !== 0 && cap.gatewayIp !== gatewayIp;
  if (!fromVm && !toGateway) return 0;
  let changed = 0;
  // The frames are views into one buffer.
  const dv = new DataView(cap.frames[0].buffer);
  const u8 = new Uint8Array(cap.frames[0].buffer);
  for (const f of cap.frames) {
    const off = f.byteOffset;
    const type = dv.getUint16(off + ETH.TYPE);
    let did = false;
    if (type === EtherType.IPV4) {
      const ip = off + ETH_HEADER_LEN;
      // A frame the pipeline will drop anyway (bad header, bad checksum) stays as it was captured.
      if (ipv4.validate(dv, u8, ip, f.length - ETH_HEADER_LEN) !== Drop.NONE) continue;
      const proto = ipv4.proto(dv, ip);
      const l4 = transportAt(dv, ip, proto);
      if (fromVm && ipv4.src(dv, ip) === cap.vmIp) {
        rewrite(dv, u8, ip, l4, proto, IPV4.SRC, vmIp, l4 < 0 ? 0 : dv.getUint16(l4));
        did = true;
      }
      if (toGateway && ipv4.dst(dv, ip) === cap.gatewayIp) {
        rewrite(dv, u8, ip, l4, proto, IPV4.DST, gatewayIp, l4 < 0 ? 0 : dv.getUint16(l4 + 2));
        did = true;
      }
    } else if (
      type === EtherType.ARP &&
      arp.isEthernetIpv4(dv, off + ETH_HEADER_LEN, f.length - ETH_HEADER_LEN)
    ) {
      const a = off + ETH_HEADER_LEN;
      if (fromVm && arp.senderIp(dv, a) === cap.vmIp) {
        dv.setUint32(a + arp.ARP.SPA, vmIp);
        did = true;
      }
      if (toGateway && arp.targetIp(dv, a) === cap.gatewayIp) {
        dv.setUint32(a + arp.ARP.TPA, gatewayIp);
        did = true;
      }
    }
    if (did) changed++;
  }
  if (fromVm) cap.vmIp = vmIp;
  if (toGateway) cap.gatewayIp = gatewayIp;
  return changed;
}

/**
 * Where the TCP or UDP header of the valid IPv4 packet at `ip` starts, or -1 when there is none whose
 * ports and checksum to update: another protocol (ICMP's checksum does not cover the addresses), a later
 * fragment, or a header cut short.
 */
function transportAt(dv: DataView, ip: number, proto: number): number {
  const need = L4_NEEDED[proto];
  if (need === undefined || (dv.getUint16(ip + IPV4.FRAG) & 0x1fff) !== 0) return -1;
  const hl = ipv4.headerLen(dv, ip);
  return ipv4.totalLen(dv, ip) - hl >= need ? ip + hl : -1;
}
