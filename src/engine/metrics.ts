// What `--metrics` serves: the engine's own counters and tables, read at each scrape, so nothing is
// counted twice on the hot path. Per VM its port's counters; drops by reason; per network its VMs, bound
// leases and pool; per uplink its NAT mappings by protocol; the captures running; the engine itself.

import type { Server } from 'node:http';
import { CONTROL_DEGRADED, type RefusalReason } from '../control/server.js';
import { NatProto } from '../nat/flows.js';
import { PortStat } from '../ports/port.js';
import { DNS_DEGRADED, ResolvConf } from '../services/resolv-conf.js';
import { DROP_NAMES, Drop } from '../stats/drops.js';
import { type MetricsAddress, serveMetrics } from '../stats/metrics-http.js';
import { Exposition, type Labels } from '../stats/prometheus.js';
import { monotonicMs } from '../util/clock.js';
import type { Logger } from '../util/log.js';
import { stateFiles } from '../util/state-files.js';
import { VERSION } from '../version.js';
import { formatIpv4, formatIpv6 } from '../wire/addr.js';
import type { Engine } from './engine.js';
import { UsageError } from './errors.js';
import type { LiveUplink } from './uplinks.js';

/** Per-VM counters: metric name, the port counter it reads, help. */
const VM_COUNTERS: ReadonlyArray<readonly [string, number, string]> = [
  ['softnet_vm_rx_frames_total', PortStat.RX_FRAMES, 'Frames softnet received from the VM.'],
  ['softnet_vm_rx_bytes_total', PortStat.RX_BYTES, 'Bytes softnet received from the VM.'],
  ['softnet_vm_tx_frames_total', PortStat.TX_FRAMES, 'Frames softnet sent to the VM.'],
  ['softnet_vm_tx_bytes_total', PortStat.TX_BYTES, 'Bytes softnet sent to the VM.'],
  [
    'softnet_vm_tx_dropped_frames_total',
    PortStat.TX_DROPS,
    "Frames for the VM that its port could not take (the VM's queue was full, or it had gone).",
  ],
];

const REFUSALS: readonly RefusalReason[] = [
  'malformed',
  'too-long',
  'flood',
  'idle',
  'too-many-connections',
  'out-of-fds',
];

const PROTOCOLS: ReadonlyArray<readonly [string, number]> = [
  ['tcp', NatProto.TCP],
  ['udp', NatProto.UDP],
  ['icmp', NatProto.ICMP],
];

