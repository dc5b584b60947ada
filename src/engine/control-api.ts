// What the engine answers on its control socket. Every request is checked as untrusted input: a bad one
// gets an error reply naming what is wrong (and the per-VM flag, where there is one), never a crash.

import { CAPTURE_FORMAT } from '../capture/records.js';
import type { Channel } from '../control/channel.js';
import { ControlError, type Message, obj, optStr, str } from '../control/protocol.js';
import { CONTROL_DEGRADED, type ServerHandlers } from '../control/server.js';
import { chained } from '../nat/flows.js';
import { native } from '../native.js';
import type { Attachment } from '../net/attachment.js';
import { checkNetworkSpec, FieldError, NETWORK_FLAG, type NetworkSpec } from '../net/network-spec.js';
import { format48 } from '../services/prefixes.js';
import { DNS_DEGRADED, ResolvConf } from '../services/resolv-conf.js';
import { toWall } from '../util/clock.js';
import { stateFiles } from '../util/state-files.js';
import { formatIpv4, formatIpv6 } from '../wire/addr.js';
import type { Engine, LiveVm } from './engine.js';
import { portStats } from './engine.js';
import { UsageError } from './errors.js';
import { checkFdHeadroom, outOfFdsCode, outOfFdsMessage } from './fd-headroom.js';
import type { LiveNetwork } from './live-network.js';
import { checkVmSpec, VM_FLAG, type VmSpec } from './vm-spec.js';

/** What only a service does: networks that persist. */
export interface NetworkAdmin {
  add(spec: Record<string, unknown>): Promise<LiveNetwork>;
  remove(name: string): void;
  reserve(name: string, mac: string, ip: string): void;
}

/** A network as listings show it; a bridge network has no subnet, gateway or pool of its own. */
export function networkInfo(net: LiveNetwork): Message {
  const cfg = net.seg.cfg;
  const own = net.spec.type !== 'bridge';
  return {
    name: net.spec.name,
    type: net.spec.type,
    cidr: own ? net.spec.cidr : null,
    gateway: own ? formatIpv4(cfg.gateway) : null,
    ipv6Prefix: cfg.v6 ? format48([cfg.v6.w0, cfg.v6.w1]) : null,
    ipv6Gateway: cfg.v6 ? formatIpv6(cfg.v6.gateway) : null,
    dhcpRange: own ? `${formatIpv4(cfg.poolStart)}-${formatIpv4(cfg.poolEnd)}` : null,
    hostLink: net.hostLink,
    gatewayMac: own ? [...net.seg.gatewayMac].map((b) => b.toString(16).padStart(2, '0')).join(':') : null,
    leaseTime: own ? cfg.leaseTime : null,
    ...uplinkInfo(net),
    hostLinkProblem: net.hostLinkProblem,
    reservations: net.spec.reservations,
    vms: net.seg.attachments.size,
    declared: net.declared,
    ...stateHealth(),
  };
}

/** A VM as listings and `softnet show` show it. */
export function vmInfo(live: LiveVm): Message {
  const att = live.att;
  const lease = live.net.seg.leases.get(att.key);
  return {
    vm: live.record.name,
    key: att.key,
    network: live.net.spec.name,
    type: live.vm.type,
    mac: live.vm.mac,
    externalMac: live.record.extMac,
    ip: att.ip === 0 ? null : formatIpv4(att.ip),
    leaseExpires: lease && lease.state === 'bound' ? new Date(toWall(lease.expires)).toISOString() : null,
    hostDevice: live.net.hostLink,
    port: att.port.name,
    forwards: live.vm.expose,
    allow: live.vm.allow,
    block: live.vm.block,
    pid: live.record.pid,
    since: live.record.since,
    counters: portStats(att.port),
    natMappings: att.natIndex.size,
    ...vmIpv6(att),
    ...uplinkInfo(live.net),
    ...stateHealth(),
  };
}

/** A VM's /64, the addresses it was seen sending from in it, and its NAT66 and NAT64 mappings. */
function vmIpv6(att: Attachment): Message {
  if (att.p0 === 0 && att.p1 === 0)
    return { ipv6Prefix: null, ipv6Addresses: [], nat66Mappings: 0, nat64Mappings: 0 };
  return {
    ipv6Prefix: `${formatIpv6([att.p0, att.p1, 0, 0])}/64`,
    ipv6Addresses: att.sources6().map(([a, b]) => formatIpv6([att.p0, att.p1, a, b])),
    nat66Mappings: chained(att.nat6Index).length,
    nat64Mappings: chained(att.nat64Index).length,
  };
}

/** Whether the engine's state files hold what it has in memory, and if not, which fails and why. */
function stateHealth(): Message {
  return { statePersisted: stateFiles.persisted, stateError: stateFiles.error };
}

/**
 * Which interface and address a network's NAT uses now, and why it is on hold when it is (the address
 * it had stays shown: its mappings wait for it).
 */
function uplinkInfo(net: LiveNetwork): Message {
  const up = net.uplink;
  return {
    uplink: up ? up.ifname : null,
    natAddress: up && up.nat.addr !== 0 ? formatIpv4(up.nat.addr) : null,
    natPorts: up ? up.natPorts : null,
    natHeld: up ? up.heldReason : null,
    natAddress6: up?.six && !up.six.nat.held ? formatIpv6(up.six.nat.addr) : null,
    nat6Held: up?.six ? up.six.heldReason : null,
  };
}

/** The degraded states the engine is in (DESIGN.md, "Degraded, not dead"). */
function degradedStates(engine: Engine): string[] {
  const out: string[] = [];
  if (ResolvConf.active()?.degraded) out.push(DNS_DEGRADED);
  if (engine.controlServer?.outOfFds) out.push(CONTROL_DEGRADED);
  return out;
}

