// What defines a network, as it travels on the control socket and sits in the state directory: plain JSON
// values, checked by one function whatever their source (the per-VM command line, `network add`, the
// service's config file, a per-VM process handing its VM to the engine). Values may come as text (from a
// command line) or as JSON numbers and arrays.

import {
  type Cidr,
  formatIpv4,
  formatIpv6,
  formatMac,
  isUnicastMac,
  parseCidr,
  parseCidr6,
  parseIpv4,
  parseMac,
} from '../wire/addr.js';

export type NetworkType = 'shared' | 'host' | 'bridge';

/** One network: its addresses, its host side (host link, or a LAN interface for bridge), its NAT uplink. */
export interface NetworkSpec {
  name: string;
  type: NetworkType;
  /** The subnet, as its network address and prefix: `192.168.64.0/24`. */
  cidr: string;
  /** The DHCP pool as `A-B`; null: every address after the gateway. */
  dhcpRange: string | null;
  hostLink: string;
  leaseTime: number;
  mtu: number;
  domain: string | null;
  /** Routes handed out in DHCP option 121, as CIDRs via the gateway. */
  routes: string[];
  /** The NAT uplink; null: the interface of the default route. */
  uplink: string | null;
  natPorts: string;
  natFlowsPerVm: number | null;
  /** For a bridge network: the interface whose LAN the VMs join. */
  bridgeInterface: string | null;
  /** Addresses reserved for VMs: internal MAC -> IPv4 address. */
  reservations: Record<string, string>;
  /** Whether the VMs get IPv6 (a /64 each); a bridge network passes none. */
  ipv6: boolean;
  /** The ULA /48 the VMs' /64s come from; null: drawn once at random and kept in the state directory. */
  ipv6Prefix: string | null;
  /** IPv6 only: the VMs get no IPv4 at all, and reach the IPv4 world through NAT64 (nat64 is then on). */
  ipv6Only: boolean;
  /** Whether the VMs' IPv6 to the NAT64 prefix leaves as IPv4 (RFC 6146), with DNS64 and PREF64. */
  nat64: boolean;
  /** The NAT64 /96; null: the well-known 64:ff9b::/96 (RFC 6052). */
  nat64Prefix: string | null;
}

/** The per-VM form's flag for each network field, for errors about the network a VM asks for. */
export const NETWORK_FLAG: Record<keyof NetworkSpec, string> = {
  name: '--network',
  type: '--vm-net-type',
  cidr: '--subnet',
  dhcpRange: '--dhcp-range',
  hostLink: '--host-link',
  leaseTime: '--lease-time',
  mtu: '--mtu',
  domain: '--domain',
  routes: '--dhcp-route',
  uplink: '--uplink',
  natPorts: '--nat-ports',
  natFlowsPerVm: '--nat-flows-per-vm',
  bridgeInterface: '--bridge-interface',
  reservations: '--dhcp-host',
  ipv6: '--ipv6',
  ipv6Prefix: '--ipv6-prefix',
  ipv6Only: '--ipv6-only',
  nat64: '--nat64',
  nat64Prefix: '--nat64-prefix',
};

/** A value that cannot be used, and the field it is for. */
export class FieldError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** The network a per-VM softnet makes when nothing else is said (vmnet's subnet). */
export const DEFAULT_NETWORK: NetworkSpec = {
  name: 'default',
  type: 'shared',
  cidr: '192.168.64.0/24',
  dhcpRange: null,
  hostLink: 'softnet0',
  leaseTime: 600,
  mtu: 1500,
  domain: null,
  routes: [],
  uplink: null,
  natPorts: '61000-64999',
  natFlowsPerVm: null,
  bridgeInterface: null,
  reservations: {},
  ipv6: true,
  ipv6Prefix: null,
  ipv6Only: false,
  nat64: false,
  nat64Prefix: null,
};

/** The interface a network holds on the host: its host link, or for a bridge network the one it bridges to. */
export function linkOf(spec: NetworkSpec): string {
  return spec.type === 'bridge' && spec.bridgeInterface !== null ? spec.bridgeInterface : spec.hostLink;
}

/** Checks an interface name: 1-15 of A-Z a-z 0-9 _ . - */
export function ifname(field: string, v: unknown): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9_.-]{1,15}$/.test(v))
    throw new FieldError(field, `'${String(v)}' is not an interface name (1-15 of A-Z a-z 0-9 _ . -)`);
  return v;
}

/** Checks a whole number in [min, max], given as a number or as decimal text. */
export function integer(field: string, v: unknown, min: number, max: number): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : Number.NaN;
  if (!Number.isInteger(n) || n < min || n > max)
    throw new FieldError(field, `'${String(v)}' is not a whole number from ${min} to ${max}`);
  return n;
}

