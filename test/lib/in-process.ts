// One network in-process: the real pipeline, segment, services and (optionally) NAT behind fake ports,
// with a VM that got its lease through the real DHCP path, and optionally IPv6 (each VM's /64 out of a
// ULA /48, NAT66 from an uplink address); or a bridge network whose LAN is a pair of fake ports and whose
// VMs get their leases from a fake LAN DHCP server. For unit tests, the fuzzer and the bench.

import { NetworkSegment } from '../../src/engine/segment.js';
import { FlowTable } from '../../src/nat/flows.js';
import { ForwardTable } from '../../src/nat/forwards.js';
import { FragmentTable } from '../../src/nat/fragments.js';
import type { NextHop } from '../../src/nat/next-hop.js';
import type { NatUplink, NatUplink6 } from '../../src/nat/uplink.js';
import { native } from '../../src/native.js';
import { type Attachment, AttType } from '../../src/net/attachment.js';
import type { BridgeLan } from '../../src/net/bridge-lan.js';
import { ipv6Config, makeNetwork, type NetworkConfig, type Route } from '../../src/net/network.js';
import { fromUplink } from '../../src/pipeline/from-uplink.js';
import { fromUplink6 } from '../../src/pipeline/from-uplink6.js';
import { Pipeline, QUEUE_LEN } from '../../src/pipeline/pipeline.js';
import { DestinationPolicy } from '../../src/policy/destinations.js';
import { RuleTable, Verdict } from '../../src/policy/rules.js';
import { RuleTable6 } from '../../src/policy/rules6.js';
import { FakeIo } from '../../src/ports/fake.js';
import { Port } from '../../src/ports/port.js';
import { PrefixTable } from '../../src/services/prefixes.js';
import { Logger } from '../../src/util/log.js';
import { parseCidr, parseCidr6, parseIpv6 } from '../../src/wire/addr.js';
import { DhcpOption, DhcpType } from '../../src/wire/dhcp.js';
import { VNET_HDR_LEN } from '../../src/wire/vnet.js';
import { identity } from './attachments.js';
import { dhcpFrame, dhcpReply, dhcpRequest, dhcpServerFrame } from './frames.js';

/** The fake port numbers. */
export const PortId = { HOST: 1, VM: 2, RAW: 3, CAPTURE: 4, TX: 6, RAW6: 11, CAPTURE6: 12 } as const;

/** The lease time of in-process networks, seconds: a VM's /64 is valid twice that, preferred that long. */
export const LEASE_TIME = 600;

/** What the network is made of. */
export interface InProcessOptions {
  vmMac: Uint8Array;
  gatewayMac: Uint8Array;
  /** CIDRs (IPv4 or IPv6) the policy allows beyond the defaults. */
  allow?: string[];
  reject?: boolean;
  domain?: string | null;
  routes?: Route[];
  /**
   * NAT to an uplink address, with this port range and per-VM share; with `hop`, its frames to the next
   * hops `hop` knows leave whole through a send port with virtio headers (PortId.TX). With `v6` (and
   * `ipv6`), NAT66 too, from that IPv6 address (text), with the same port range: its packets leave on
   * PortId.RAW6 and the uplink's IPv6 frames come in on PortId.CAPTURE6.
   */
  nat?: {
    addr: number;
    lo: number;
    hi: number;
    perVm: number;
    mtu?: number;
    hop?: NextHop;
    v6?: { addr: string; mtu?: number };
  };
  /** IPv6 on the network: its ULA /48 (`fd00:5:1::/48`); each VM gets a /64 of it at attach. */
  ipv6?: string;
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
  /** The VMs' /64s (null without IPv6), and the IPv6 capture port of NAT66 (null without it). */
  prefixes: PrefixTable | null;
  capture6: Port | null;
  /** What the VM was sent when it attached, before DHCP: its router advertisement, with IPv6. */
  attached: Uint8Array[];
}