/** The engine's metrics in Prometheus text format; `now` in ms since the epoch. */
export function engineMetrics(engine: Engine, now = Date.now()): string {
  const out = new Exposition();
  const vms = [...engine.vms.values()];
  const vmLabels = vms.map(
    (v): Labels => ({
      vm: v.record.name,
      network: v.net.spec.name,
      mac: v.vm.mac,
      external_mac: v.record.extMac,
    }),
  );
  for (const [name, stat, help] of VM_COUNTERS)
    out.family(
      name,
      'counter',
      help,
      vms.map((v, i) => [vmLabels[i], v.att.port.stats[stat]] as const),
    );

  const drops: Array<readonly [Labels, number]> = [];
  DROP_NAMES.forEach((reason, i) => {
    if (i !== Drop.NONE) drops.push([{ reason }, engine.p.drops[i]]);
  });
  out.family('softnet_drops_total', 'counter', 'Frames softnet dropped, by reason.', drops);

  const nets = [...engine.networks.values()];
  const netLabel = (name: string): Labels => ({ network: name });
  out.family(
    'softnet_network_vms',
    'gauge',
    'VMs attached to the network.',
    nets.map((n) => [netLabel(n.spec.name), n.seg.attachments.size] as const),
  );
  out.family(
    'softnet_network_leases',
    'gauge',
    'DHCP leases bound on the network (held by VMs attached or not).',
    nets.map((n) => {
      let bound = 0;
      const mono = monotonicMs();
      for (const l of n.seg.leases.all()) if (l.state === 'bound' && l.expires > mono) bound++;
      return [netLabel(n.spec.name), bound] as const;
    }),
  );
  out.family(
    'softnet_network_pool_addresses',
    'gauge',
    "Addresses in the network's DHCP pool.",
    nets.map((n) => [netLabel(n.spec.name), n.seg.cfg.poolEnd - n.seg.cfg.poolStart + 1] as const),
  );

  const ups = [...engine.uplinks.values()];
  out.family(
    'softnet_nat_mappings',
    'gauge',
    'NAT mappings in use on the uplink, by protocol.',
    ups.flatMap((u) =>
      PROTOCOLS.map(
        ([protocol, proto]) =>
          [{ uplink: uplinkLabel(u), ports: u.natPorts, protocol }, u.nat.flows.inUse(proto)] as const,
      ),
    ),
  );
  out.family(
    'softnet_nat66_mappings',
    'gauge',
    'NAT66 mappings in use on the uplink, by protocol (ICMP: ICMPv6 echo).',
    ups.flatMap((u) =>
      PROTOCOLS.map(
        ([protocol, proto]) =>
          [
            { uplink: uplinkLabel(u), ports: u.natPorts, protocol },
            u.six?.nat.flows.inUse(proto) ?? 0,
          ] as const,
      ),
    ),
  );
  out.family(
    'softnet_uplink_ipv6_usable',
    'gauge',
    'Whether the uplink carries NAT66 now (0: held, with the reason: no IPv6 address, no route...).',
    ups.map(
      (u) =>
        [
          {
            uplink: uplinkLabel(u),
            ports: u.natPorts,
            address: u.six && !u.six.nat.held ? formatIpv6(u.six.nat.addr) : '',
            reason: u.six?.heldReason ?? '',
          },
          u.six && !u.six.nat.held ? 1 : 0,
        ] as const,
    ),
  );
  out.family(
    'softnet_nat_ports',
    'gauge',
    "External ports of the uplink's range: the most mappings it holds per protocol.",
    ups.map(
      (u) => [{ uplink: uplinkLabel(u), ports: u.natPorts }, u.nat.flows.hi - u.nat.flows.lo + 1] as const,
    ),
  );
  out.family(
    'softnet_uplink_usable',
    'gauge',
    'Whether the uplink carries NAT now (0: held, with the reason and the address its mappings wait for).',
    ups.map(
      (u) =>
        [
          {
            uplink: uplinkLabel(u),
            ports: u.natPorts,
            address: u.nat.addr === 0 ? '' : formatIpv4(u.nat.addr),
            reason: u.heldReason ?? '',
          },
          u.nat.held ? 0 : 1,
        ] as const,
    ),
  );
  out.family(
    'softnet_uplink_outages_total',
    'counter',
    'Times the uplink could not carry NAT (down, gone, without an address, no default route).',
    ups.map((u) => [{ uplink: uplinkLabel(u), ports: u.natPorts }, u.outages] as const),
  );
  out.family(
    'softnet_host_link_usable',
    'gauge',
    "Whether the network's host link (a bridge network's: its interface) works (0: it could not be repaired yet).",
    nets.map((n) => [netLabel(n.spec.name), n.hostLinkProblem === null ? 1 : 0] as const),
  );
  out.family(
    'softnet_host_link_repairs_total',
    'counter',
    "Times the network's host link was found deleted, down or without its address and put back, or its bridged interface was made again.",
    nets.map((n) => [netLabel(n.spec.name), n.hostLinkRepairs] as const),
  );

  out.family(
    'softnet_state_persisted',
    'gauge',
    'Whether every state file holds what softnet has in memory (0: writes fail and are being retried).',
    [[{}, stateFiles.persisted ? 1 : 0]],
  );
  out.family('softnet_state_write_failures_total', 'counter', 'Writes of state files that failed.', [
    [{}, stateFiles.failedWrites],
  ]);
  const control = engine.controlServer;
  out.family(
    'softnet_control_rejected_total',
    'counter',
    'Control connections refused, by reason.',
    REFUSALS.map((reason) => [{ reason }, control?.refused.get(reason) ?? 0] as const),
  );
  const dns = ResolvConf.active();
  out.family(
    'softnet_dns_resolvers',
    'gauge',
    "Nameservers of the host's resolv.conf that DNS at the gateway forwards to.",
    dns ? [[{}, dns.servers.length]] : [],
  );
  out.family('softnet_degraded', 'gauge', 'Whether softnet is in the degraded state (1) or not (0).', [
    [{ state: DNS_DEGRADED }, dns?.degraded ? 1 : 0],
    [{ state: CONTROL_DEGRADED }, control?.outOfFds ? 1 : 0],
  ]);

  out.family('softnet_captures', 'gauge', 'Captures running (softnet capture).', [
    [{}, engine.captures.size],
  ]);
  out.family('softnet_engine_info', 'gauge', 'The engine: its version, process and kind.', [
    [
      {
        version: VERSION,
        pid: String(process.pid),
        kind: engine.opts.service ? 'service' : 'per-vm',
      },
      1,
    ],
  ]);
  out.family('softnet_engine_start_time_seconds', 'gauge', 'When the engine started, since the epoch.', [
    [{}, engine.started / 1000],
  ]);
  out.family('softnet_engine_uptime_seconds', 'gauge', 'Seconds since the engine started.', [
    [{}, (now - engine.started) / 1000],
  ]);
  return out.text();
}

/** An uplink's label: the interface NAT uses now, else the one asked for. */
function uplinkLabel(u: LiveUplink): string {
  return u.ifname ?? u.want ?? 'none';
}

/** Serves the engine's metrics at `addr`; throws a UsageError naming --metrics when it cannot listen there. */
export async function startMetrics(engine: Engine, addr: MetricsAddress, log: Logger): Promise<Server> {
  let server: Server;
  try {
    server = await serveMetrics(addr, () => engineMetrics(engine), log);
  } catch (e) {
    throw new UsageError(
      '--metrics',
      `cannot listen on ${addr.host} port ${addr.port}: ${(e as Error).message}`,
    );
  }
  const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
  log.info('metrics', { url: `http://${host}:${addr.port}/metrics` });
  return server;
}
