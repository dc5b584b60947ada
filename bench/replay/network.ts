// The network a capture is replayed through: test/lib/in-process.ts's (the real pipeline, segment,
// services and NAT), built with the capture's MACs, its VM leased through the real DHCP path, and the
// capture's frames retargeted to that lease.

import type { FakeIo } from '../../src/ports/fake.js';
import { type InProcess, inProcessNetwork } from '../../test/lib/in-process.js';
import type { Capture } from './capture.js';
import { retarget } from './retarget.js';

/** The NAT's uplink: 198.51.100.2/24 (documentation space) behind a router at .1 with a made-up MAC. */
export const UPLINK = {
  addr: 0xc6336402,
  cidr: '198.51.100.2/24',
  router: '198.51.100.1',
  routerMac: '02:00:00:00:00:01',
} as const;
/** softnet's default NAT port range, and its default share for one VM: a quarter of it. */
const NAT_PORTS = { lo: 61000, hi: 64999 } as const;
const NAT_PER_VM = (NAT_PORTS.hi - NAT_PORTS.lo + 1) / 4;

/** The network, and how many of the capture's frames were retargeted to its VM. */
export interface ReplayNetwork extends InProcess {
  retargeted: number;
}

/** Builds the network over `io` for `cap`, allowing `allow` (CIDRs) beyond the default policy. */
export function replayNetwork(cap: Capture, io: FakeIo, allow: string[]): ReplayNetwork {
  const net = inProcessNetwork({
    io,
    vmMac: cap.vmMac,
    gatewayMac: cap.gatewayMac,
    allow,
    nat: { addr: UPLINK.addr, lo: NAT_PORTS.lo, hi: NAT_PORTS.hi, perVm: NAT_PER_VM },
  });
  // Sent frames are counted, not kept: keeping them would allocate for every one.
  io.keep = false;
  return { ...net, retargeted: retarget(cap, net.att.ip, net.cfg.gateway) };
}