/** The destination policy of `cfg`'s VMs allowing `allow` (IPv4 and IPv6 CIDRs) beyond the defaults. */
export function policyOf(cfg: NetworkConfig, allow: string[] = [], reject = false): DestinationPolicy {
  const rules = new RuleTable();
  const rules6 = new RuleTable6();
  for (const c of allow) {
    if (c.includes(':')) rules6.add(parseCidr6(c)!, Verdict.ALLOW);
    else rules.add(parseCidr(c)!, Verdict.ALLOW);
  }
  const policy = new DestinationPolicy(rules, cfg.gateway, reject, rules6);
  if (cfg.v6 !== null) policy.setGateway6(cfg.v6.gateway);
  return policy;
}

/** Four signed words of an IPv6 address text; throws on a bad one. */
function words6(text: string): Int32Array {
  const w = parseIpv6(text);
  if (w === null) throw new Error(`not an IPv6 address: ${text}`);
  return Int32Array.from(w, (x) => x | 0);
}

/** A fake port with virtio headers (as the addon's vnet ports: the header before each frame travels with it). */
export function vnetPort(io: FakeIo, id: number, name: string): Port {
  const port = new Port(id, name, QUEUE_LEN, () => {});
  port.vnet = true;
  port.big = true;
  io.vnet.add(id);
  return port;
}

/** Builds 192.168.64.0/24 (and its IPv6 /48, if asked) with one VM and gets it a lease; throws if it gets none. */
export function inProcessNetwork(o: InProcessOptions): InProcess {
  const io = o.io ?? new FakeIo();
  const p = new Pipeline(io);
  io.setArena(p.arena);
  // The uplink's aggregates are cut by the addon, in the arena it was given.
  native.setArena(p.arena);
  const ula = o.ipv6 === undefined ? null : parseCidr6(o.ipv6);
  if (ula === null && o.ipv6 !== undefined) throw new Error(`not an IPv6 prefix: ${o.ipv6}`);
  const ula48 = ula === null ? null : Int32Array.of(ula.addr[0] | 0, (ula.addr[1] & 0xffff0000) | 0);
  const cfg = makeNetwork(parseCidr('192.168.64.0/24')!, {
    name: 'in-process',
    type: 'shared',
    leaseTime: LEASE_TIME,
    mtu: 1500,
    domain: o.domain ?? null,
    routes: o.routes ?? [],
    v6: ula48 === null ? null : ipv6Config(ula48, LEASE_TIME),
  });
  const prefixes = ula48 === null ? null : new PrefixTable(null, ula48, LEASE_TIME * 1000);
  const policy = policyOf(cfg, o.allow, o.reject);
  const none = () => {};
  const v6 = o.nat?.v6;
  if (v6 && ula48 === null) throw new Error('NAT66 needs ipv6');
  const nat6: NatUplink6 | null =
    o.nat && v6
      ? {
          flows: new FlowTable(o.nat.lo, o.nat.hi, o.nat.perVm, true),
          forwards: new ForwardTable(o.nat.lo, o.nat.hi, true),
          addr: words6(v6.addr),
          mtu: v6.mtu ?? 1500,
          held: false,
          raw: new Port(PortId.RAW6, 'raw6', QUEUE_LEN, none),
          tx: null,
          hop: null,
          fragments: new FragmentTable(),
          outFragments: new FragmentTable(),
        }
      : null;
  const nat: NatUplink | null = o.nat
    ? {
        flows: new FlowTable(o.nat.lo, o.nat.hi, o.nat.perVm),
        forwards: new ForwardTable(o.nat.lo, o.nat.hi),
        fragments: new FragmentTable(),
        v6: nat6,
        addr: o.nat.addr,
        mtu: o.nat.mtu ?? 1500,
        held: false,
        raw: new Port(PortId.RAW, 'raw', QUEUE_LEN, none),
        tx: o.nat.hop ? vnetPort(io, PortId.TX, 'tx') : null,
        hop: o.nat.hop ?? null,
      }
    : null;
  const hostPort = new Port(PortId.HOST, 'host', QUEUE_LEN, none);
  const log = new Logger('text', none);
  const seg = new NetworkSegment(
    p,
    cfg,
    hostPort,
    o.gatewayMac,
    null,
    nat,
    log,
    { hostLinkFailed: none, vmGone: none },
    null,
    prefixes,
  );
  let capture: Port | null = null;
  if (nat) {
    const uplink = nat;
    capture = new Port(PortId.CAPTURE, 'capture', QUEUE_LEN, none);
    capture.big = true;
    p.add(capture, { frame: (_port, off, len) => fromUplink(p, uplink, off, len), failed: none });
  }
  let capture6: Port | null = null;
  if (nat6) {
    capture6 = new Port(PortId.CAPTURE6, 'capture6', QUEUE_LEN, none);
    capture6.big = true;
    p.add(capture6, { frame: (_port, off, len) => fromUplink6(p, nat6, off, len), failed: none });
  }
  const net = { io, p, cfg, policy, seg, hostPort, nat, capture, prefixes, capture6 };
  const { port: vmPort, att, attached } = addVm(net, PortId.VM, o.vmMac, 'vm', { policy });
  return { ...net, vmPort, att, attached };
}

