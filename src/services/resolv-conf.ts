/*
 * The host's resolvers, followed as its resolv.conf changes.
 *
 * Theory of operation
 * - One watcher per process, however many networks forward DNS: the file is the host's, so a change is
 *   logged once. Each forwarder acquires it and releases it; the last release stops it.
 * - Editors, resolvconf and systemd-resolved replace the file by rename, and /etc/resolv.conf is often a
 *   link into /run: a watch on the file's inode would stay on the old one. So the path itself is stat'ed
 *   every POLL_MS (device, inode, size and mtime; stat follows the link) and the file read again when any
 *   of them differs; a watch on its directory only makes that check happen at once.
 * - No usable (IPv4) nameserver, or no readable file, is the degraded state `dns-no-resolver`: logged once
 *   on entry and once on exit, and meanwhile the forwarders answer SERVFAIL. A list that changes otherwise
 *   is logged once as `dns resolvers changed`.
 * - The environment variable SOFTNET_RESOLV_CONF names another file than /etc/resolv.conf.
 */

import { type FSWatcher, readFileSync, statSync, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from '../util/log.js';

const POLL_MS = 1000;
/** The degraded state's name, in the log, the metrics and `show`. */
export const DNS_DEGRADED = 'dns-no-resolver';

/** The resolv.conf softnet follows: $SOFTNET_RESOLV_CONF, else /etc/resolv.conf. */
export function resolvConfPath(): string {
  return process.env.SOFTNET_RESOLV_CONF || '/etc/resolv.conf';
}

/** The IPv4 nameservers of a resolv.conf (none when it cannot be read). */
export function resolversFrom(path = resolvConfPath()): string[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {}
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (m) out.push(m[1]);
  }
  return out;
}

/** What the file looks like from outside: any change of it means reading it again. */
function signature(path: string): string {
  try {
    const s = statSync(path);
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? 'error';
  }
}

/** The nameservers of the followed resolv.conf, shared by every forwarder of the process. */
export class ResolvConf {
  private static current: ResolvConf | null = null;
  /** The nameservers now; replaced, never changed in place, so a query may hold on to the list it used. */
  servers: readonly string[];
  private users = 1;
  private seen: string;
  private readonly timer: NodeJS.Timeout;
  private readonly watcher: FSWatcher | null = null;

  private constructor(
    readonly path: string,
    initial: readonly string[],
    private readonly log: Logger,
  ) {
    this.seen = signature(path);
    this.servers = initial;
    if (initial.length === 0) this.enter();
    this.timer = setInterval(() => this.check(), POLL_MS);
    this.timer.unref();
    try {
      const name = basename(path);
      this.watcher = watch(dirname(path), { persistent: false }, (_event, file) => {
        if (file === null || file === name) this.check();
      });
      // A watch that fails later (its directory removed) leaves the polling, which is enough.
      this.watcher.on('error', () => this.watcher?.close());
    } catch {}
  }

  /** The process's watcher, started with `initial` (the list just read) by its first user. */
  static acquire(log: Logger, initial: readonly string[] = resolversFrom()): ResolvConf {
    const c = ResolvConf.current;
    if (c) {
      c.users++;
      return c;
    }
    ResolvConf.current = new ResolvConf(resolvConfPath(), initial, log);
    return ResolvConf.current;
  }

  /** The process's watcher when a forwarder runs, for metrics and `show`. */
  static active(): ResolvConf | null {
    return ResolvConf.current;
  }

  /** Whether there is no nameserver to forward to. */
  get degraded(): boolean {
    return this.servers.length === 0;
  }

  /** One user is done; the last stops watching. */
  release(): void {
    if (--this.users > 0) return;
    clearInterval(this.timer);
    this.watcher?.close();
    if (ResolvConf.current === this) ResolvConf.current = null;
  }

  /** Reads the file again if it looks different from the last time. */
  private check(): void {
    const sig = signature(this.path);
    if (sig === this.seen) return;
    this.seen = sig;
    const next = resolversFrom(this.path);
    if (next.length === this.servers.length && next.every((s, i) => s === this.servers[i])) return;
    const was = this.servers.length === 0;
    this.servers = next;
    if (next.length === 0) this.enter();
    else if (was)
      this.log.info('recovered', { state: DNS_DEGRADED, path: this.path, resolvers: next.join(',') });
    else this.log.info('dns resolvers changed', { path: this.path, resolvers: next.join(',') });
  }

  private enter(): void {
    this.log.warn('degraded', {
      state: DNS_DEGRADED,
      path: this.path,
      reason: 'no IPv4 nameserver in it; DNS queries are answered SERVFAIL',
    });
  }
}
