// The engine's control socket: who is the engine (the lock), and the listening socket that hands each
// connection to the engine as a Channel.
//
// The lock file sits beside the socket. The process that holds its flock is the engine; the kernel drops
// the lock when that process dies, SIGKILL included, so a successor can take over at once, unlink the
// stale socket file and bind a new one. Nobody unlinks a socket without holding the lock.
//
// Theory of operation (a client that misbehaves)
// - Every client is untrusted input: a connection that sends what is not a request (garbage, a message
//   longer than MAX_MESSAGE), floods (more than REQUEST_BURST requests, refilled at REQUEST_RATE a
//   second), or stays silent IDLE_MS while it holds nothing (no VM, no capture) is refused: told why in a
//   `refused` event, closed, and counted by reason. At most MAX_CONNECTIONS are open; one more is refused.
// - Refusals are logged at most once per connection and LOG_BURST times per LOG_WINDOW_MS in all; the
//   next line logged says how many were left out.
// - Out of file descriptors (EMFILE, ENFILE), accept fails and the listening socket stays readable: a
//   loop on its readiness would spin. So the listener is watched through a duplicate of its fd, an fd kept
//   in reserve: when accept fails, the watch is closed (the duplicate freed), the connection waiting is
//   accepted into that slot, refused with the reason and closed; the watch comes back after a backoff
//   (BACKOFF_MIN_MS doubling to BACKOFF_MAX_MS). This is the degraded state `control-out-of-fds`, logged
//   once on entry and once on exit (the next accept that works).

import { lchownSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { native, PortMode } from '../native.js';
import type { Logger } from '../util/log.js';
import { Channel, type ChannelHandlers } from './channel.js';
import { encode, TOO_LONG } from './protocol.js';

const MAX_CONNECTIONS = 1024;
const IDLE_MS = 30_000;
const REQUEST_BURST = 200;
const REQUEST_RATE = 100;
const LOG_BURST = 5;
const LOG_WINDOW_MS = 10_000;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 2000;
/** Connections accepted in one wake-up; the rest wait for the next turn of the event loop. */
const MAX_ACCEPTS = 32;
/** The degraded state of a listener out of file descriptors. */
export const CONTROL_DEGRADED = 'control-out-of-fds';

/** Why a connection was refused, as metrics label it. */
export type RefusalReason =
  | 'malformed'
  | 'too-long'
  | 'flood'
  | 'idle'
  | 'too-many-connections'
  | 'out-of-fds';

/** The engine's handlers of its control connections: each message they are given is a request `{id, op}`. */
export interface ServerHandlers extends ChannelHandlers {
  /** Whether the connection holds something (a VM, a capture), so that its silence is no reason to close it. */
  holds(ch: Channel): boolean;
}

/** A connection's request budget and when it was last heard from. */
interface Budget {
  tokens: number;
  refilled: number;
  heard: number;
}

/** Where the engine listens unless told otherwise. */
export const DEFAULT_CONTROL_SOCKET = '/run/softnet/control.sock';

/** Takes the engine lock of control socket `path`; returns the lock's fd, or -1 when another process holds it. */
export function takeEngineLock(path: string): number {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  return native.lockFile(`${path}.lock`);
}

/** A listening control socket; each accepted connection becomes a Channel with the given handlers. */
export class ControlServer {
  /** The watch on the listener (over a duplicate of its fd), or -1 while backing off. */
  private port = -1;
  private readonly fd: number;
  readonly channels = new Set<Channel>();
  /** Connections refused, by reason. */
  readonly refused = new Map<RefusalReason, number>();
  private readonly budgets = new Map<Channel, Budget>();
  private readonly wrapped: ChannelHandlers;
  private readonly timer: NodeJS.Timeout;
  private backoff: NodeJS.Timeout | null = null;
  private backoffMs = BACKOFF_MIN_MS;
  /** Whether accept is failing for want of fds (the degraded state). */
  outOfFds = false;
  private logWindow = 0;
  private logged = 0;
  private unlogged = 0;
  private closed = false;

  /** Binds `path` (mode 0660, group `gid` when not null); the caller holds the engine lock. */
  constructor(
    readonly path: string,
    gid: number | null,
    private readonly handlers: ServerHandlers,
    private readonly log: Logger,
  ) {
    try {
      unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    // The mode comes with bind, and the group is set on the path itself, never through a link put there
    // after: the directory may belong to a service user while a root engine binds in it.
    const umask = process.umask(0o117);
    try {
      this.fd = native.ctlListen(path);
    } finally {
      process.umask(umask);
    }
    try {
      // Only the group: an engine started as a service user (not root) may give its socket to its own group.
      if (gid !== null) lchownSync(path, -1, gid);
    } catch (e) {
      native.closeFd(this.fd);
      throw e;
    }
    this.wrapped = {
      message: (ch, msg, fd) => {
        if (typeof msg.id !== 'number' || typeof msg.op !== 'string') {
          if (fd >= 0) native.closeFd(fd);
          this.refuse(ch, 'malformed', 'not a request');
        } else if (this.spend(ch)) {
          handlers.message(ch, msg, fd);
        } else if (fd >= 0) {
          native.closeFd(fd);
        }
      },
      binary: (ch) => this.refuse(ch, 'malformed', 'a binary message'),
      malformed: (ch, why) => this.refuse(ch, why === TOO_LONG ? 'too-long' : 'malformed', why),
      closed: (ch) => {
        this.channels.delete(ch);
        this.budgets.delete(ch);
        handlers.closed(ch);
      },
    };
    try {
      this.watch();
    } catch (e) {
      native.closeFd(this.fd);
      throw e;
    }
    this.timer = setInterval(() => this.sweep(), IDLE_MS / 3);
    this.timer.unref();
  }

  /** Stops listening, removes the socket file and closes every connection (without calling `closed`). */
  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    if (this.backoff) clearTimeout(this.backoff);
    if (this.port >= 0) native.portClose(this.port);
    native.closeFd(this.fd);
    try {
      unlinkSync(this.path);
    } catch {}
    for (const ch of this.channels) ch.close();
    this.channels.clear();
  }

  /** Watches the listener through a duplicate of its fd: the fd held in reserve (see the top). */
  private watch(): void {
    this.port = native.portOpen(native.dupFd(this.fd), PortMode.WATCH);
    native.portWatch(this.port, () => this.accept());
  }

  private accept(): void {
    for (let i = 0; i < MAX_ACCEPTS; i++) {
      let fd: number;
      try {
        fd = native.ctlAccept(this.fd);
      } catch (e) {
        this.acceptFailed(e as NodeJS.ErrnoException);
        return;
      }
      if (fd < 0) return;
      if (this.outOfFds) {
        this.outOfFds = false;
        this.log.info('recovered', { state: CONTROL_DEGRADED });
      }
      if (this.channels.size >= MAX_CONNECTIONS) {
        this.turnAway(fd, 'too-many-connections', `more than ${MAX_CONNECTIONS} control connections`);
        continue;
      }
      let ch: Channel;
      try {
        ch = new Channel(fd, this.wrapped);
      } catch (e) {
        this.turnAway(fd, 'out-of-fds', (e as Error).message);
        continue;
      }
      this.channels.add(ch);
      const now = Date.now();
      this.budgets.set(ch, { tokens: REQUEST_BURST, refilled: now, heard: now });
    }
  }

  /**
   * accept failed: out of fds, the reserve is spent on the connection waiting, which is told why; the
   * watch comes back after a backoff. Any other failure only backs off.
   */
  private acceptFailed(e: NodeJS.ErrnoException): void {
    if (this.port >= 0) native.portClose(this.port);
    this.port = -1;
    if (e.code === 'EMFILE' || e.code === 'ENFILE') {
      const why = `the softnet engine is out of file descriptors (${e.code}); it takes no more VMs or commands until some are freed`;
      if (!this.outOfFds) {
        this.outOfFds = true;
        this.log.warn('degraded', { state: CONTROL_DEGRADED, reason: why });
      }
      let fd = -1;
      try {
        fd = native.ctlAccept(this.fd);
      } catch {}
      if (fd >= 0) this.turnAway(fd, 'out-of-fds', why, false);
      else this.count('out-of-fds');
    } else {
      this.note('control accept failed', { error: e.message });
    }
    this.backoff = setTimeout(() => {
      this.backoff = null;
      if (this.closed) return;
      try {
        this.watch();
        this.backoffMs = BACKOFF_MIN_MS;
      } catch {
        this.acceptFailed({ code: 'EMFILE', message: 'dup' } as NodeJS.ErrnoException);
      }
    }, this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, BACKOFF_MAX_MS);
  }

  /** Refuses a connection accepted but not taken: tells it why and closes it. */
  private turnAway(fd: number, reason: RefusalReason, why: string, log = true): void {
    native.ctlSend(fd, encode({ event: 'refused', error: why }), -1);
    native.closeFd(fd);
    this.count(reason);
    if (log) this.note('control connection refused', { reason, why });
  }

  /** Refuses an open connection: it is told why, closed and forgotten like one that hung up. */
  private refuse(ch: Channel, reason: RefusalReason, why: string): void {
    if (ch.closed) return;
    this.count(reason);
    this.note('control connection refused', { reason, why, fd: ch.fd });
    ch.refuse(`refused (${reason}): ${why}`);
  }

  private count(reason: RefusalReason): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1);
  }

  /** Whether `ch` may send one more request now (token bucket); refuses it when not. */
  private spend(ch: Channel): boolean {
    const b = this.budgets.get(ch);
    if (!b) return !ch.closed;
    const now = Date.now();
    b.heard = now;
    b.tokens = Math.min(REQUEST_BURST, b.tokens + ((now - b.refilled) * REQUEST_RATE) / 1000);
    b.refilled = now;
    if (b.tokens >= 1) {
      b.tokens--;
      return true;
    }
    this.refuse(ch, 'flood', `more than ${REQUEST_BURST} requests at once, or ${REQUEST_RATE} a second`);
    return false;
  }

  /** Closes the connections silent for IDLE_MS that hold nothing. */
  private sweep(): void {
    const now = Date.now();
    for (const [ch, b] of this.budgets) {
      if (now - b.heard >= IDLE_MS && !this.handlers.holds(ch))
        this.refuse(ch, 'idle', `silent for ${IDLE_MS / 1000} s`);
    }
  }

  /** Logs a line, LOG_BURST per LOG_WINDOW_MS at most; the next line logged counts those left out. */
  private note(event: string, fields: Record<string, string | number>): void {
    const now = Date.now();
    if (now - this.logWindow >= LOG_WINDOW_MS) {
      this.logWindow = now;
      this.logged = 0;
    }
    if (this.logged >= LOG_BURST) {
      this.unlogged++;
      return;
    }
    this.logged++;
    this.log.warn(event, { ...fields, ...(this.unlogged > 0 ? { not_logged_before: this.unlogged } : {}) });
    this.unlogged = 0;
  }
}