/**
 * Attaches one more VM on fake port `id`, with lease key `key`, and gets it a lease through DHCP; throws
 * if it gets none. The VM's policy is the network's unless given. `attached` is what the VM was sent on
 * attaching, before its DHCP exchange (on an IPv6 network, its router advertisement).
 */
export function addVm(
  net: Pick<InProcess, 'io' | 'p' | 'cfg' | 'policy' | 'seg'>,
  id: number,
  mac: Uint8Array,
  key: string,
  o: { policy?: DestinationPolicy; type?: number; extMac?: Uint8Array } = {},
): { port: Port; att: Attachment; attached: Uint8Array[] } {
  const { io, p, seg } = net;
  const port = new Port(id, key, QUEUE_LEN, () => {});
  const id0 = identity(mac, key, { gateway: net.cfg.gateway, policy: o.policy ?? net.policy, type: o.type });
  const keep = io.keep;
  io.keep = true;
  const att = seg.attach(port, o.extMac ? { ...id0, extMac: o.extMac } : id0);
  const attached = io.take(id);
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
  return { port, att, attached };
}

/** The fake port numbers of a bridge network's LAN. */
export const LanId = { TX: 21, RX: 22 } as const;

/** The LAN's DHCP server, as the fake one answers: its MAC and address, and the lease it gives. */
export const LAN_SERVER = { mac: Uint8Array.of(2, 0xee, 0, 0, 0, 1), ip: 0x0a4d0001, lease: 120 } as const;

/** A bridge network in-process: its LAN is two fake ports; the interface's MAC is `lanMac`. */
export interface InProcessBridge {
  io: FakeIo;
  p: Pipeline;
  cfg: NetworkConfig;
  seg: NetworkSegment;
  lan: BridgeLan;
  tx: Port;
  rx: Port;
  /** The memberships the segment asked for, in order: MAC text and whether it was added. */
  memberships: Array<[string, boolean]>;
  /** What the network and its VMs logged, and the logger that writes there. */
  log: string[];
  logger: Logger;
}

