// The per-VM command line: parsed and checked in full before anything is opened.

import type { LogFormat } from '../util/log.js';
import { type Cidr, isUnicastMac, parseCidr, parseMac } from '../wire/addr.js';

/** A command-line mistake: the flag it concerns and what is wrong; the CLI prints it and exits 2. */
export class UsageError extends Error {
  constructor(
    readonly flag: string,
    message: string,
  ) {
    super(`${flag}: ${message}`);
  }
}

/** Where the VM's frames come from. */
export type VmSource =
  | { kind: 'fd'; fd: number }
  | { kind: 'tap'; name: string }
  | { kind: 'netns'; path: string; ifname: string }
  | { kind: 'socket'; path: string };

/** Everything the per-VM form was asked to do. */
export interface VmOptions {
  vm: VmSource;
  mac: Uint8Array;
  netType: 'shared' | 'host';
  subnet: Cidr;
  leaseTime: number;
  hostLink: string;
  stateDir: string;
  user: string | null;
  group: string | null;
  mtu: number;
  domain: string | null;
  routes: Cidr[];
  logFormat: LogFormat;
  /** The NAT uplink interface; null means the interface of the default route. */
  uplink: string | null;
  natPorts: { lo: number; hi: number };
  natFlowsPerVm: number | null;
  /** Destination rules; the `@host` alias is kept as a null address, resolved to the gateway later. */
  allow: Array<Cidr | null>;
  block: Array<Cidr | null>;
  /** Answer blocked traffic (RST, ICMP administratively prohibited) instead of dropping it silently. */
  reject: boolean;
}

const VALUE_FLAGS = new Set([
  '--vm-fd',
  '--vm-tap',
  '--vm-netns',
  '--vm-ifname',
  '--vm-socket',
  '--vm-mac-address',
  '--vm-net-type',
  '--subnet',
  '--lease-time',
  '--bootpd-lease-time',
  '--host-link',
  '--state-dir',
  '--user',
  '--group',
  '--mtu',
  '--domain',
  '--dhcp-route',
  '--log-format',
  '--uplink',
  '--nat-ports',
  '--nat-flows-per-vm',
  '--allow',
  '--block',
]);

/** Flags that take no value. */
const BOOL_FLAGS = new Set(['--reject']);

const ALIASES: Record<string, string> = { '--bootpd-lease-time': '--lease-time' };

function ifname(flag: string, v: string): string {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(v))
    throw new UsageError(flag, `'${v}' is not an interface name (1-15 of A-Z a-z 0-9 _ . -)`);
  return v;
}

function integer(flag: string, v: string, min: number, max: number): number {
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new UsageError(flag, `'${v}' is not a whole number from ${min} to ${max}`);
  }
  return Number(v);
}

function path(flag: string, v: string): string {
  if (v === '' || v.includes('\0')) throw new UsageError(flag, 'needs a path');
  return v;
}

/** Parses a comma-separated list of CIDRs and `@host`. */
function rules(flag: string, text: string | undefined): Array<Cidr | null> {
  if (text === undefined) return [];
  return text.split(',').map((r) => {
    if (r === '@host') return null;
    const c = parseCidr(r);
    if (!c) throw new UsageError(flag, `'${r}' is not an IPv4 CIDR or @host`);
    return c;
  });
}

/** Whether `s` is a DNS name: labels of 1-63 letters, digits and inner hyphens, 253 characters at most. */
function isDomainName(s: string): boolean {
  const name = s.endsWith('.') ? s.slice(0, -1) : s;
  if (name.length === 0 || name.length > 253) return false;
  return name.split('.').every((label) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label));
}

