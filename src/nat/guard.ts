// Keeping the host's own stack off softnet's NAT ports: the range is reserved (the host never picks it
// for its own connections) and an nftables table of softnet's drops what arrives for it before the stack
// sees it, so the host sends no RST and no port unreachable for flows it does not know. The packet socket
// still sees those packets: it taps them before netfilter. The table also keeps conntrack out of softnet's
// flows. This file has the IPv4 table and what both families share; guard6.ts has the IPv6 (NAT66) one.
//
// Port forwards get the same treatment from two sets of the table, forward_tcp and forward_udp, whose
// elements come and go with the forwards; their rules match only on the uplink interface, so the host's
// own connections to a forwarded port (on loopback, or from a VM over the host link) still reach the
// engine's local proxy listening on it.
//
// The table's name carries the uplink, the range and the owner's pid (softnet_<uplink>_<lo>_<hi>_<pid>,
// and softnet6_... for an `ip6` table), so a start finds what a killed softnet left, on any uplink, of
// either family and whatever range it used, and removes its table (its sets with it) and its reservation;
// a live softnet's guard is left alone (its range stays reserved), and a range that overlaps a live one's
// of the same family on the same uplink is refused. Reservations are edited as port intervals, because the
// kernel merges touching ranges. One reservation serves both families: ip_local_reserved_ports (under
// net.ipv4, despite the name) is what the IPv6 stack's port choice reads too. Removing a guard therefore
// gives back only the ports that no other live guard (of either family, this process's included) holds.
//
// Engines starting or stopping at the same time would each read, change and write back the reserved
// ranges and lose one another's: every install and removal holds this network namespace's guard lock.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { native } from '../native.js';
import { formatIpv4 } from '../wire/addr.js';

const RESERVED = '/proc/sys/net/ipv4/ip_local_reserved_ports';

type Interval = [number, number];

/** How long to wait for another engine's guard change before giving up. */
const LOCK_WAIT_MS = 10_000;

/**
 * Runs `step` holding this network namespace's guard lock (see native netnsLock), waiting for another
 * process that holds it; throws if it is not free within LOCK_WAIT_MS.
 */
export function withGuardLock<T>(step: () => T): T {
  const deadline = Date.now() + LOCK_WAIT_MS;
  let fd = native.netnsLock('softnet-nat-guard');
  while (fd < 0) {
    if (Date.now() > deadline)
      throw new Error('another softnet is changing the NAT guards and does not finish');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
    fd = native.netnsLock('softnet-nat-guard');
  }
  try {
    return step();
  } finally {
    native.closeFd(fd);
  }
}

/** Runs an nft script as one transaction; throws if nft fails. */
export function nft(script: string): void {
  execFileSync('nft', ['-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
}

/** nft, with its complaint as the error's message. */
export function nftOrThrow(script: string): void {
  try {
    nft(script);
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`nftables: ${err.stderr?.toString().trim() || err.message}`);
  }
}

function readReserved(): Interval[] {
  return readFileSync(RESERVED, 'utf8')
    .trim()
    .split(',')
    .filter(Boolean)
    .map((r) => {
      const [a, b] = r.split('-').map(Number);
      return [a, b ?? a] as Interval;
    });
}

function writeReserved(list: Interval[]): void {
  writeFileSync(RESERVED, list.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',') || '\n');
}

/** The reserved intervals without [lo, hi]. */
export function subtract(list: Interval[], lo: number, hi: number): Interval[] {
  const out: Interval[] = [];
  for (const [a, b] of list) {
    if (b < lo || a > hi) out.push([a, b]);
    else {
      if (a < lo) out.push([a, lo - 1]);
      if (b > hi) out.push([hi + 1, b]);
    }
  }
  return out;
}

interface Guarded {
  family: 'ip' | 'ip6';
  name: string;
  /** The table name's prefix: `softnet_` (or `softnet6_`) and the uplink. */
  prefix: string;
  lo: number;
  hi: number;
  pid: number;
}

