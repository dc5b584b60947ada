/*
 * NAT mappings across a restart: a snapshot file under --state-dir, so the VMs' connections through NAT
 * survive softnet being restarted (SIGKILL included, up to the last snapshot).
 *
 * Theory of operation
 * - The snapshot holds, per mapping, the VM's identity (its lease key), protocol, VM port, external port,
 *   TCP state and the remotes its filter admits, with the uplink address they were made on.
 * - It is written atomically (temp file + rename) at stop and, while mappings come and go, every few
 *   seconds; a mapping's idle time is not saved (a restored one starts a fresh timeout).
 * - At start the snapshot is read once; when a VM attaches, its mappings are made again with the same
 *   external ports, which are still reserved and still unused by anyone. A snapshot from another uplink
 *   address is ignored: the world knows those flows by an address softnet no longer has.
 * - A VM that detaches without going away (its per-VM process was stopped) has its mappings parked here:
 *   out of the live table, but written with every snapshot until it attaches again or is given up, so its
 *   connections survive its softnet being restarted. Saved mappings not yet claimed are kept the same way.
 */

import { writeFileAtomic } from '../util/atomic-file.js';
import { readStateFile } from '../util/json-file.js';
import { formatIpv4, parseIpv4 } from '../wire/addr.js';
import type { FlowTable, Mapping, NatOwner } from './flows.js';

interface SavedMapping {
  key: string;
  proto: number;
  vmPort: number;
  extPort: number;
  tcpState: number;
  remotes: string[];
}

/** Reads and writes the mapping snapshot of one uplink address. */
export class FlowStore {
  private saved = new Map<string, SavedMapping[]>();

  constructor(
    private readonly path: string,
    private readonly addr: number,
  ) {
    let data: { addr?: string; mappings?: SavedMapping[] } = {};
    try {
      data = JSON.parse(readStateFile(path));
    } catch {}
    if (data.addr !== formatIpv4(addr) || !Array.isArray(data.mappings)) return;
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
      const m = flows.create(owner, s.proto, s.vmPort, clock, s.extPort);
      if (typeof m === 'number') continue;
      m.tcpState = s.tcpState;
      for (const r of s.remotes) {
        const a = parseIpv4(r);
        if (a !== null) m.sentTo(a);
      }
      n++;
    }
    this.saved.delete(key);
    return n;
  }

  /** Parks the mappings of the VM with lease key `key` (it detaches, but may come back), then ends them. */
  park(flows: FlowTable, owner: NatOwner, key: string): void {
    const list: SavedMapping[] = [];
    for (const m of owner.natIndex.values()) list.push(saved(key, m));
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
    writeFileAtomic(this.path, JSON.stringify({ addr: formatIpv4(this.addr), mappings }));
  }
}

function saved(key: string, m: Mapping): SavedMapping {
  const remotes: string[] = [];
  for (const r of m.remotes) remotes.push(formatIpv4(r >>> 0));
  return { key, proto: m.proto, vmPort: m.vmPort, extPort: m.extPort, tcpState: m.tcpState, remotes };
}