/** Whether `s` is a DNS name: labels of 1-63 letters, digits and inner hyphens, 253 characters at most. */
function isDomainName(s: string): boolean {
  const name = s.endsWith('.') ? s.slice(0, -1) : s;
  if (name.length === 0 || name.length > 253) return false;
  return name.split('.').every((label) => /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(label));
}

/** A list given as a JSON array of strings or as comma-separated text. */
function list(field: string, v: unknown): string[] {
  if (typeof v === 'string') return v === '' ? [] : v.split(',');
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
  throw new FieldError(field, 'must be a list');
}

/** Parses `A-B` port range text. */
export function portRange(field: string, v: unknown): { lo: number; hi: number } {
  const m = typeof v === 'string' ? /^(\d{1,5})-(\d{1,5})$/.exec(v) : null;
  const r = m ? { lo: Number(m[1]), hi: Number(m[2]) } : null;
  if (!r || r.lo < 1024 || r.hi > 65535 || r.hi - r.lo < 63)
    throw new FieldError(field, `'${String(v)}' is not a range A-B of at least 64 ports within 1024-65535`);
  return r;
}

/** The subnet of a spec as numbers. */
export function subnetOf(spec: NetworkSpec): Cidr {
  return parseCidr(spec.cidr)!;
}

/** The first and last address of a network's DHCP pool. */
export function poolOf(spec: NetworkSpec): { start: number; end: number } {
  const c = subnetOf(spec);
  if (spec.dhcpRange !== null) {
    const [a, b] = spec.dhcpRange.split('-').map((x) => parseIpv4(x)!);
    return { start: a, end: b };
  }
  const broadcast = (c.addr | ~c.mask) >>> 0;
  return { start: c.addr + 2, end: broadcast - 1 };
}

/** A switch given as a boolean, as on/off text, or as a flag without a value (''). */
function onOff(field: string, v: unknown): boolean {
  if (v === true || v === 'on' || v === '') return true;
  if (v === false || v === 'off') return false;
  throw new FieldError(field, `'${String(v)}' is not on or off`);
}

/** Checks a ULA /48 (fd00::/8, RFC 4193) as text; null stays null. */
function ula48(field: string, v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const c = typeof v === 'string' ? parseCidr6(v) : null;
  if (
    c === null ||
    c.prefix !== 48 ||
    c.addr[0] >>> 24 !== 0xfd ||
    (c.addr[1] & 0xffff) !== 0 ||
    c.addr[2] !== 0 ||
    c.addr[3] !== 0
  )
    throw new FieldError(field, `'${String(v)}' is not a ULA /48 like fd12:3456:789a::/48`);
  return `${formatIpv6(c.addr)}/48`;
}

/**
 * Checks a NAT64 /96 (RFC 6052 2.2 allows shorter ones, which split the IPv4 address around bits 64-71;
 * softnet takes the /96 that networks use); null stays null.
 */
function prefix96(field: string, v: unknown): string | null {
  if (v === null || v === undefined) return null;
  const c = typeof v === 'string' ? parseCidr6(v) : null;
  if (c === null || c.prefix !== 96 || c.addr[3] !== 0 || c.addr[0] >>> 24 === 0xff)
    throw new FieldError(field, `'${String(v)}' is not an IPv6 /96 like 64:ff9b::/96`);
  return `${formatIpv6(c.addr)}/96`;
}

const FIELDS = new Set(Object.keys(DEFAULT_NETWORK));

/**
 * Checks a network given as a JSON object or as command-line text, on top of `base` (the defaults, or the
 * network it changes); throws FieldError naming the first field that cannot be used.
 */
