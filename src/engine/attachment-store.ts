// The VMs attached to an engine, on disk (STATE_DIR/attachments.json), so that a successor engine knows
// them: it gives each VM that comes back its key, name and external MAC again, and frees what a VM that
// does not come back held. Written atomically after every attach and detach.

import { writeFileAtomic } from '../util/atomic-file.js';
import { readVersionedList } from '../util/json-file.js';

/** One attached VM as it is remembered. */
export interface VmRecord {
  /** The lease identity. */
  key: string;
  name: string;
  network: string;
  mac: string;
  extMac: string;
  expose: string[];
  /** The per-VM process that handed the VM over (the engine's own pid for its own VM). */
  pid: number;
  since: string;
}

function isRecord(x: unknown): x is VmRecord {
  const r = x as VmRecord;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.key === 'string' &&
    typeof r.name === 'string' &&
    typeof r.network === 'string' &&
    typeof r.mac === 'string' &&
    typeof r.extMac === 'string' &&
    Array.isArray(r.expose) &&
    typeof r.pid === 'number'
  );
}

/** Reads and writes one attachment file. */
export class AttachmentStore {
  constructor(readonly path: string) {}

  /** The records in the file; none if there is no file. An entry that is not a record is skipped. */
  load(): VmRecord[] {
    return readVersionedList(this.path, 'vms', 'attachment').filter(isRecord);
  }

  /** Replaces the file's content with `records`. */
  save(records: Iterable<VmRecord>): void {
    writeFileAtomic(this.path, `${JSON.stringify({ version: 1, vms: [...records] }, null, 1)}\n`);
  }
}
