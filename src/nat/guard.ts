// Keeping the host's own stack off softnet's NAT ports: the range is reserved (the host never picks it
// for its own connections) and an nftables table of softnet's drops what arrives for it before the stack
// sees it, so the host sends no RST and no port unreachable for flows it does not know. The packet socket
// still sees those packets: it taps them before netfilter. The table also keeps conntrack out of softnet's
// flows. A table left by a killed softnet is replaced at the next start.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { formatIpv4 } from '../wire/addr.js';

const RESERVED = '/proc/sys/net/ipv4/ip_local_reserved_ports';

function nft(script: string): void {
  execFileSync('nft', ['-f', '-'], { input: script, stdio: ['pipe', 'ignore', 'pipe'] });
}

function reservedRanges(): string[] {
  return readFileSync(RESERVED, 'utf8').trim().split(',').filter(Boolean);
}

/** The guard of one uplink address and port range; remove() undoes it. */
export class NatGuard {
  private constructor(
    readonly table: string,
    private readonly range: string,
  ) {}

  /** Reserves [lo, hi] and installs table `table` guarding `addr`. */
  static install(table: string, addr: number, lo: number, hi: number): NatGuard {
    const range = `${lo}-${hi}`;
    const ranges = reservedRanges();
    // A range left by a killed softnet is already there: it is taken over, and removed at exit like a new one.
    const addedRange = !ranges.includes(range);
    if (addedRange) writeFileSync(RESERVED, [...ranges, range].join(','));
    const a = formatIpv4(addr);
    try {
      nft(`table ip ${table} {}
delete table ip ${table}
table ip ${table} {
  chain guard {
    type filter hook prerouting priority raw; policy accept;
    ip daddr ${a} tcp dport ${range} drop
    ip daddr ${a} udp dport ${range} drop
    ip daddr ${a} icmp type echo-reply icmp id ${range} drop
  }
  chain untracked {
    type filter hook output priority raw; policy accept;
    ip saddr ${a} tcp sport ${range} notrack
    ip saddr ${a} udp sport ${range} notrack
    ip saddr ${a} icmp type echo-request icmp id ${range} notrack
  }
}
`);
    } catch (e) {
      if (addedRange) writeFileSync(RESERVED, ranges.join(','));
      const err = e as { stderr?: Buffer; message: string };
      throw new Error(`nftables: ${err.stderr?.toString().trim() || err.message}`);
    }
    return new NatGuard(table, range);
  }

  /** Removes the table and the reservation. */
  remove(): void {
    try {
      nft(`delete table ip ${this.table}\n`);
    } catch {}
    const ranges = reservedRanges();
    if (ranges.includes(this.range))
      writeFileSync(RESERVED, ranges.filter((r) => r !== this.range).join(',') || '\n');
  }
}
