// The per-VM command line: parsed and checked in full before anything is opened. It says three things:
// where the VM's frames come from, what the VM asks (VmSpec), and the network it wants (NetworkSpec) —
// plus how an engine this process may have to run itself is set up.

import { isIPv6 } from 'node:net';
import { DEFAULT_CONTROL_SOCKET } from '../control/server.js';
import { UsageError } from '../engine/errors.js';
import { checkVmSpec, VM_FLAG, type VmSpec } from '../engine/vm-spec.js';
import {
  addReservation,
  checkNetworkSpec,
  DEFAULT_NETWORK,
  FieldError,
  NETWORK_FLAG,
  type NetworkSpec,
} from '../net/network-spec.js';
import type { MetricsAddress } from '../stats/metrics-http.js';
import type { LogFormat } from '../util/log.js';
import { parseIpv4 } from '../wire/addr.js';
import { type Given, pathValue } from './flags.js';

export { UsageError };

/** Where the VM's frames come from. */
export type VmSource =
  | { kind: 'fd'; fd: number }
  | { kind: 'tap'; name: string }
  | { kind: 'netns'; path: string; ifname: string }
  | { kind: 'socket'; path: string };

/** How this process's engine runs, if it has to run one. */
export interface EngineSettings {
  stateDir: string;
  controlSocket: string;
  /** Seconds a new engine waits for the VMs an earlier one served to come back. */
  reattachGrace: number;
  user: string | null;
  group: string | null;
  logFormat: LogFormat;
  /** The flags the command line gave, under their main spelling. */
  flagsGiven: ReadonlySet<string>;
  /** Where to serve metrics, when this process runs the engine. */
  metrics: MetricsAddress | null;
}

/** Everything the per-VM form was asked to do. */
export interface VmOptions extends EngineSettings {
  source: VmSource;
  vm: VmSpec;
  network: NetworkSpec;
  /** The network fields the command line gave: an existing network must agree with them. */
  given: string[];
}

/** Network flags of the per-VM form, by the spec field they set. */
const NETWORK_FIELDS: Record<string, keyof NetworkSpec> = Object.fromEntries(
  Object.entries(NETWORK_FLAG)
    .filter(([field]) => field !== 'type' && field !== 'reservations')
    .map(([field, flag]) => [flag, field as keyof NetworkSpec]),
);

function integer(flag: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max)
    throw new UsageError(flag, `'${v}' is not a whole number from ${min} to ${max}`);
  return Number(v);
}

/** Runs a spec check, turning its FieldError into a UsageError for the flag of that field. */
export function checked<T>(flagOf: (field: string) => string, check: () => T): T {
  try {
    return check();
  } catch (e) {
    if (e instanceof FieldError) throw new UsageError(flagOf(e.field), e.message);
    throw e;
  }
}

/** The engine settings shared by the per-VM form and `serve`. */
export function engineSettings(values: Map<string, string>): EngineSettings {
  const logFormat = values.get('--log-format') ?? 'text';
  if (logFormat !== 'text' && logFormat !== 'json')
    throw new UsageError('--log-format', `'${logFormat}' is not text or json`);
  const user = values.get('--user') ?? null;
  const group = values.get('--group') ?? null;
  if ((user === null) !== (group === null))
    throw new UsageError(user === null ? '--group' : '--user', 'needs --user and --group together');
  return {
    stateDir: pathValue('--state-dir', values.get('--state-dir') ?? '/var/lib/softnet'),
    controlSocket: pathValue('--control-socket', values.get('--control-socket') ?? DEFAULT_CONTROL_SOCKET),
    reattachGrace: integer('--reattach-grace', values.get('--reattach-grace') ?? '30', 0, 86400),
    user,
    group,
    logFormat,
    flagsGiven: new Set(values.keys()),
    metrics: values.has('--metrics') ? metricsAddress(values.get('--metrics')!) : null,
  };
}

/** The address of --metrics: ADDR:PORT, ADDR an IPv4 address, an IPv6 one in brackets, or empty for all. */
export function metricsAddress(v: string): MetricsAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]*)):(\d{1,5})$/.exec(v);
  const host = m ? (m[1] ?? (m[2] || '0.0.0.0')) : '';
  if (!m || (m[1] !== undefined ? !isIPv6(host) : parseIpv4(host) === null))
    throw new UsageError(
      '--metrics',
      `'${v}' is not ADDR:PORT (an IPv4 address, or [an IPv6 one], and a port)`,
    );
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new UsageError('--metrics', `port ${m[3]} is not from 1 to 65535`);
  return { host, port };
}

