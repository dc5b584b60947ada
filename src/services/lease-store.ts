// The lease file under --state-dir: the bound leases, rewritten whole and atomically after each change.

import { writeFileAtomic } from '../util/atomic-file.js';
import { readVersionedList } from '../util/json-file.js';
import { formatIpv4, parseIpv4 } from '../wire/addr.js';

/** A bound lease as it is kept on disk and in the lease table. */
export interface StoredLease {
  key: string;
  mac: string;
  ip: number;
  expires: number;
  hostname?: string;
}

interface FileLease {
  key: string;
  mac: string;
  ip: string;
  expires: string;
  hostname?: string;
}

/** Reads and writes one JSON lease file; a write never leaves a half-written file behind. */
export class LeaseStore {
  constructor(readonly path: string) {}

  /** The leases in the file; none if it does not exist yet. A file that cannot be read is an error. */
  load(): StoredLease[] {
    const out: StoredLease[] = [];
    for (const l of readVersionedList(this.path, 'leases', 'lease') as FileLease[]) {
      const ip = parseIpv4(l.ip);
      const expires = Date.parse(l.expires);
      if (ip === null || Number.isNaN(expires) || typeof l.key !== 'string') {
        throw new Error(`${this.path}: bad lease entry ${JSON.stringify(l)}`);
      }
      out.push({ key: l.key, mac: l.mac, ip, expires, hostname: l.hostname });
    }
    return out;
  }

  /** Replaces the file's content with `leases`: temp file, fsync, rename, fsync of the directory. */
  save(leases: Iterable<StoredLease>): void {
    const list: FileLease[] = [];
    for (const l of leases) {
      list.push({
        key: l.key,
        mac: l.mac,
        ip: formatIpv4(l.ip),
        expires: new Date(l.expires).toISOString(),
        hostname: l.hostname,
      });
    }
    writeFileAtomic(this.path, `${JSON.stringify({ version: 1, leases: list }, null, 1)}\n`);
  }
}
