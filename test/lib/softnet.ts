// Running the real softnet binary in a test namespace and reading what it logs.

import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Topology } from './topology.js';

/** The compiled CLI entry point. */
export const SOFTNET = fileURLToPath(new URL('../../src/cli/softnet.js', import.meta.url));

/** A softnet process and the lines it has written to stderr. */
export class Softnet {
  readonly lines: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: Array<() => void> = [];

  constructor(readonly child: ChildProcess) {
    let partial = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      partial += chunk;
      const parts = partial.split('\n');
      partial = parts.pop()!;
      this.lines.push(...parts);
      for (const w of this.waiters.splice(0)) w();
    });
    child.stdout!.resume();
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    this.exited.then(() => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Waits for a log line matching `re` (counting from line `from`); rejects after `ms`. */
  async waitFor(re: RegExp, ms = 20_000, from = 0): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      for (let i = from; i < this.lines.length; i++) {
        const m = this.lines[i].match(re);
        if (m) return m;
      }
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`softnet exited before logging ${re}:\n${this.lines.join('\n')}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`softnet did not log ${re} within ${ms} ms:\n${this.lines.join('\n')}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The external MAC softnet gave its VM (the one the host sees), from its `started` line. */
  async externalMac(): Promise<string> {
    return (await this.waitFor(/ started .*external_mac=(\S+)/))[1];
  }

  /** Asks for the counters (SIGUSR1) and returns them. */
  async counters(): Promise<Record<string, Record<string, number>>> {
    const from = this.lines.length;
    this.child.kill('SIGUSR1');
    const m = await this.waitFor(/counters counters=(.*)$/, 5000, from);
    return countersValue(m[1]);
  }

  /** Sends `signal` and waits for the exit. */
  async stop(
    signal: NodeJS.Signals = 'SIGTERM',
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }
}

/** The counters of a text `counters` line, from its value: compact JSON, quoted when it holds a space. */
export function countersValue(text: string): Record<string, Record<string, number>> {
  return JSON.parse(text.startsWith('"') ? JSON.parse(text) : text);
}

/**
 * Starts softnet with `args` inside namespace `ns`; `fds` become the child's fds 3, 4, ... Unless `args`
 * name one, the control socket is the topology's own, so the softnets of one test share one engine and
 * never meet another test's.
 */
export function startSoftnet(topo: Topology, ns: string, args: string[], fds: number[] = []): Softnet {
  return new Softnet(topo.spawn(ns, process.execPath, [SOFTNET, ...withControl(topo, args)], fds));
}

/**
 * `args` with a control socket unless they name one: the one of the state directory they name (one engine
 * per state directory), else the topology's. Never the machine's default under /run.
 */
export function withControl(topo: Topology, args: string[]): string[] {
  if (args.some((a) => a.startsWith('--control-socket'))) return args;
  const i = args.indexOf('--state-dir');
  const state = i >= 0 ? args[i + 1] : args.find((a) => a.startsWith('--state-dir='))?.slice(12);
  return [...args, '--control-socket', state ? `${state}/control.sock` : controlSocket(topo)];
}

/** The control socket of a topology's engine: the one of the state directory softnetForVm gives by default. */
export function controlSocket(topo: Topology): string {
  return `${topo.dir}/state/control.sock`;
}

/** Starts softnet for a VM namespace, with a fresh state directory unless one is given; waits until it serves. */
export async function softnetForVm(
  topo: Topology,
  hostNs: string,
  vmNs: string,
  mac: string,
  extra: string[] = [],
  waitMs = 20_000,
): Promise<Softnet> {
  const args = ['--vm-netns', `/run/netns/${vmNs}`, '--vm-mac-address', mac, ...extra];
  if (!extra.includes('--state-dir')) args.push('--state-dir', `${topo.dir}/state`);
  const s = startSoftnet(topo, hostNs, args);
  await s.waitFor(/softnet: started /, waitMs);
  return s;
}

/** Runs `softnet ARGS` (an operator command) in `ns` against the topology's engine; its output and status. */
export async function softnetCommand(
  topo: Topology,
  ns: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  return topo.status(ns, process.execPath, withControl(topo, [SOFTNET, ...args]), 20_000);
}
