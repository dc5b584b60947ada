// The bench's namespaces and processes, and their removal: at the end of a run, when a step fails, and when
// the bench is interrupted or dies. Every namespace and temp directory starts with `snb-<pid>-`, so parallel
// runs and the tests' namespaces never collide, and a later run can tell which leftovers belong to a bench
// that is gone.

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const PREFIX = 'snb-';
const live = new Set<Lab>();

process.on('exit', () => {
  for (const lab of live) lab.cleanupSync();
});
// An interrupted run goes through 'exit', so the handler above still removes everything.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    process.stderr.write(`\nbench: ${sig}, removing namespaces and processes\n`);
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
  });
}

/** What a finished command printed. */
export interface Output {
  stdout: string;
  stderr: string;
}

/** Namespaces, processes and a temp directory of one bench run; cleanup() removes them all. */
export class Lab {
  readonly prefix = `${PREFIX}${process.pid}`;
  readonly dir = mkdtempSync(join(tmpdir(), `${PREFIX}${process.pid}-`));
  private readonly namespaces = new Set<string>();
  private readonly children = new Set<ChildProcess>();

  constructor() {
    live.add(this);
  }

  /** Creates namespace `<prefix>-<name>` with loopback up and forwarding off; returns its name. */
  async netns(name: string): Promise<string> {
    const ns = `${this.prefix}-${name}`;
    await run('ip', ['netns', 'add', ns]);
    this.namespaces.add(ns);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    // A new namespace copies forwarding from the machine's; only the kernel peer turns it on, on purpose.
    await this.exec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
    return ns;
  }

  /** Ends the processes inside `ns` and removes it (its interfaces and nftables tables go with it). */
  removeNetns(ns: string): void {
    removeNamespace(ns);
    this.namespaces.delete(ns);
  }

  /** Runs a command inside `ns` to completion, killed after `timeoutMs`; rejects on a non-zero exit. */
  async exec(ns: string, cmd: string, args: string[], timeoutMs = 30_000): Promise<Output> {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], {
      timeout: timeoutMs,
      killSignal: 'SIGKILL',
      maxBuffer: 64 << 20,
    });
  }

  /** Starts a long-running command inside `ns`; it is killed at cleanup if still running. */
  spawn(ns: string, cmd: string, args: string[]): ChildProcess {
    // `ip netns exec` execs the command, so the child's pid is the command's own.
    const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** Sends `signal` to `child` and waits for its exit, with SIGKILL after `graceMs`. */
  async stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const hard = setTimeout(() => child.kill('SIGKILL'), graceMs);
      child.once('exit', () => {
        clearTimeout(hard);
        resolve();
      });
      child.kill(signal);
    });
  }

  /** Stops every process gently, then removes the namespaces and the temp directory. */
  async cleanup(): Promise<void> {
    await Promise.all([...this.children].map((c) => this.stop(c)));
    this.cleanupSync();
  }

  /** The synchronous part of cleanup, also what the exit handler runs. */
  cleanupSync(): void {
    for (const c of this.children) c.kill('SIGKILL');
    for (const ns of this.namespaces) removeNamespace(ns);
    this.namespaces.clear();
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}

function removeNamespace(ns: string): void {
  try {
    const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter(Boolean);
    for (const pid of pids) process.kill(Number(pid), 'SIGKILL');
  } catch {}
  try {
    execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  } catch {}
}

/** Removes the namespaces and temp directories of earlier benches that were killed outright. */
export function sweepStale(): string[] {
  const names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter(Boolean);
  const stale = names.filter((n) => isStale(n));
  for (const ns of stale) removeNamespace(ns);
  for (const d of readdirSync(tmpdir()).filter((n) => isStale(n))) {
    rmSync(join(tmpdir(), d), { recursive: true, force: true });
  }
  return stale;
}

/** Whether `name` is a bench's (snb-<pid>-...) whose process is gone. */
function isStale(name: string): boolean {
  const m = /^snb-(\d+)-/.exec(name);
  return m !== null && !alive(Number(m[1]));
}

function alive(pid: number): boolean {
  try {
    // A killed bench whose parent never reaps it stays a zombie, which kill(pid, 0) still finds.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
