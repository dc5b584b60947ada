// What a replay measures: the network's counters before and after a run, and whether the garbage
// collector ran meanwhile (the heap's growth over a run is what it allocated only if none ran).

import { PerformanceObserver } from 'node:perf_hooks';
import { PortStat } from '../../src/ports/port.js';
import { DROP_NAMES } from '../../src/stats/drops.js';
import type { InProcess } from '../../test/lib/in-process.js';

/** Drop reasons listed for a run: the most frequent ones. */
const TOP_DROPS = 3;

/** The counters of a replay network at one moment. */
export interface Counters {
  rxFrames: number;
  rxBytes: number;
  toHost: number;
  toUplink: number;
  answered: number;
  drops: Float64Array;
}

/** What the pipeline did with the frames of a run. */
export interface Outcome {
  /** Frames and bytes the pipeline received from the VM port. */
  frames: number;
  bytes: number;
  /** Frames sent on to the host link and through the NAT uplink. */
  toHost: number;
  toUplink: number;
  /** Frames softnet answered itself, back to the VM (ARP, ICMP echo to the gateway, DHCP). */
  answered: number;
  dropped: number;
  topDrops: Array<{ reason: string; frames: number }>;
}

/** One scenario replayed in one mode. */
export interface Result {
  scenario: string;
  mode: string;
  /** Wall time of the measured run, and the CPU time the replaying process used in it. */
  seconds: number;
  cpuSeconds: number;
  /** Heap bytes allocated a frame; null without --expose-gc or when a collection ran during the measurement. */
  allocPerFrame: number | null;
  outcome: Outcome;
  /** Over real fds: frames the writer process handed to the kernel during the whole run, warm-up included. */
  writerSent?: number;
  /** Frames the pipeline received during the whole run, warm-up included (to compare with writerSent). */
  received?: number;
}

/** Reads the counters of `net`. */
export function counters(net: InProcess): Counters {
  return {
    rxFrames: net.vmPort.stats[PortStat.RX_FRAMES],
    rxBytes: net.vmPort.stats[PortStat.RX_BYTES],
    toHost: net.hostPort.stats[PortStat.TX_FRAMES],
    toUplink: net.nat ? net.nat.raw.stats[PortStat.TX_FRAMES] : 0,
    answered: net.vmPort.stats[PortStat.TX_FRAMES],
    drops: net.p.drops.slice(),
  };
}

/** What happened between counters `a` and `b`. */
export function outcome(a: Counters, b: Counters): Outcome {
  const drops = DROP_NAMES.map((reason, i) => ({ reason, frames: b.drops[i] - a.drops[i] }));
  return {
    frames: b.rxFrames - a.rxFrames,
    bytes: b.rxBytes - a.rxBytes,
    toHost: b.toHost - a.toHost,
    toUplink: b.toUplink - a.toUplink,
    answered: b.answered - a.answered,
    dropped: drops.reduce((n, d) => n + d.frames, 0),
    topDrops: drops
      .filter((d) => d.frames > 0)
      .sort((x, y) => y.frames - x.frames)
      .slice(0, TOP_DROPS),
  };
}

/** The collector, when node runs with --expose-gc. */
export const gc = (globalThis as { gc?: () => void }).gc ?? null;

/** Counts garbage collections from start() on. */
export class GcWatch {
  private starts: number[] = [];
  private from = Number.POSITIVE_INFINITY;

  constructor() {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) this.starts.push(e.startTime);
    }).observe({ entryTypes: ['gc'] });
  }

  /** Forgets what ran before now. */
  start(now: number): void {
    this.starts = [];
    this.from = now;
  }

  /** Collections that started since start(); GC entries arrive asynchronously, so this waits a turn. */
  async count(): Promise<number> {
    await new Promise(setImmediate);
    return this.starts.filter((t) => t >= this.from).length;
  }
}