/** A capture request's frame limit: its `count`, or no limit. */
function captureLimit(msg: Message): number {
  const count = msg.count;
  if (count === undefined || count === null) return Number.POSITIVE_INFINITY;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 1 || count > 0xffffffff)
    throw new ControlError("'count' must be a whole number from 1 to 4294967295");
  return count;
}

function fieldErrors<T>(flags: Record<string, string>, check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (e instanceof FieldError) throw new UsageError(flags[e.field] ?? `--${e.field}`, e.message);
    throw e;
  }
}

/** Turns an error into what the reply carries: a UsageError keeps its flag. */
function replyError(e: unknown): Error {
  const fds = outOfFdsCode(e);
  if (fds) return new ControlError(outOfFdsMessage(fds));
  if (e instanceof UsageError) return new ControlError(e.detail, e.flag);
  if (e instanceof ControlError) return e;
  return new ControlError(e instanceof Error ? e.message : String(e));
}

/** The handlers of the engine's control connections. */
export function controlHandlers(engine: Engine, admin: NetworkAdmin | null): ServerHandlers {
  const handle = async (ch: Channel, msg: Message, fd: number): Promise<Message> => {
    const op = msg.op;
    if (op !== 'attach' && fd >= 0) native.closeFd(fd);
    switch (op) {
      case 'hello':
        return {
          pid: process.pid,
          service: engine.opts.service,
          networks: engine.networks.size,
          vms: engine.vms.size,
        };
      case 'attach':
        return attach(engine, ch, msg, fd);
      case 'detach': {
        const live = engine.vms.get(str(msg, 'key'));
        if (!live || live.owner.channel !== ch) throw new ControlError('no such VM of this connection');
        engine.detach(live, msg.free === true, msg.free === true ? 'vm-gone' : 'per-vm-process-stopped');
        return {};
      }
      case 'network.ls':
        return { networks: [...engine.networks.values()].map(networkInfo) };
      case 'network.attached': {
        const net = engine.networks.get(str(msg, 'name'));
        if (!net) throw new ControlError(`no network ${str(msg, 'name')}`);
        return { vms: [...engine.vms.values()].filter((v) => v.net === net).map(vmInfo) };
      }
      case 'show': {
        const live = engine.find(str(msg, 'vm'));
        if (!live) throw new ControlError(`no VM ${str(msg, 'vm')} is attached`);
        return { ...vmInfo(live), degraded: degradedStates(engine) };
      }
      case 'counters':
        return { counters: engine.counters() };
      case 'capture': {
        const live = engine.find(str(msg, 'vm'));
        if (!live) throw new ControlError(`no VM ${str(msg, 'vm')} is attached`);
        const id = engine.captures.start(live, ch, captureLimit(msg));
        return { capture: id, format: CAPTURE_FORMAT, vm: vmInfo(live) };
      }
      case 'capture.stop': {
        const id = msg.capture;
        if (!Number.isInteger(id)) throw new ControlError("'capture' must be a capture id");
        return { ...(await engine.captures.stop(id as number, ch)) };
      }
      case 'network.add':
      case 'network.rm':
      case 'network.reserve': {
        if (!admin) throw new ControlError(`${op} needs the softnet service (softnet serve)`);
        if (op === 'network.add') return networkInfo(await admin.add(obj(msg, 'spec')));
        if (op === 'network.rm') admin.remove(str(msg, 'name'));
        else admin.reserve(str(msg, 'name'), str(msg, 'mac'), str(msg, 'ip'));
        return {};
      }
      default:
        throw new ControlError(`unknown request '${String(op)}'`);
    }
  };
  return {
    message(ch, msg, fd) {
      handle(ch, msg, fd).then(
        (result) => ch.reply(msg, result),
        (e) => ch.reply(msg, replyError(e)),
      );
    },
    closed(ch) {
      engine.channelClosed(ch);
    },
    holds(ch) {
      for (const v of engine.vms.values()) if (v.owner.channel === ch) return true;
      return engine.captures.holds(ch);
    },
  };
}

async function attach(engine: Engine, ch: Channel, msg: Message, fd: number): Promise<Message> {
  // A VM fd that could not be received (no fd left for it) arrives as none: the headroom says why.
  try {
    checkFdHeadroom();
  } catch (e) {
    if (fd >= 0) native.closeFd(fd);
    throw e;
  }
  if (fd < 0) throw new ControlError('attach needs the VM port fd passed along');
  let network: NetworkSpec;
  let vm: VmSpec;
  let given: string[];
  try {
    network = fieldErrors(NETWORK_FLAG, () => checkNetworkSpec(obj(msg, 'network')));
    vm = fieldErrors(VM_FLAG, () => checkVmSpec(obj(msg, 'vm')));
    given = Array.isArray(msg.given)
      ? msg.given.filter((g): g is string => Object.hasOwn(NETWORK_FLAG, g))
      : [];
  } catch (e) {
    native.closeFd(fd);
    throw e;
  }
  const pid = native.peerCred(ch.fd).pid;
  const live = await engine.attach({ network, given, vm, resume: optStr(msg, 'resume'), pid }, fd, {
    channel: ch,
    gone: (reason) => ch.send({ event: 'detached', key: live.att.key, reason }),
    event: (level, event, fields) => ch.send({ event: 'log', level, name: event, fields }),
  });
  return {
    vm: vmInfo(live),
    network: networkInfo(live.net),
    engine: process.pid,
    service: engine.opts.service,
  };
}
