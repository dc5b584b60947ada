// The lease file under --state-dir: the bound leases, rewritten whole and atomically after each change.

import { writeFileAtomic } from '../util/atomic-file.js';
import { readVersionedList } from '../util/json-file.js';
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

/** Reads and writes one JSON lease file; a write never leaves a half-written file behind. */
export class LeaseStore {
  constructor(readonly path: string) {}

  /** The leases in the file; none if it does not exist yet. A file that cannot be read is an error. */
  load(): StoredLease[] {
    const out: StoredLease[] = [];
    for (const l of readVersionedList(this.path, 'leases', 'lease') as FileLease[]) {
      const ip = parseIpv4(l.ip);
      const expires = Date.parse(l.expires);
      const server = fileServer(l.server);
      if (ip === null || Number.isNaN(expires) || typeof l.key !== 'string' || server === null) {
        throw new Error(`${this.path}: bad lease entry ${JSON.stringify(l)}`);
      }
      out.push({ key: l.key, mac: l.mac, ip, expires, hostname: l.hostname, server });
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
        server: l.server && {
          ip: formatIpv4(l.server.ip),
          mac: l.server.mac,
          client_id: l.server.clientId,
        },
      });
    }
    writeFileAtomic(this.path, `${JSON.stringify({ version: 1, leases: list }, null, 1)}\n`);
  }
}