export function checkNetworkSpec(
  raw: Record<string, unknown>,
  base: NetworkSpec = DEFAULT_NETWORK,
): NetworkSpec {
  for (const k of Object.keys(raw)) if (!FIELDS.has(k)) throw new FieldError(k, 'is not a network setting');
  const v = (k: keyof NetworkSpec): unknown => (raw[k] === undefined ? base[k] : raw[k]);
  const name = v('name');
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/.test(name))
    throw new FieldError('name', `'${String(name)}' is not a network name (1-32 of A-Z a-z 0-9 _ -)`);
  const typeText = v('type');
  const type = typeText === 'nat' ? 'shared' : typeText;
  if (type !== 'shared' && type !== 'host' && type !== 'bridge')
    throw new FieldError('type', `'${String(typeText)}' is not one of shared (or nat), host, bridge`);

  const cidrText = v('cidr');
  const sub = typeof cidrText === 'string' && cidrText.includes('/') ? parseCidr(cidrText) : null;
  if (!sub) throw new FieldError('cidr', `'${String(cidrText)}' is not an IPv4 CIDR like 192.168.64.0/24`);
  if (sub.prefix < 16 || sub.prefix > 29) throw new FieldError('cidr', 'the prefix must be from /16 to /29');
  const net = (sub.addr & sub.mask) >>> 0;
  const cidr = `${formatIpv4(net)}/${sub.prefix}`;
  const broadcast = (net | ~sub.mask) >>> 0;
  const inPool = (a: number) => a >= net + 2 && a <= broadcast - 1;

  const rangeText = v('dhcpRange');
  let dhcpRange: string | null = null;
  if (rangeText !== null && rangeText !== undefined) {
    const parts = typeof rangeText === 'string' ? rangeText.split('-') : [];
    const [a, b] = parts.map((x) => parseIpv4(x));
    if (parts.length !== 2 || a === null || b === null || a > b || !inPool(a) || !inPool(b))
      throw new FieldError(
        'dhcpRange',
        `'${String(rangeText)}' is not a range A-B of addresses of ${cidr} after its gateway`,
      );
    dhcpRange = `${formatIpv4(a)}-${formatIpv4(b)}`;
  }

  const routes = list('routes', v('routes')).map((r) => {
    const c = parseCidr(r);
    if (!c || (c.addr & c.mask) >>> 0 !== c.addr)
      throw new FieldError('routes', `'${r}' is not a network in CIDR form`);
    return `${formatIpv4(c.addr)}/${c.prefix}`;
  });
  if (routes.length > 32) throw new FieldError('routes', 'at most 32 routes');
  const domain = v('domain');
  if (domain !== null && (typeof domain !== 'string' || !isDomainName(domain)))
    throw new FieldError('domain', `'${String(domain)}' is not a domain name`);
  const uplink = v('uplink');
  const natPortsText = v('natPorts');
  portRange('natPorts', natPortsText);
  const flows = v('natFlowsPerVm');
  const bridge = v('bridgeInterface');
  if (type === 'bridge' && (bridge === null || bridge === undefined))
    throw new FieldError('bridgeInterface', 'a bridge network needs --bridge-interface');

  const spec: NetworkSpec = {
    name,
    type,
    cidr,
    dhcpRange,
    hostLink: ifname('hostLink', v('hostLink')),
    leaseTime: integer('leaseTime', v('leaseTime'), 10, 0x7fffffff),
    mtu: integer('mtu', v('mtu'), 576, 2000),
    domain: domain as string | null,
    routes,
    uplink: uplink === null || uplink === undefined ? null : ifname('uplink', uplink),
    natPorts: natPortsText as string,
    natFlowsPerVm: flows === null || flows === undefined ? null : integer('natFlowsPerVm', flows, 1, 65536),
    bridgeInterface: type === 'bridge' ? ifname('bridgeInterface', bridge) : null,
    reservations: {},
    ipv6: type !== 'bridge' && onOff('ipv6', v('ipv6')),
    ipv6Prefix: ula48('ipv6Prefix', v('ipv6Prefix')),
    ipv6Only: onOff('ipv6Only', v('ipv6Only')),
    nat64: false,
    nat64Prefix: prefix96('nat64Prefix', v('nat64Prefix')),
  };
  spec.nat64 = spec.ipv6Only || onOff('nat64', v('nat64'));
  if (spec.ipv6Only && type === 'bridge')
    throw new FieldError('ipv6Only', 'a bridge network has no IPv6 of its own');
  if (spec.nat64 && !spec.ipv6)
    throw new FieldError(spec.ipv6Only ? 'ipv6Only' : 'nat64', 'needs IPv6 (--ipv6 on)');
  const reservations = v('reservations');
  if (typeof reservations !== 'object' || reservations === null || Array.isArray(reservations))
    throw new FieldError('reservations', 'must be an object of MAC -> address');
  for (const [mac, ip] of Object.entries(reservations)) addReservation(spec, mac, ip);
  return spec;
}

/**
 * Adds a reservation of `ip` for the VM with internal MAC `mac` to `spec`; throws FieldError('reservations')
 * when the address is not the network's to give or is reserved for another MAC.
 */
export function addReservation(spec: NetworkSpec, macText: unknown, ipText: unknown): void {
  const mac = typeof macText === 'string' ? parseMac(macText) : null;
  if (!mac || !isUnicastMac(mac))
    throw new FieldError('reservations', `'${String(macText)}' is not a unicast MAC address`);
  const ip = typeof ipText === 'string' ? parseIpv4(ipText) : null;
  const c = subnetOf(spec);
  const broadcast = (c.addr | ~c.mask) >>> 0;
  if (ip === null || (ip & c.mask) >>> 0 !== c.addr || ip <= c.addr + 1 || ip >= broadcast)
    throw new FieldError(
      'reservations',
      `'${String(ipText)}' is not an address of ${spec.cidr} after its gateway`,
    );
  const key = formatMac(mac);
  const addr = formatIpv4(ip);
  for (const [other, at] of Object.entries(spec.reservations)) {
    if (at === addr && other !== key)
      throw new FieldError('reservations', `${addr} is reserved for ${other} on network ${spec.name}`);
  }
  spec.reservations[key] = addr;
}
