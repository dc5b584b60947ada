/*
 * NAT mappings across a restart: a snapshot file under --state-dir, so the VMs' connections through NAT
 * survive softnet being restarted (SIGKILL included, up to the last snapshot).
 *
 * Theory of operation
 * - The snapshot holds, per mapping, the VM's identity (its lease key), protocol, VM port, external port,
 *   TCP state and the remotes its filter admits, with the uplink address they were made on. A NAT66
 *   snapshot (its own file) holds the interface identifier of the VM address too, and the remotes as the
 *   filter keeps them (remoteKey6 of each address: the mix is the same from one run to the next).
 * - It is written atomically (temp file + rename) at stop and, while mappings come and go, every few
 *   seconds; a disk that refuses is retried (StateFiles). A mapping's idle time is not saved (a restored
 *   one starts a fresh timeout), so the file holds no clock at all.
 * - A snapshot that cannot be read (not JSON, another version, not of its form) is moved aside: the VMs'
 *   connections through NAT are lost, nothing else.
 * - At start the snapshot is read once; when a VM attaches, its mappings are made again with the same
 *   external ports, which are still reserved and still unused by anyone. A snapshot from another uplink
 *   address is ignored: the world knows those flows by an address softnet no longer has.
 * - A VM that detaches without going away (its per-VM process was stopped) has its mappings parked here:
 *   out of the live table, but written with every snapshot until it attaches again or is given up, so its
 *   connections survive its softnet being restarted. Saved mappings not yet claimed are kept the same way.
 */

import { readOrSetAside, readStateFile } from '../util/json-file.js';
import { type StateFiles, type StateWriter, stateFiles } from '../util/state-files.js';
import { formatIpv4, parseIpv4 } from '../wire/addr.js';
import { chained, type FlowTable, type Mapping, MappingKind, type NatOwner } from './flows.js';

interface SavedMapping {
  key: string;
  proto: number;
  vmPort: number;
  extPort: number;
  tcpState: number;
  remotes: string[];
  /** NAT66, NAT64: the VM address's interface identifier, two words. */
  iid?: [number, number];
  /** A MappingKind other than the table's own (NAT64 in the IPv4 snapshot). */
  kind?: number;
}

/** Reads and writes the mapping snapshot of one uplink address. */
export class FlowStore {
  private saved = new Map<string, SavedMapping[]>();
  private readonly writer: StateWriter;

  /** The snapshot at `path` of the mappings on uplink address `addr` (its text: IPv4, or IPv6 for NAT66). */
  constructor(
    path: string,
    private readonly addr: string,
    files: StateFiles = stateFiles,
  ) {
    this.writer = files.writer(path);
    const data = readOrSetAside(path, files, null, () => readSnapshot(path));
    if (data === null || data.addr !== addr) return;
    for (const m of data.mappings) {
      const list = this.saved.get(m.key) ?? [];
      list.push(m);
      this.saved.set(m.key, list);
    }
  }

  /** Makes the saved mappings of the VM with lease key `key` again; returns how many came back. */
  restore(flows: FlowTable, owner: NatOwner, key: string, clock: number): number {
    let n = 0;
    for (const s of this.saved.get(key) ?? []) {
      const m = flows.create(
        owner,
        s.proto,
        s.vmPort,
        clock,
        s.extPort,
        s.iid?.[0] ?? 0,
        s.iid?.[1] ?? 0,
        s.kind,
      );
      if (typeof m === 'number') continue;
      m.tcpState = s.tcpState;
      for (const r of s.remotes) {
        const a = flows.v6 ? Number(r) : parseIpv4(r);
        if (a !== null && Number.isInteger(a)) m.sentTo(a);
      }
      n++;
    }
    this.saved.delete(key);
    return n;
  }

  /** Parks the mappings of the VM with lease key `key` (it detaches, but may come back), then ends them. */
  park(flows: FlowTable, owner: NatOwner, key: string): void {
    const mine = flows.v6
      ? chained(owner.nat6Index)
      : [...owner.natIndex.values(), ...chained(owner.nat64Index)];
    const list = mine.map((m) => saved(key, m));
    this.saved.set(key, list);
    flows.removeOwner(owner);
  }

  /** Forgets the parked mappings of a VM that is not coming back. */
  forget(key: string): void {
    this.saved.delete(key);
  }

  /** Writes every current mapping, and the parked ones; `keyOf` gives each owner's lease key. */
  save(flows: FlowTable, keyOf: (owner: NatOwner) => string | undefined): void {
    const mappings: SavedMapping[] = [];
    for (const list of this.saved.values()) mappings.push(...list);
    for (const m of flows.mappings()) {
      const key = keyOf(m.owner);
      if (key !== undefined) mappings.push(saved(key, m));
    }
    const text = JSON.stringify({ version: 1, addr: this.addr, mappings });
    this.writer.save(() => text);
  }
}

/**
 * The snapshot in file `path`, or null when there is none; throws for one that is not a snapshot. A file
 * without a version is of version 1 (softnet wrote none before).
 */
function readSnapshot(path: string): { addr: unknown; mappings: SavedMapping[] } | null {
  let text: string;
  try {
    text = readStateFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const data = JSON.parse(text) as { version?: unknown; addr?: unknown; mappings?: unknown };
  if ((data?.version ?? 1) !== 1 || !Array.isArray(data?.mappings) || !data.mappings.every(isSaved))
    throw new Error('not a softnet NAT snapshot');
  return { addr: data.addr, mappings: data.mappings };
}

function isSaved(x: unknown): x is SavedMapping {
  const m = x as SavedMapping;
  return (
    typeof m === 'object' &&
    m !== null &&
    typeof m.key === 'string' &&
    [m.proto, m.vmPort, m.extPort, m.tcpState].every(Number.isInteger) &&
    Array.isArray(m.remotes) &&
    m.remotes.every((r) => typeof r === 'string') &&
    (m.iid === undefined || (Array.isArray(m.iid) && m.iid.length === 2 && m.iid.every(Number.isInteger))) &&
    (m.kind === undefined || m.kind === MappingKind.NAT64)
  );
}

function saved(key: string, m: Mapping): SavedMapping {
  const v6 = m.kind === MappingKind.NAT66;
  const remotes: string[] = [];
  for (const r of m.remotes) remotes.push(v6 ? String(r) : formatIpv4(r >>> 0));
  const s: SavedMapping = {
    key,
    proto: m.proto,
    vmPort: m.vmPort,
    extPort: m.extPort,
    tcpState: m.tcpState,
    remotes,
  };
  if (m.kind !== MappingKind.NAT44) s.iid = [m.iid2, m.iid3];
  if (m.kind === MappingKind.NAT64) s.kind = m.kind;
  return s;
}
