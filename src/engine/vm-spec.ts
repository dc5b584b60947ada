// What a VM asks of the network it attaches to: its identity (internal MAC, name, pinned external MAC), its
// type, its destination rules and its port forwards. Like a network spec, it is plain JSON checked by one
// function, whether it comes from the command line or over the control socket.

import { FieldError } from '../net/network-spec.js';
import { canonicalRule } from '../policy/user-rules.js';
import { formatIpv4, formatMac, isUnicastMac, parseIpv4, parseMac } from '../wire/addr.js';

/** shared: the world through NAT and the host; host: the host only; disconnected: nothing; bridge: a LAN. */
export type VmType = 'shared' | 'host' | 'disconnected' | 'bridge';

/** One VM NIC's request. */
export interface VmSpec {
  /** The internal MAC, as the guest has it. */
  mac: string;
  /** A name for listings and `softnet show`; null: one is made up. */
  name: string | null;
  /** The external MAC the host sees; null: softnet picks a unique one. */
  externalMac: string | null;
  type: VmType;
  /** Destination rules: IPv4 and IPv6 CIDRs and `@host`, in canonical form. */
  allow: string[];
  block: string[];
  reject: boolean;
  /** Port forwards, `[BIND:]EXT:INT[/tcp|/udp]`. */
  expose: string[];
  /** What the VM's port is, for logs: `fd3`, a TAP's name, a namespace path. */
  port: string;
}

/** The per-VM form's flag for each VM field. */
export const VM_FLAG: Record<keyof VmSpec, string> = {
  mac: '--vm-mac-address',
  name: '--vm-name',
  externalMac: '--vm-external-mac',
  type: '--vm-net-type',
  allow: '--allow',
  block: '--block',
  reject: '--reject',
  expose: '--expose',
  port: '--vm-fd',
};

/** A port forward: host port `ext` (on `bind`, or every host address when 0) to the VM's port `int`. */
export interface Forward {
  bind: number;
  ext: number;
  int: number;
  proto: 'tcp' | 'udp';
}

const FIELDS = new Set(['mac', 'name', 'externalMac', 'type', 'allow', 'block', 'reject', 'expose', 'port']);

function strings(field: string, v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (typeof v === 'string') return v === '' ? [] : v.split(',');
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
  throw new FieldError(field, 'must be a list');
}

function unicastMac(field: string, v: unknown): string {
  const mac = typeof v === 'string' ? parseMac(v) : null;
  if (!mac || !isUnicastMac(mac)) throw new FieldError(field, `'${String(v)}' is not a unicast MAC address`);
  return formatMac(mac);
}

/** Parses one forward, `[BIND:]EXT:INT[/tcp|/udp]` (TCP when no protocol is given, as Softnet's EXT:INT). */
export function parseForward(text: string): Forward {
  const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(text);
  const bind = m?.[1] === undefined ? 0 : parseIpv4(m[1]);
  const ext = Number(m?.[2]);
  const int = Number(m?.[3]);
  if (!m || bind === null || ext < 1 || ext > 65535 || int < 1 || int > 65535)
    throw new FieldError('expose', `'${text}' is not [BIND:]EXT:INT[/tcp|/udp] with ports from 1 to 65535`);
  return { bind, ext, int, proto: m[4] === 'udp' ? 'udp' : 'tcp' };
}

/** The text form of a forward, as listings show it. */
export function formatForward(f: Forward): string {
  return `${f.bind === 0 ? '' : `${formatIpv4(f.bind)}:`}${f.ext}:${f.int}/${f.proto}`;
}

/** Checks a VM's request; throws FieldError naming the first field that cannot be used. */
export function checkVmSpec(raw: Record<string, unknown>): VmSpec {
  for (const k of Object.keys(raw)) if (!FIELDS.has(k)) throw new FieldError(k, 'is not a VM setting');
  const name = raw.name ?? null;
  if (name !== null && (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)))
    throw new FieldError('name', `'${String(name)}' is not a VM name (1-64 of A-Z a-z 0-9 _ . -)`);
  const typeText = raw.type ?? 'shared';
  const type = typeText === 'nat' ? 'shared' : typeText;
  if (type !== 'shared' && type !== 'host' && type !== 'disconnected' && type !== 'bridge')
    throw new FieldError(
      'type',
      `'${String(typeText)}' is not one of shared (or nat), host, bridge, disconnected`,
    );
  const rules = (field: string) =>
    strings(field, raw[field]).map((r) => {
      const rule = canonicalRule(r);
      if (rule === null) throw new FieldError(field, `'${r}' is not an IPv4 CIDR, an IPv6 CIDR or @host`);
      return rule;
    });
  const expose = strings('expose', raw.expose);
  const seen = new Set<string>();
  for (const f of expose.map(parseForward)) {
    const key = `${f.proto}:${f.ext}`;
    if (seen.has(key)) throw new FieldError('expose', `host port ${f.ext}/${f.proto} is given twice`);
    // What the VM sends from a forwarded port leaves from that forward's host port: there must be one.
    if (seen.has(`vm ${f.proto}:${f.int}`))
      throw new FieldError('expose', `VM port ${f.int}/${f.proto} is forwarded twice`);
    seen.add(key);
    seen.add(`vm ${f.proto}:${f.int}`);
  }
  const port = raw.port ?? 'vm';
  if (typeof port !== 'string') throw new FieldError('port', 'must be a string');
  if (raw.reject !== undefined && typeof raw.reject !== 'boolean')
    throw new FieldError('reject', 'must be true or false');
  return {
    mac: unicastMac('mac', raw.mac),
    name: name as string | null,
    externalMac:
      raw.externalMac === undefined || raw.externalMac === null
        ? null
        : unicastMac('externalMac', raw.externalMac),
    type,
    allow: rules('allow'),
    block: rules('block'),
    reject: raw.reject === true,
    expose,
    port,
  };
}