/** The network the flags describe, and which of its fields they gave. */
export function networkFromFlags(
  values: Map<string, string>,
  spelled: (flag: string) => string,
  base: NetworkSpec = DEFAULT_NETWORK,
): { network: NetworkSpec; given: string[] } {
  const raw: Record<string, unknown> = {};
  for (const [flag, field] of Object.entries(NETWORK_FIELDS)) {
    const v = values.get(flag);
    if (v !== undefined) raw[field] = v;
  }
  const fieldFlag = (field: string) => spelled(NETWORK_FLAG[field as keyof NetworkSpec] ?? `--${field}`);
  const network = checked(fieldFlag, () => checkNetworkSpec(raw, base));
  return { network, given: Object.keys(raw) };
}

/** The per-VM form's options from its parsed flags (grammar.ts: SOFTNET); throws UsageError naming the first bad flag. */
export function vmOptions(g: Given): VmOptions {
  const values = g.values;
  const spelled = (f: string) => g.spelled.get(f) ?? f;
  const get = (f: string) => values.get(f);

  const sources = ['--vm-fd', '--vm-tap', '--vm-netns', '--vm-socket'].filter((f) => values.has(f));
  if (sources.length === 0)
    throw new UsageError('--vm-fd', 'no VM port: give one of --vm-fd, --vm-tap, --vm-netns, --vm-socket');
  if (sources.length > 1)
    throw new UsageError(sources[1], `only one VM port may be given, and ${sources[0]} already is`);
  const src = sources[0];
  let source: VmSource;
  let port: string;
  if (src === '--vm-fd') {
    source = { kind: 'fd', fd: integer(src, get(src)!, 0, 1 << 20) };
    port = `fd${source.fd}`;
  } else if (src === '--vm-tap') {
    source = {
      kind: 'tap',
      name: checked(
        () => src,
        () => tapName(get(src)!),
      ),
    };
    port = source.name;
  } else if (src === '--vm-netns') {
    const ifname = checked(
      () => '--vm-ifname',
      () => tapName(get('--vm-ifname') ?? 'eth0'),
    );
    source = { kind: 'netns', path: pathValue(src, get(src)!), ifname };
    port = `${source.path}:${ifname}`;
  } else {
    source = { kind: 'socket', path: pathValue(src, get(src)!) };
    port = source.path;
  }
  if (values.has('--vm-ifname') && source.kind !== 'netns')
    throw new UsageError('--vm-ifname', 'only goes with --vm-netns');
  if (!values.has('--vm-mac-address')) throw new UsageError('--vm-mac-address', 'is required');

  const typeText = get('--vm-net-type') ?? 'shared';
  const vm = checked(
    (field) => spelled(VM_FLAG[field as keyof VmSpec] ?? `--${field}`),
    () =>
      checkVmSpec({
        mac: get('--vm-mac-address'),
        name: get('--vm-name') ?? null,
        externalMac: get('--vm-external-mac') ?? null,
        type: typeText,
        allow: get('--allow'),
        block: get('--block'),
        reject: values.has('--reject'),
        expose: get('--expose'),
        port,
      }),
  );
  const isBridge = vm.type === 'bridge';
  if (isBridge !== values.has('--bridge-interface'))
    throw new UsageError(
      isBridge ? '--vm-net-type' : '--bridge-interface',
      isBridge ? 'bridge needs --bridge-interface' : 'only goes with --vm-net-type bridge',
    );
  const { network, given } = networkFromFlags(values, spelled, {
    ...DEFAULT_NETWORK,
    type: isBridge ? 'bridge' : 'shared',
    // A named network of the engine's has its own host link; one this VM brings is named after its link.
    hostLink:
      values.has('--network') && !values.has('--host-link')
        ? `sn-${get('--network')}`.slice(0, 15)
        : DEFAULT_NETWORK.hostLink,
  });
  if (isBridge) given.push('type');
  for (const entry of (get('--dhcp-host') ?? '').split(',').filter(Boolean)) {
    const [mac, ip, extra] = entry.split('=');
    if (extra !== undefined || ip === undefined)
      throw new UsageError('--dhcp-host', `'${entry}' is not MAC=IP`);
    checked(
      () => '--dhcp-host',
      () => addReservation(network, mac, ip),
    );
  }
  if (Object.keys(network.reservations).length > 0) given.push('reservations');
  return { source, vm, network, given, ...engineSettings(values) };
}

function tapName(v: string): string {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(v))
    throw new FieldError('ifname', `'${v}' is not an interface name (1-15 of A-Z a-z 0-9 _ . -)`);
  return v;
}