/** Parses the per-VM form's arguments; throws UsageError naming the first bad flag. */
export function parseVmArgs(argv: string[]): VmOptions {
  const given = new Map<string, string>();
  const typed = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    const rawFlag = arg.startsWith('--') && eq > 0 ? arg.slice(0, eq) : arg;
    if (BOOL_FLAGS.has(arg)) {
      if (given.has(arg)) throw new UsageError(arg, 'given twice');
      given.set(arg, '');
      continue;
    }
    if (!VALUE_FLAGS.has(rawFlag)) {
      throw new UsageError(rawFlag, arg.startsWith('-') ? 'unknown flag' : 'unexpected argument');
    }
    const flag = ALIASES[rawFlag] ?? rawFlag;
    let value: string;
    if (rawFlag !== arg) value = arg.slice(eq + 1);
    else if (i + 1 < argv.length) value = argv[++i];
    else throw new UsageError(rawFlag, 'needs a value');
    if (given.has(flag)) throw new UsageError(rawFlag, 'given twice');
    given.set(flag, value);
    typed.set(flag, rawFlag);
  }

  const sources = ['--vm-fd', '--vm-tap', '--vm-netns', '--vm-socket'].filter((f) => given.has(f));
  if (sources.length === 0)
    throw new UsageError('--vm-fd', 'no VM port: give one of --vm-fd, --vm-tap, --vm-netns, --vm-socket');
  if (sources.length > 1)
    throw new UsageError(sources[1], `only one VM port may be given, and ${sources[0]} already is`);
  const get = (f: string) => given.get(f);
  /** The flag as the user spelled it (an alias, perhaps), for error messages. */
  const spelled = (f: string) => typed.get(f) ?? f;
  let vm: VmSource;
  const src = sources[0];
  if (src === '--vm-fd') vm = { kind: 'fd', fd: integer(src, get(src)!, 0, 1 << 20) };
  else if (src === '--vm-tap') vm = { kind: 'tap', name: ifname(src, get(src)!) };
  else if (src === '--vm-netns')
    vm = {
      kind: 'netns',
      path: path(src, get(src)!),
      ifname: ifname('--vm-ifname', get('--vm-ifname') ?? 'eth0'),
    };
  else vm = { kind: 'socket', path: path(src, get(src)!) };
  if (given.has('--vm-ifname') && vm.kind !== 'netns')
    throw new UsageError('--vm-ifname', 'only goes with --vm-netns');

  const macText = get('--vm-mac-address');
  if (macText === undefined) throw new UsageError('--vm-mac-address', 'is required');
  const mac = parseMac(macText);
  if (!mac || !isUnicastMac(mac))
    throw new UsageError('--vm-mac-address', `'${macText}' is not a unicast MAC address`);

  const typeText = get('--vm-net-type') ?? 'shared';
  const netType = typeText === 'nat' ? 'shared' : typeText;
  if (netType !== 'shared' && netType !== 'host') {
    throw new UsageError('--vm-net-type', `'${typeText}' is not one of shared (or nat), host`);
  }

  const subnetText = get('--subnet') ?? '192.168.64.0/24';
  const subnet = parseCidr(subnetText);
  if (!subnet || !subnetText.includes('/'))
    throw new UsageError('--subnet', `'${subnetText}' is not an IPv4 CIDR like 192.168.64.0/24`);
  if (subnet.prefix < 16 || subnet.prefix > 29)
    throw new UsageError('--subnet', 'the prefix must be from /16 to /29');

  const routes: Cidr[] = [];
  const routeText = get('--dhcp-route');
  if (routeText !== undefined) {
    for (const r of routeText.split(',')) {
      const c = parseCidr(r);
      if (!c || (c.addr & c.mask) >>> 0 !== c.addr)
        throw new UsageError('--dhcp-route', `'${r}' is not a network in CIDR form`);
      routes.push(c);
    }
    if (routes.length > 32) throw new UsageError('--dhcp-route', 'at most 32 routes');
  }
  const domain = get('--domain') ?? null;
  if (domain !== null && !isDomainName(domain))
    throw new UsageError('--domain', `'${domain}' is not a domain name`);
  const logFormat = get('--log-format') ?? 'text';
  if (logFormat !== 'text' && logFormat !== 'json')
    throw new UsageError('--log-format', `'${logFormat}' is not text or json`);
  const user = get('--user') ?? null;
  const group = get('--group') ?? null;
  if ((user === null) !== (group === null))
    throw new UsageError(user === null ? '--group' : '--user', 'needs --user and --group together');

  const portsText = get('--nat-ports') ?? '61000-64999';
  const pm = /^(\d{1,5})-(\d{1,5})$/.exec(portsText);
  const natPorts = pm ? { lo: Number(pm[1]), hi: Number(pm[2]) } : null;
  if (!natPorts || natPorts.lo < 1024 || natPorts.hi > 65535 || natPorts.hi - natPorts.lo < 63) {
    throw new UsageError(
      '--nat-ports',
      `'${portsText}' is not a range A-B of at least 64 ports within 1024-65535`,
    );
  }
  const uplink = get('--uplink');
  return {
    vm,
    mac,
    netType,
    subnet,
    leaseTime: integer(spelled('--lease-time'), get('--lease-time') ?? '600', 10, 0x7fffffff),
    hostLink: ifname('--host-link', get('--host-link') ?? 'softnet0'),
    stateDir: path('--state-dir', get('--state-dir') ?? '/var/lib/softnet'),
    user,
    group,
    mtu: integer('--mtu', get('--mtu') ?? '1500', 576, 2000),
    domain,
    routes,
    logFormat,
    uplink: uplink === undefined ? null : ifname('--uplink', uplink),
    natPorts,
    natFlowsPerVm: given.has('--nat-flows-per-vm')
      ? integer('--nat-flows-per-vm', get('--nat-flows-per-vm')!, 1, 65536)
      : null,
    allow: rules('--allow', get('--allow')),
    block: rules('--block', get('--block')),
    reject: given.has('--reject'),
  };
}

/** The usage text of the per-VM form. */
export const USAGE = `usage: softnet (--vm-fd N | --vm-tap NAME | --vm-netns PATH [--vm-ifname NAME] | --vm-socket PATH)
               --vm-mac-address MAC [--vm-net-type shared|host] [--subnet CIDR] [--lease-time SECONDS]
               [--host-link NAME] [--state-dir DIR] [--user USER --group GROUP] [--mtu N]
               [--domain NAME] [--dhcp-route CIDR,...] [--log-format text|json]
               [--allow CIDR|@host,...] [--block CIDR|@host,...] [--reject]
               [--uplink IFACE] [--nat-ports A-B] [--nat-flows-per-vm N]
       softnet demo`;
