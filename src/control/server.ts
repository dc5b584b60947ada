// The engine's control socket: who is the engine (the lock), and the listening socket that hands each
// connection to the engine as a Channel.
//
// The lock file sits beside the socket. The process that holds its flock is the engine; the kernel drops
// the lock when that process dies, SIGKILL included, so a successor can take over at once, unlink the
// stale socket file and bind a new one. Nobody unlinks a socket without holding the lock.

import { lchownSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { native, PortMode } from '../native.js';
import { Channel, type ChannelHandlers } from './channel.js';

/** Where the engine listens unless told otherwise. */
export const DEFAULT_CONTROL_SOCKET = '/run/softnet/control.sock';

/** Takes the engine lock of control socket `path`; returns the lock's fd, or -1 when another process holds it. */
export function takeEngineLock(path: string): number {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  return native.lockFile(`${path}.lock`);
}

/** A listening control socket; each accepted connection becomes a Channel with the given handlers. */
export class ControlServer {
  private readonly port: number;
  private readonly fd: number;
  readonly channels = new Set<Channel>();

  /** Binds `path` (mode 0660, group `gid` when not null); the caller holds the engine lock. */
  constructor(
    readonly path: string,
    gid: number | null,
    private readonly handlers: ChannelHandlers,
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
    this.port = native.portOpen(this.fd, PortMode.WATCH);
    native.portWatch(this.port, () => this.accept());
  }

  private accept(): void {
    for (;;) {
      const fd = native.ctlAccept(this.fd);
      if (fd < 0) return;
      const ch = new Channel(fd, {
        ...this.handlers,
        closed: (c) => {
          this.channels.delete(c);
          this.handlers.closed(c);
        },
      });
      this.channels.add(ch);
    }
  }

  /** Stops listening, removes the socket file and closes every connection (without calling `closed`). */
  close(): void {
    native.portClose(this.port);
    try {
      unlinkSync(this.path);
    } catch {}
    for (const ch of this.channels) ch.close();
    this.channels.clear();
  }
}