/** Builds a bridge network on a LAN with MTU `mtu`; with `leaseFile`, its snooped leases persist there. */
export function inProcessBridge(
  o: { lanMac?: Uint8Array; mtu?: number; leaseFile?: string | null; p?: Pipeline; io?: FakeIo } = {},
): InProcessBridge {
  const io = o.io ?? new FakeIo();
  const p = o.p ?? new Pipeline(io);
  io.setArena(p.arena);
  native.setArena(p.arena);
  const cfg = makeNetwork(parseCidr('192.168.64.0/24')!, {
    name: 'bridge',
    type: 'bridge',
    leaseTime: 600,
    mtu: 1500,
    domain: null,
    routes: [],
  });
  const none = () => {};
  const lanMac = o.lanMac ?? Uint8Array.of(2, 0xaa, 0, 0, 0, 1);
  const tx = new Port(LanId.TX, 'lan-tx', QUEUE_LEN, none);
  const rx = new Port(LanId.RX, 'lan-rx', QUEUE_LEN, none);
  rx.big = true;
  const memberships: Array<[string, boolean]> = [];
  const log: string[] = [];
  const side = {
    tx,
    rx,
    mac: lanMac,
    mtu: o.mtu ?? 1500,
    membership: (mac: Uint8Array, on: boolean) => {
      memberships.push([[...mac].map((b) => b.toString(16).padStart(2, '0')).join(':'), on]);
    },
  };
  const logger = new Logger('text', (line) => log.push(line));
  const seg = new NetworkSegment(
    p,
    cfg,
    tx,
    lanMac,
    o.leaseFile ?? null,
    null,
    logger,
    { hostLinkFailed: none, vmGone: none },
    side,
  );
  return { io, p, cfg, seg, lan: seg.lan!, tx, rx, memberships, log, logger };
}

/** A frame from the LAN as the capture socket delivers it: after a virtio header saying nothing. */
export function fromLanFrame(frame: Uint8Array): Uint8Array {
  const f = new Uint8Array(VNET_HDR_LEN + frame.length);
  f.set(frame, VNET_HDR_LEN);
  return f;
}

/**
 * Attaches a bridged VM on fake port `id` and, unless `ip` is 0, lets it get `ip` from the fake LAN
 * server: its DISCOVER and REQUEST must come out on the LAN, the OFFER and ACK go back. Throws if the VM
 * ends without that address.
 */
export function addBridgedVm(
  net: InProcessBridge,
  id: number,
  mac: Uint8Array,
  key: string,
  ip: number,
  o: { policy?: DestinationPolicy; extMac?: Uint8Array } = {},
): { port: Port; att: Attachment } {
  const { io, p, seg } = net;
  const port = new Port(id, key, QUEUE_LEN, () => {});
  const base = identity(mac, key, {
    gateway: net.cfg.gateway,
    policy: o.policy,
    type: AttType.BRIDGE,
    log: net.logger,
  });
  const att = seg.attach(port, { ...base, extMac: o.extMac ?? base.extMac });
  if (ip === 0) return { port, att };
  const keep = io.keep;
  io.keep = true;
  const xid = 0x5eed0000 + id;
  const be = [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255];
  const lease: Array<[number, number[]]> = [[DhcpOption.LEASE_TIME, [0, 0, 0, LAN_SERVER.lease]]];
  for (const [type, reply] of [
    [DhcpType.DISCOVER, DhcpType.OFFER],
    [DhcpType.REQUEST, DhcpType.ACK],
  ] as const) {
    io.deliver(
      id,
      dhcpFrame(mac, xid, type, type === DhcpType.REQUEST ? [[DhcpOption.REQUESTED_IP, be]] : []),
    );
    p.drain(port);
    const sent = io.take(LanId.TX).map(dhcpRequest);
    if (sent.length !== 1 || sent[0]?.type !== type) throw new Error(`no ${type} from ${key} on the LAN`);
    io.deliver(
      LanId.RX,
      fromLanFrame(dhcpServerFrame(LAN_SERVER.mac, LAN_SERVER.ip, att.extMac, xid, reply, ip, lease)),
    );
    p.drain(net.rx);
    if (dhcpReply(io.take(id)[0] ?? new Uint8Array(0))?.msg.type !== reply)
      throw new Error(`no ${reply} for ${key}`);
  }
  io.keep = keep;
  if (att.ip !== ip) throw new Error(`bridged VM ${key} did not get its address`);
  return { port, att };
}