/** softnet's tables of both families, with the uplinks, ranges and owners their names carry. */
function guards(): Guarded[] {
  const out: Guarded[] = [];
  // nft's complaints go into the error thrown, not onto softnet's stderr (one JSON object a line there).
  const listing = execFileSync('nft', ['list', 'tables'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const re = /^table (ip6?) ((softnet(6?)_\w+)_(\d+)_(\d+)_(\d+))$/;
  for (const line of listing.split('\n')) {
    const m = re.exec(line.trim());
    // A family and a prefix that do not go together are not a table of softnet's.
    if (m && (m[1] === 'ip6') === (m[4] === '6'))
      out.push({
        family: m[1] as 'ip' | 'ip6',
        name: m[2],
        prefix: m[3],
        lo: Number(m[5]),
        hi: Number(m[6]),
        pid: Number(m[7]),
      });
  }
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Thrown when a live softnet (or another network of this engine) guards an overlapping range. */
export class GuardConflict extends Error {}

/**
 * Makes room for a guard of `uplink` and [lo, hi] whose table names start with `kind` (softnet, or
 * softnet6 for IPv6): removes what dead softnets left, of both families and on any uplink (one killed
 * while NAT had just moved left a guard on the interface it moved from), then reserves [lo, hi]; returns
 * the new table's name. Throws a GuardConflict when a live guard of the same kind and uplink overlaps the
 * range. The caller holds the guard lock.
 */
export function claimGuard(kind: 'softnet' | 'softnet6', uplink: string, lo: number, hi: number): string {
  const prefix = `${kind}_${uplink.replace(/\W/g, '_')}`;
  const all = guards();
  // This process's own tables are live too: one engine may NAT several networks through one uplink.
  const live = all.filter((g) => alive(g.pid));
  for (const g of live) {
    if (g.prefix === prefix && g.lo <= hi && g.hi >= lo) {
      const who = g.pid === process.pid ? 'another network of this engine' : `softnet pid ${g.pid}`;
      throw new GuardConflict(
        `ports ${g.lo}-${g.hi} on ${uplink} are used by ${who}; pick another --nat-ports`,
      );
    }
  }
  const dead = all.filter((g) => !live.includes(g));
  if (dead.length > 0) {
    let reserved = readReserved();
    for (const g of dead) {
      nft(`delete table ${g.family} ${g.name}\n`);
      reserved = subtract(reserved, g.lo, g.hi);
    }
    // A live guard's range may overlap a dead one's (another uplink, the same default range): it stays.
    for (const g of live) reserved = [...subtract(reserved, g.lo, g.hi), [g.lo, g.hi]];
    writeReserved(reserved);
  }
  writeReserved([...subtract(readReserved(), lo, hi), [lo, hi]]);
  return `${prefix}_${lo}_${hi}_${process.pid}`;
}

/**
 * Gives back the reservation of [lo, hi] once a guard's table is gone, except the ports a live guard of
 * either family still holds (the other family's guard of the same uplink, another uplink's with the same
 * range). The caller holds the guard lock.
 */
export function releaseRange(lo: number, hi: number): void {
  let reserved = subtract(readReserved(), lo, hi);
  for (const g of guards()) {
    if (g.lo > hi || g.hi < lo || !alive(g.pid)) continue;
    const a = Math.max(g.lo, lo);
    const b = Math.min(g.hi, hi);
    reserved = [...subtract(reserved, a, b), [a, b]];
  }
  writeReserved(reserved);
}

/** The guard of one uplink address and port range; remove() undoes it. */
export class NatGuard {
  private constructor(
    readonly table: string,
    /** The uplink interface it guards. */
    readonly uplink: string,
    private readonly lo: number,
    private readonly hi: number,
  ) {}

  /** Drops what arrives on the uplink for forwarded ports `ports` of `proto` from now on; throws if nft fails. */
  addForwards(proto: 'tcp' | 'udp', ports: number[]): void {
    if (ports.length > 0)
      nftOrThrow(`add element ip ${this.table} forward_${proto} { ${ports.join(', ')} }\n`);
  }

  /** Lets the host's stack have forwarded ports `ports` of `proto` again (ports not in the set are skipped). */
  removeForwards(proto: 'tcp' | 'udp', ports: number[]): void {
    for (const port of ports) {
      try {
        nft(`delete element ip ${this.table} forward_${proto} { ${port} }\n`);
      } catch {}
    }
  }

  /**
   * Removes what dead softnets left (on any uplink: one killed while NAT had just moved left a guard on
   * the interface it moved from), then reserves [lo, hi] and guards `addr`. Throws when a live softnet
   * guards an overlapping range on the same uplink.
   */
  static install(uplink: string, addr: number, lo: number, hi: number): NatGuard {
    const table = claimGuard('softnet', uplink, lo, hi);
    const range = `${lo}-${hi}`;
    const a = formatIpv4(addr);
    const dev = JSON.stringify(uplink);
    try {
      nftOrThrow(`table ip ${table} {
  set forward_tcp { type inet_service; }
  set forward_udp { type inet_service; }
  chain guard {
    type filter hook prerouting priority raw; policy accept;
    ip daddr ${a} tcp dport ${range} drop
    ip daddr ${a} udp dport ${range} drop
    ip daddr ${a} icmp type echo-reply icmp id ${range} drop
    iifname ${dev} ip daddr ${a} tcp dport @forward_tcp drop
    iifname ${dev} ip daddr ${a} udp dport @forward_udp drop
  }
  chain untracked {
    type filter hook output priority raw; policy accept;
    ip saddr ${a} tcp sport ${range} notrack
    ip saddr ${a} udp sport ${range} notrack
    ip saddr ${a} icmp type echo-request icmp id ${range} notrack
    oifname ${dev} ip saddr ${a} tcp sport @forward_tcp notrack
    oifname ${dev} ip saddr ${a} udp sport @forward_udp notrack
  }
}
`);
    } catch (e) {
      releaseRange(lo, hi);
      throw e;
    }
    return new NatGuard(table, uplink, lo, hi);
  }

  /** Removes the table and the reservation of the ports no other live guard holds. */
  remove(): void {
    this.removeTable();
    releaseRange(this.lo, this.hi);
  }

  /** Removes the table only: the guard of another interface holds the same range reserved. */
  removeTable(): void {
    try {
      nft(`delete table ip ${this.table}\n`);
    } catch {}
  }
}
