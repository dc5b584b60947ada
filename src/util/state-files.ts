/*
 * The health of the engine's own state files (leases, attachments, NAT snapshots, the service's networks
 * and reservations): a full or read-only disk degrades softnet instead of breaking it, and a file that
 * cannot be read is moved aside instead of stopping the start.
 *
 * Theory of operation
 * - Each file has one StateWriter. save(render) writes at once while the file is healthy. A write that
 *   fails changes nothing on disk (writeFileAtomic leaves no temp file) and marks the file failing: from
 *   then on save() only keeps the newest render, and retry(), run by the engine's one-second tick, tries
 *   again after a backoff doubling from 1 s to 60 s. The disk is never tried per change while it refuses,
 *   and the write that finally goes through carries the newest content.
 * - softnet is degraded ("state not persisted") while any file is failing: one warning when the first one
 *   fails, naming it and the errno, and one line when the last one is written again. Metrics and `show`
 *   read `persisted`, `failedWrites` and `error`.
 * - A state file that cannot be read (not JSON, another version, contradicting itself) is moved aside to
 *   NAME.corrupt-TIMESTAMP with one warning saying why; its owner rebuilds what it can without it.
 * - Backoff runs on a monotonic clock, so a step of the wall clock neither hurries nor stalls it.
 * - One engine runs per process: its stores, made in several modules, share the process's `stateFiles`;
 *   tests make their own.
 */

import { renameSync } from 'node:fs';
import { writeFileAtomic } from './atomic-file.js';
import { monotonicMs } from './clock.js';
import { Logger } from './log.js';

/** The first retry after a failed write, in ms; each further failure doubles it up to RETRY_MAX_MS. */
export const RETRY_MIN_MS = 1000;
export const RETRY_MAX_MS = 60_000;

/** What a failed write says: its errno name, or the message of an error without one. */
function errorText(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
}

/** The writer of one state file. */
export class StateWriter {
  /** The newest content not yet on disk, while the file is failing. */
  private pending: (() => string) | null = null;
  private delay = 0;
  private nextTry = 0;
  /** Why the last write failed (an errno name); null while the file is written fine. */
  error: string | null = null;

  constructor(
    readonly path: string,
    private readonly files: StateFiles,
  ) {}

  /** Writes `render()` now, or, while the disk refuses this file, at the next retry; never throws. */
  save(render: () => string): void {
    if (this.error !== null) {
      this.pending = render;
      return;
    }
    this.attempt(render);
  }

  /**
   * Writes `render()` now. A refused permission (EACCES, EPERM: the state directory is not this user's)
   * throws, a set-up fault the engine reports at start; a full or read-only disk fails like save().
   */
  saveNow(render: () => string): void {
    this.attempt(render, true);
  }

  /** Tries the pending content again if its backoff is over (`now`: monotonic ms). */
  retry(now: number): void {
    if (this.pending !== null && now >= this.nextTry) this.attempt(this.pending, false);
  }

  private attempt(render: () => string, strict = false): void {
    try {
      writeFileAtomic(this.path, render());
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (strict && (code === 'EACCES' || code === 'EPERM')) throw e;
      this.pending = render;
      this.delay = this.delay === 0 ? RETRY_MIN_MS : Math.min(this.delay * 2, RETRY_MAX_MS);
      this.nextTry = this.files.now() + this.delay;
      this.error = errorText(e);
      this.files.failed(this);
      return;
    }
    if (this.error !== null) this.succeeded();
  }

  private succeeded(): void {
    this.pending = null;
    this.delay = 0;
    this.error = null;
    this.files.recovered(this);
  }
}

/** The state files of one engine: their writers, their health, and moving aside those that cannot be read. */
export class StateFiles {
  private readonly writers = new Map<string, StateWriter>();
  private readonly failing = new Set<StateWriter>();
  /** Writes that failed since the start, retries included. */
  failedWrites = 0;

  constructor(
    private log: Logger = new Logger(),
    /** Monotonic ms; a test gives its own. */
    readonly now: () => number = monotonicMs,
  ) {}

  /** Logs from now on through `log` (the engine's). */
  useLog(log: Logger): void {
    this.log = log;
  }

  /** The writer of `path`, made on first use; one per file, so a file's health outlives its owner. */
  writer(path: string): StateWriter {
    let w = this.writers.get(path);
    if (!w) {
      w = new StateWriter(path, this);
      this.writers.set(path, w);
    }
    return w;
  }

  /** Whether every state file holds what softnet has in memory. */
  get persisted(): boolean {
    return this.failing.size === 0;
  }

  /** The first failing file and why, as "PATH: ERRNO"; null when every file is written. */
  get error(): string | null {
    for (const w of this.failing) return `${w.path}: ${w.error}`;
    return null;
  }

  /** Retries the failing files whose backoff is over; run once a second. */
  retry(): void {
    const now = this.now();
    for (const w of [...this.failing]) w.retry(now);
  }

  /** Tries every failing file now, whatever its backoff (the engine stops). */
  flush(): void {
    for (const w of [...this.failing]) w.retry(Number.POSITIVE_INFINITY);
  }

  /**
   * Moves unreadable state file `path` aside to PATH.corrupt-TIMESTAMP and says so once with `reason`;
   * returns where it went (null if it could not be moved: it is then left, and overwritten by the next write).
   */
  quarantine(path: string, reason: string): string | null {
    const aside = `${path}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    try {
      renameSync(path, aside);
    } catch (e) {
      this.log.warn('state file unreadable, ignored', { file: path, reason, moved_to: errorText(e) });
      return null;
    }
    this.log.warn('state file unreadable, moved aside', { file: path, reason, moved_to: aside });
    return aside;
  }

  /** A writer's write failed. */
  failed(w: StateWriter): void {
    this.failedWrites++;
    if (this.failing.has(w)) return;
    this.failing.add(w);
    if (this.failing.size === 1)
      this.log.warn('state not persisted: writes fail, retrying with backoff; forwarding and leases go on', {
        file: w.path,
        error: w.error,
      });
  }

  /** A failing writer's write went through. */
  recovered(w: StateWriter): void {
    if (!this.failing.delete(w) || this.failing.size > 0) return;
    this.log.info('state persisted again', { file: w.path });
  }
}

/** The state files of this process's engine. */
export const stateFiles = new StateFiles();
