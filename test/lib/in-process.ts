// One network in-process: the real pipeline, segment, services and (optionally) NAT behind fake ports,
// with a VM that got its lease through the real DHCP path. For unit tests, the fuzzer and the bench.

import type { Attachment } from '../../src/engine/attachment.js';
import { makeNetwork, type NetworkConfig, type Route } from '../../src/engine/network.js';
import { NetworkSegment } from '../../src/engine/segment.js';
import { FlowTable } from '../../src/nat/flows.js';
import { ForwardTable } from '../../src/nat/forwards.js';
import { FragmentTable } from '../../src/nat/fragments.js';
import type { NatUplink } from '../../src/nat/uplink.js';
import { native } from '../../src/native.js';
import { fromUplink } from '../../src/pipeline/from-uplink.js';
import { Pipeline, QUEUE_LEN } from '../../src/pipeline/pipeline.js';
import { DestinationPolicy } from '../../src/policy/destinations.js';
import { RuleTable, Verdict } from '../../src/policy/rules.js';
import { FakeIo } from '../../src/ports/fake.js';
import { Port } from '../../src/ports/port.js';
import { Logger } from '../../src/util/log.js';
import { parseCidr } from '../../src/wire/addr.js';
import { DhcpOption, DhcpType } from '../../src/wire/dhcp.js';
import { identity } from './attachments.js';
import { dhcpFrame, dhcpReply } from './frames.js';

/** The fake port numbers. */
export const PortId = { HOST: 1, VM: 2, RAW: 3, CAPTURE: 4 } as const;

/** What the network is made of. */
export interface InProcessOptions {
  vmMac: Uint8Array;
  gatewayMac: Uint8Array;
  /** CIDRs the policy allows beyond the defaults. */
  allow?: string[];
  reject?: boolean;
  domain?: string | null;
  routes?: Route[];
  /** NAT to an uplink address, with this port range and per-VM share. */
  nat?: { addr: number; lo: number; hi: number; perVm: number; mtu?: number };
  /**
   * The I/O to run on, a new FakeIo by default; the replay bench passes subclasses that play a capture or
   * hand the ports to real fds once the VM has its lease.
   */
  io?: FakeIo;
}

/** The network, its ports, and the VM with its lease. */
export interface InProcess {
  io: FakeIo;
  p: Pipeline;
  cfg: NetworkConfig;
  policy: DestinationPolicy;
  seg: NetworkSegment;
  hostPort: Port;
  vmPort: Port;
  att: Attachment;
  nat: NatUplink | null;
  capture: Port | null;
}

/** Builds 192.168.64.0/24 with one VM and gets it a lease; throws if it gets none. */
export function inProcessNetwork(o: InProcessOptions): InProcess {
  const io = o.io ?? new FakeIo();
  const p = new Pipeline(io);
  io.setArena(p.arena);
  // The uplink's aggregates are cut by the addon, in the arena it was given.
  native.setArena(p.arena);
  const cfg = makeNetwork(parseCidr('192.168.64.0/24')!, {
    name: 'in-process',
    type: 'shared',
    leaseTime: 600,
    mtu: 1500,
    domain: o.domain ?? null,
    routes: o.routes ?? [],
  });
  const rules = new RuleTable();
  for (const c of o.allow ?? []) rules.add(parseCidr(c)!, Verdict.ALLOW);
  const policy = new DestinationPolicy(rules, cfg.gateway, o.reject ?? false);
  const none = () => {};
  const nat: NatUplink | null = o.nat
    ? {
        flows: new FlowTable(o.nat.lo, o.nat.hi, o.nat.perVm),
        forwards: new ForwardTable(o.nat.lo, o.nat.hi),
        fragments: new FragmentTable(),
        addr: o.nat.addr,
        mtu: o.nat.mtu ?? 1500,
        raw: new Port(PortId.RAW, 'raw', QUEUE_LEN, none),
      }
    : null;
  const hostPort = new Port(PortId.HOST, 'host', QUEUE_LEN, none);
  const log = new Logger('text', none);
  const seg = new NetworkSegment(p, cfg, hostPort, o.gatewayMac, null, nat, log, {
    hostLinkFailed: none,
    vmGone: none,
  });
  let capture: Port | null = null;
  if (nat) {
    const uplink = nat;
    capture = new Port(PortId.CAPTURE, 'capture', QUEUE_LEN, none);
    capture.big = true;
    p.add(capture, { frame: (_port, off, len) => fromUplink(p, uplink, off, len), failed: none });
  }
  const net = { io, p, cfg, policy, seg, hostPort, nat, capture };
  const { port: vmPort, att } = addVm(net, PortId.VM, o.vmMac, 'vm', { policy });
  return { ...net, vmPort, att };
}

/**
 * Attaches one more VM on fake port `id`, with lease key `key`, and gets it a lease through DHCP; throws
 * if it gets none. The VM's policy is the network's unless given.
 */
export function addVm(
  net: Pick<InProcess, 'io' | 'p' | 'cfg' | 'policy' | 'seg'>,
  id: number,
  mac: Uint8Array,
  key: string,
  o: { policy?: DestinationPolicy; type?: number; extMac?: Uint8Array } = {},
): { port: Port; att: Attachment } {
  const { io, p, seg } = net;
  const port = new Port(id, key, QUEUE_LEN, () => {});
  const id0 = identity(mac, key, { gateway: net.cfg.gateway, policy: o.policy ?? net.policy, type: o.type });
  const att = seg.attach(port, o.extMac ? { ...id0, extMac: o.extMac } : id0);
  const keep = io.keep;
  io.keep = true;
  io.deliver(id, dhcpFrame(mac, 1, DhcpType.DISCOVER));
  p.drain(port);
  const y = dhcpReply(io.take(id)[0])?.msg.yiaddr ?? 0;
  io.deliver(
    id,
    dhcpFrame(mac, 2, DhcpType.REQUEST, [
      [DhcpOption.REQUESTED_IP, [y >>> 24, (y >>> 16) & 255, (y >>> 8) & 255, y & 255]],
    ]),
  );
  p.drain(port);
  const ack = dhcpReply(io.take(id)[0]);
  // The host link heard the VM's address announced from its external MAC (a gratuitous ARP).
  const announced = io.take(PortId.HOST);
  io.keep = keep;
  if (ack?.msg.type !== DhcpType.ACK || att.ip === 0) throw new Error(`in-process VM ${key} got no lease`);
  const own = (f: Uint8Array) =>
    f[12] === 8 && f[13] === 6 && new DataView(f.buffer).getUint32(28) === att.ip;
  if (!announced.some(own))
    throw new Error(`in-process VM ${key}'s address was not announced on the host link`);
  return { port, att };
}
