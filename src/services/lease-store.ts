// The lease file under --state-dir: the bound leases, rewritten whole and atomically after each change (a
// disk that refuses is retried, see StateFiles). Expiry times are monotonic in memory and wall time (ISO
// text) in the file, for people and for the next start; they are converted here and nowhere else.
// A file that cannot be trusted is moved aside: one that does not parse or has another version gives
// nothing; one with malformed entries, or entries that contradict each other (two leases of one address,
// two addresses of one VM), gives its sound entries, and the contested addresses are held back from
// everyone until the latest of their leases would have ended, so no address is ever handed to two VMs.

import { type Clocks, REAL_CLOCKS, toMonotonic, toWall } from '../util/clock.js';
import { readOrSetAside, readVersionedList } from '../util/json-file.js';
import { type StateFiles, type StateWriter, stateFiles } from '../util/state-files.js';
import { formatIpv4, parseIpv4 } from '../wire/addr.js';

/**
 * The LAN's DHCP server that leased a bridged VM its address, as the VM's release must name it: its
 * address (server identifier), its MAC (the ACK's source) and the client identifier the VM was leased
 * under, as hex, if it sent one.
 */
export interface LanServer {
  ip: number;
  mac: string;
  clientId?: string;
}

/** A bound lease as it is kept on disk and in the lease table. */
export interface StoredLease {
  key: string;
  mac: string;
  ip: number;
  /** Monotonic ms (see util/clock.ts). */
  expires: number;
  hostname?: string;
  /** Only for a bridged VM's lease, from the LAN's server. */
  server?: LanServer;
}

interface FileLease {
  key: string;
  mac: string;
  ip: string;
  expires: string;
  hostname?: string;
  server?: { ip: string; mac: string; client_id?: string };
}

const MAC_TEXT = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
/** A client identifier: at most one option's worth (MAX_CLIENT_ID in dhcp-snoop.ts). */
const HEX_TEXT = /^([0-9a-f]{2}){1,255}$/;

/** The server of a lease entry in the file: undefined when it names none, null when it is not well formed. */
function fileServer(s: FileLease['server']): LanServer | undefined | null {
  if (s === undefined) return undefined;
  const ip = typeof s === 'object' && s !== null ? parseIpv4(s.ip) : null;
  if (ip === null || typeof s.mac !== 'string' || !MAC_TEXT.test(s.mac)) return null;
  if (s.client_id !== undefined && (typeof s.client_id !== 'string' || !HEX_TEXT.test(s.client_id)))
    return null;
  return { ip, mac: s.mac, clientId: s.client_id };
}

/** What a lease file gave: the leases to keep, and contested addresses held back until when (monotonic ms). */
export interface LoadedLeases {
  leases: StoredLease[];
  contested: Map<number, number>;
  /** The file was moved aside: its sound content should be written again. */
  setAside: boolean;
}

/** Reads and writes one JSON lease file; a write never leaves a half-written file behind. */
export class LeaseStore {
  private readonly writer: StateWriter;

  constructor(
    readonly path: string,
    private readonly files: StateFiles = stateFiles,
    private readonly clocks: Clocks = REAL_CLOCKS,
  ) {
    this.writer = files.writer(path);
  }

  /** The leases in the file; none if it does not exist yet. A file that cannot be trusted is moved aside. */
  load(): LoadedLeases {
    const entries = readOrSetAside(this.path, this.files, [], () =>
      readVersionedList(this.path, 'leases', 'lease'),
    ) as FileLease[];
    const problems: string[] = [];
    const sound: StoredLease[] = [];
    for (const l of entries) {
      const ip = typeof l?.ip === 'string' ? parseIpv4(l.ip) : null;
      const expires = typeof l?.expires === 'string' ? Date.parse(l.expires) : Number.NaN;
      const server = fileServer(l?.server);
      if (
        ip === null ||
        Number.isNaN(expires) ||
        typeof l.key !== 'string' ||
        typeof l.mac !== 'string' ||
        server === null
      ) {
        problems.push(`bad lease entry ${JSON.stringify(l)}`);
        continue;
      }
      const hostname = typeof l.hostname === 'string' ? l.hostname : undefined;
      sound.push({
        key: l.key,
        mac: l.mac,
        ip,
        expires: toMonotonic(expires, this.clocks),
        hostname,
        server,
      });
    }
    const byIp = count(sound, (l) => l.ip);
    const byKey = count(sound, (l) => l.key);
    const leases: StoredLease[] = [];
    const contested = new Map<number, number>();
    for (const l of sound) {
      const clash =
        byIp.get(l.ip)! > 1
          ? `two leases of ${formatIpv4(l.ip)}`
          : byKey.get(l.key)! > 1
            ? `two addresses of ${l.key}`
            : null;
      if (clash === null) {
        leases.push(l);
        continue;
      }
      if (!problems.includes(clash)) problems.push(clash);
      contested.set(l.ip, Math.max(contested.get(l.ip) ?? 0, l.expires));
    }
    const setAside = problems.length > 0;
    if (setAside) {
      const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
      this.files.quarantine(this.path, `${problems[0]}${more}`);
    }
    return { leases, contested, setAside };
  }

  /** Replaces the file's content with `leases`; a disk that refuses is retried (StateFiles), never thrown. */
  save(leases: Iterable<StoredLease>): void {
    const list = this.fileLeases(leases);
    this.writer.save(() => render(list));
  }

  /** Writes `leases` now; throws if the disk refuses (the check an engine makes once at start). */
  saveNow(leases: Iterable<StoredLease>): void {
    const list = this.fileLeases(leases);
    this.writer.saveNow(() => render(list));
  }

  private fileLeases(leases: Iterable<StoredLease>): FileLease[] {
    const list: FileLease[] = [];
    for (const l of leases) {
      list.push({
        key: l.key,
        mac: l.mac,
        ip: formatIpv4(l.ip),
        expires: new Date(toWall(l.expires, this.clocks)).toISOString(),
        hostname: l.hostname,
        server: l.server && {
          ip: formatIpv4(l.server.ip),
          mac: l.server.mac,
          client_id: l.server.clientId,
        },
      });
    }
    return list;
  }
}

function render(list: FileLease[]): string {
  return `${JSON.stringify({ version: 1, leases: list }, null, 1)}\n`;
}

/** How many of `items` have each value of `by`. */
function count<T, K>(items: T[], by: (item: T) => K): Map<K, number> {
  const n = new Map<K, number>();
  for (const item of items) n.set(by(item), (n.get(by(item)) ?? 0) + 1);
  return n;
}
