// What a peer is (one way of connecting a VM namespace to the world), and the waits every peer shares.

import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { SERVER, SERVER6, type Topology } from './topology.js';

/** A VM namespace connected to the world; detach() undoes what attach did outside the VM namespace. */
export interface Attachment {
  detach(): Promise<void>;
  /** The process doing the peer's work, whose CPU the bench reads; none for the kernel's path. */
  readonly pid?: number;
}

/** One way of giving a VM namespace a path to the world. */
export interface Peer {
  /** The short name used in tables and JSON. */
  readonly name: string;
  /** What exactly runs, for the report. */
  readonly description: string;
  /** Whether the VM gets IPv6 to the world from this peer too, so the IPv6 figures are measured. */
  readonly ipv6: boolean;
  /** Connects `vm` to the world; resolves once the VM reaches the server. */
  attach(topo: Topology, vm: string): Promise<Attachment>;
}

/** The last `cap` characters a process wrote to stdout and stderr, for error messages. */
export function tail(child: ChildProcess, cap = 4000): () => string {
  let text = '';
  const add = (d: Buffer) => {
    text = (text + d.toString()).slice(-cap);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  return () => text;
}

/** Resolves as `ready` does, or rejects with the process's output if `child` exits first. */
export async function whileRunning<T>(
  child: ChildProcess,
  name: string,
  output: () => string,
  ready: Promise<T>,
): Promise<T> {
  let onExit = () => {};
  const exited = new Promise<never>((_, reject) => {
    onExit = () =>
      reject(
        new Error(`${name} exited (${child.exitCode ?? child.signalCode}) while starting:\n${output()}`),
      );
    if (child.exitCode !== null || child.signalCode !== null) onExit();
    else child.once('exit', onExit);
  });
  try {
    return await Promise.race([ready, exited]);
  } finally {
    child.off('exit', onExit);
  }
}

/** Resolves once `probe` returns true; bounded by `timeoutMs` and the attempts that fit in it. */
export async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const interval = 100;
  let last = '';
  for (let i = 0; i <= timeoutMs / interval && Date.now() < deadline; i++) {
    try {
      if (await probe()) return;
    } catch (e) {
      // A failed command's message runs over lines (the command, then what it printed): kept on one.
      last = (e instanceof Error ? e.message : String(e)).trim().replace(/\s*\n\s*/g, ' / ');
    }
    await sleep(interval);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last: ${last})` : ''}`);
}

/** Waits until `vm` gets an answer to ping from the server, so a peer's first measurement is not its set-up. */
export async function reachesServer(topo: Topology, vm: string): Promise<void> {
  await until(`${vm} reaches ${SERVER}`, async () => {
    await topo.lab.exec(vm, 'ping', ['-n', '-q', '-c', '1', '-W', '1', SERVER], 5000);
    return true;
  });
}

/** Waits until `vm` gets an answer to ping from the server's IPv6 address (its IPv6 may come later). */
export async function reachesServer6(topo: Topology, vm: string, timeoutMs = 20_000): Promise<void> {
  await until(
    `${vm} reaches ${SERVER6}`,
    async () => {
      await topo.lab.exec(vm, 'ping', ['-6', '-n', '-q', '-c', '1', '-W', '1', SERVER6], 5000);
      return true;
    },
    timeoutMs,
  );
}
