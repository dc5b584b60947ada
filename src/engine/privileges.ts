// Dropping root after set-up for --user/--group, keeping exactly the capabilities with which the running
// engine opens networks for VMs that arrive later (docs/privileges.md says why each one, and what is not kept).

import { readFileSync } from 'node:fs';
import { native } from '../native.js';

/**
 * Kept permitted and effective after the drop, by name and number (linux/capability.h): NET_ADMIN makes
 * host links (TAP devices, their address, MTU and net.* sysctls) and NAT guards (nftables,
 * ip_local_reserved_ports); NET_RAW opens a NAT uplink's raw and packet sockets; NET_BIND_SERVICE lets
 * port forwards listen on the host below port 1024.
 */
const KEPT = { cap_net_bind_service: 10, cap_net_admin: 12, cap_net_raw: 13 } as const;

const bits = (caps: number[]) => caps.reduce((mask, cap) => mask | (1 << cap), 0);

/** The kept capabilities as a bit mask. */
export const KEPT_CAPS = bits(Object.values(KEPT));

/** Also ambient: a program run without file capabilities gets only these, and `nft` needs NET_ADMIN. */
export const AMBIENT_CAPS = bits([KEPT.cap_net_admin]);

/** What opening a network takes. */
const NEEDED_CAPS = bits([KEPT.cap_net_admin, KEPT.cap_net_raw]);

/** The kept capabilities' names, for the log. */
export const KEPT_NAMES = Object.keys(KEPT).join(',');

function lookup(file: string, name: string): number {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return Number(f[2]);
  }
  if (/^\d+$/.test(name)) return Number(name);
  throw new Error(`no such ${file === '/etc/passwd' ? 'user' : 'group'}: ${name}`);
}

/**
 * Switches to `user`/`group` (names or numbers) keeping KEPT_CAPS, with no way back to more (no new
 * privileges by exec, not dumpable); `prepare` first gets their ids to hand over files.
 */
export function dropPrivileges(
  user: string,
  group: string,
  prepare: (uid: number, gid: number) => void,
): void {
  const uid = lookup('/etc/passwd', user);
  const gid = lookup('/etc/group', group);
  prepare(uid, gid);
  native.dropPrivileges(uid, gid, KEPT_CAPS, AMBIENT_CAPS);
}

/** Whether this process can open networks: root, or given NET_ADMIN and NET_RAW (a systemd unit's AmbientCapabilities). */
export function canOpenNetworks(): boolean {
  if (process.geteuid!() === 0) return true;
  const eff = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return eff !== null && (Number.parseInt(eff[1].slice(-8), 16) & NEEDED_CAPS) === NEEDED_CAPS;
}
