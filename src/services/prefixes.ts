/*
 * Each VM's IPv6 /64 (RFC 8273: a unique prefix per host) out of its network's /48, and that /48 itself.
 *
 * Theory of operation
 * - A network's /48 is a ULA prefix (RFC 4193) with a random 40-bit global ID, drawn once and kept in
 *   the network's prefix file under --state-dir, so VMs see the same addresses after a restart;
 *   --ipv6-prefix names one instead (and is kept the same way).
 * - A VM's /64 is the /48 and a 16-bit subnet ID: 0 is the host link's (the gateway's own ULA address,
 *   ::1 of the /48), 1 to 65535 are the VMs'. A VM gets the lowest free ID when it attaches, keyed by its
 *   lease identity, and keeps it while attached and across restarts of softnet; it is freed when the VM
 *   goes away, or when a VM that did not come back after a restart has been away for a lease time.
 * - The file is rewritten whole through the engine's StateWriter (retried while the disk refuses);
 *   expiry times are monotonic in memory and wall time in the file, as for the lease file.
 */

import { randomBytes } from 'node:crypto';
import { type Clocks, monotonicMs, REAL_CLOCKS, toMonotonic, toWall } from '../util/clock.js';
import { readJsonFile, readOrSetAside } from '../util/json-file.js';
import { type StateFiles, type StateWriter, stateFiles } from '../util/state-files.js';
import { formatIpv6, parseCidr6 } from '../wire/addr.js';

/** The highest subnet ID of a /48. */
const MAX_ID = 0xffff;

interface Held {
  id: number;
  /** Monotonic ms; refreshed while the VM is attached. */
  expires: number;
}

interface PrefixFile {
  version: 1;
  network: string;
  prefixes: Array<{ key: string; id: number; expires: string }>;
}

/** A random ULA /48 (RFC 4193 3.2: fd00::/8 and 40 random bits) as its first two words, the second's low half zero. */
export function randomUla48(): Int32Array {
  const r = randomBytes(5);
  return Int32Array.of((0xfd << 24) | (r[0] << 16) | (r[1] << 8) | r[2], (r[3] << 24) | (r[4] << 16) | 0);
}

/** The text of a /48 given as its two words. */
export function format48(w: ArrayLike<number>): string {
  return `${formatIpv6([w[0], w[1] & 0xffff0000, 0, 0])}/48`;
}

/** A network's /48 and the subnet IDs its VMs hold. */
export class PrefixTable {
  private readonly byKey = new Map<string, Held>();
  private readonly used = new Set<number>();
  private readonly writer: StateWriter | null;
  /** The /48: its first word and the high half of the second. */
  readonly network: Int32Array;

  /**
   * Opens the table kept at `path` (null: kept nowhere). `given` is the /48 of --ipv6-prefix as two
   * words, null to keep the stored one or draw a new one.
   */
  constructor(
    path: string | null,
    given: Int32Array | null,
    private readonly holdMs: number,
    private readonly files: StateFiles = stateFiles,
    private readonly clocks: Clocks = REAL_CLOCKS,
  ) {
    this.writer = path === null ? null : files.writer(path);
    const stored = path === null ? null : this.load(path);
    this.network = given ?? stored ?? randomUla48();
    if (stored === null || given !== null) this.save();
  }

  /** The subnet ID `key` holds, taking the lowest free one if it holds none; 0 when every one is taken. */
  take(key: string, now = monotonicMs()): number {
    const held = this.byKey.get(key);
    if (held) {
      held.expires = now + this.holdMs;
      return held.id;
    }
    for (let id = 1; id <= MAX_ID; id++) {
      if (this.used.has(id)) continue;
      this.byKey.set(key, { id, expires: now + this.holdMs });
      this.used.add(id);
      this.save();
      return id;
    }
    return 0;
  }

  /** The subnet ID `key` holds, or 0. */
  idOf(key: string): number {
    return this.byKey.get(key)?.id ?? 0;
  }

  /** Frees what `key` holds (its VM went away). */
  release(key: string): void {
    const held = this.byKey.get(key);
    if (!held) return;
    this.byKey.delete(key);
    this.used.delete(held.id);
    this.save();
  }

  /** Keeps the IDs of `attached` keys for another hold time and frees those whose time is up; run once a second. */
  tick(attached: Iterable<string>, now = monotonicMs()): void {
    let refreshed = false;
    for (const key of attached) {
      const held = this.byKey.get(key);
      // Written to the file only when half the hold is gone: a tick must not rewrite it every second.
      if (held && held.expires - now < this.holdMs / 2) {
        held.expires = now + this.holdMs;
        refreshed = true;
      }
    }
    let expired = false;
    for (const [key, held] of this.byKey) {
      if (held.expires > now) continue;
      this.byKey.delete(key);
      this.used.delete(held.id);
      expired = true;
    }
    if (refreshed || expired) this.save();
  }

  private load(path: string): Int32Array | null {
    const data = readOrSetAside(path, this.files, null, () => {
      const d = readJsonFile(path, null) as PrefixFile | null;
      if (d === null) return null;
      const net = typeof d.network === 'string' ? parseCidr6(d.network) : null;
      if (d.version !== 1 || !Array.isArray(d.prefixes) || net === null || net.prefix !== 48)
        throw new Error(`${path}: not a softnet prefix file`);
      return d;
    });
    if (data === null) return null;
    for (const p of data.prefixes) {
      const expires = typeof p?.expires === 'string' ? Date.parse(p.expires) : Number.NaN;
      if (typeof p?.key !== 'string' || !Number.isInteger(p.id) || p.id < 1 || p.id > MAX_ID) continue;
      if (Number.isNaN(expires) || this.used.has(p.id) || this.byKey.has(p.key)) continue;
      this.byKey.set(p.key, { id: p.id, expires: toMonotonic(expires, this.clocks) });
      this.used.add(p.id);
    }
    const w = parseCidr6(data.network)!.addr;
    return Int32Array.of(w[0] | 0, (w[1] & 0xffff0000) | 0);
  }

  private save(): void {
    if (this.writer === null) return;
    const file: PrefixFile = {
      version: 1,
      network: format48(this.network),
      prefixes: [...this.byKey].map(([key, h]) => ({
        key,
        id: h.id,
        expires: new Date(toWall(h.expires, this.clocks)).toISOString(),
      })),
    };
    this.writer.save(() => `${JSON.stringify(file, null, 1)}\n`);
  }
}
