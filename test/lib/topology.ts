// Test topologies: network namespaces, processes inside them, and their removal, also when a test fails.
// Names are unique per test process so parallel runs never collide.

import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
let counter = 0;
const live = new Set<Topology>();

// A test process that dies of an uncaught error still removes what it made.
process.on('exit', () => {
  for (const t of live) t.cleanupSync();
});

/** The output of a finished command. */
export interface Output {
  stdout: string;
  stderr: string;
}

/** Namespaces, processes and a temp directory that belong to one test. */
export class Topology {
  readonly id = `sn${process.pid.toString(36)}${(counter++).toString(36)}`;
  readonly dir = mkdtempSync(join(tmpdir(), 'softnet-test-'));
  private readonly namespaces: string[] = [];
  private readonly children = new Set<ChildProcess>();

  constructor() {
    live.add(this);
  }

  /** Creates namespace `<id>-<name>` with loopback up; returns its name. */
  async netns(name: string): Promise<string> {
    const ns = `${this.id}-${name}`;
    await run('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Deletes namespace `ns` now, as a VM that goes away takes its namespace with it. */
  async removeNetns(ns: string): Promise<void> {
    await run('ip', ['netns', 'del', ns]);
    this.namespaces.splice(this.namespaces.indexOf(ns), 1);
  }

  /** Runs a command inside `ns` to completion; rejects on a non-zero exit. */
  async exec(ns: string, cmd: string, args: string[], timeoutMs = 60_000): Promise<Output> {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], { timeout: timeoutMs, killSignal: 'SIGKILL' });
  }

  /** Like exec, but resolves with the exit code instead of rejecting. */
  async status(
    ns: string,
    cmd: string,
    args: string[],
    timeoutMs = 60_000,
  ): Promise<Output & { code: number }> {
    try {
      return { ...(await this.exec(ns, cmd, args, timeoutMs)), code: 0 };
    } catch (e) {
      const err = e as { code?: number; stdout?: string; stderr?: string };
      return {
        stdout: err.stdout ?? '',
        stderr: err.stderr ?? '',
        code: typeof err.code === 'number' ? err.code : -1,
      };
    }
  }

  /** Starts a long-running command inside `ns` (or in this namespace when ns is null); killed at cleanup. */
  spawn(ns: string | null, cmd: string, args: string[], extraFds: number[] = []): ChildProcess {
    const argv = ns === null ? [cmd, ...args] : ['ip', 'netns', 'exec', ns, cmd, ...args];
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe', ...extraFds] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** Kills what is still running and removes the namespaces and the temp directory. */
  async cleanup(): Promise<void> {
    await Promise.all(
      [...this.children].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const hard = setTimeout(() => c.kill('SIGKILL'), 3000);
            c.once('exit', () => {
              clearTimeout(hard);
              resolve();
            });
            c.kill('SIGTERM');
          }),
      ),
    );
    this.cleanupSync();
  }

  /** The synchronous part of cleanup, also run from the process's exit handler. */
  cleanupSync(): void {
    for (const c of this.children) c.kill('SIGKILL');
    for (const ns of this.namespaces.splice(0)) {
      // Processes a test left in the namespace (a daemonized DHCP client) go with it.
      try {
        const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
          .split('\n')
          .filter(Boolean);
        for (const pid of pids) process.kill(Number(pid), 'SIGKILL');
      } catch {}
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {}
    }
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}
