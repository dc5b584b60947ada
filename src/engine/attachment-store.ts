// The VMs attached to an engine, on disk (STATE_DIR/attachments.json), so that a successor engine knows
// them: it gives each VM that comes back its key, name and external MAC again, and frees what a VM that
// does not come back held. Written atomically after every attach and detach (a disk that refuses is
// retried, see StateFiles). A file that cannot be read is moved aside: the VMs that come back then attach
// under the keys their per-VM processes resume with, and keep their leases.

import { readOrSetAside, readVersionedList } from '../util/json-file.js';
import { type StateFiles, type StateWriter, stateFiles } from '../util/state-files.js';
import { parseIpv4 } from '../wire/addr.js';

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
  /**
   * The address the VM has, kept so that a lease file lost or moved aside does not free it for another VM
   * while this one is expected back (see Engine.rebuildLeases).
   */
  ip?: string;
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
    typeof r.pid === 'number' &&
    (r.ip === undefined || (typeof r.ip === 'string' && parseIpv4(r.ip) !== null))
  );
}

/** Reads and writes one attachment file. */
export class AttachmentStore {
  private readonly writer: StateWriter;

  constructor(
    readonly path: string,
    private readonly files: StateFiles = stateFiles,
  ) {
    this.writer = files.writer(path);
  }

  /** The records in the file; none if there is none or it cannot be read. An entry that is not a record is skipped. */
  load(): VmRecord[] {
    const list = readOrSetAside(this.path, this.files, [], () =>
      readVersionedList(this.path, 'vms', 'attachment'),
    );
    return list.filter(isRecord);
  }

  /** Replaces the file's content with `records`; never throws (see StateFiles). */
  save(records: Iterable<VmRecord>): void {
    const text = `${JSON.stringify({ version: 1, vms: [...records] }, null, 1)}\n`;
    this.writer.save(() => text);
  }
}
