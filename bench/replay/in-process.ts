// The in-process replay: a capture's frames through the real pipeline, segment, services and NAT over a
// fake port, no system call, so the figures are softnet's own per-frame cost on one core.

import { performance } from 'node:perf_hooks';
import { BATCH, DRAIN_ROUNDS } from '../../src/pipeline/pipeline.js';
import { PortId } from '../../test/lib/in-process.js';
import type { Capture } from './capture.js';
import { counters, GcWatch, gc, outcome, type Result } from './measure.js';
import { replayNetwork } from './network.js';
import { ReplayIo } from './replay-io.js';

/** Frames one drain() takes from a port that always has a full batch. */
const FRAMES_PER_DRAIN = DRAIN_ROUNDS * BATCH;
/** Drains timed to size the run. */
const CALIBRATION_DRAINS = 400;
/**
 * Frames of the allocation run: enough that a per-batch cost shows as a fraction of a byte, few enough
 * that the young generation (--min/max-semi-space-size=128) holds even 100 bytes a frame, so no
 * collection runs and the heap's growth is what the run allocated.
 */
const ALLOC_FRAMES = 1 << 18;

const gcWatch = new GcWatch();

/** Replays `cap` in-process for about `seconds`, allowing `allow` beyond the default policy. */
export async function replayInProcess(cap: Capture, allow: string[], seconds: number): Promise<Result> {
  const io = new ReplayIo();
  const net = replayNetwork(cap, io, allow);
  io.play(PortId.VM, cap.frames);
  const { p, vmPort } = net;
  const drains = (n: number): void => {
    for (let i = 0; i < n; i++) p.drain(vmPort);
  };
  // Twice through the capture first: the flows it opens exist from then on, as in a long replay.
  drains(Math.max(CALIBRATION_DRAINS, Math.ceil((2 * cap.frames.length) / FRAMES_PER_DRAIN)));
  const t = performance.now();
  drains(CALIBRATION_DRAINS);
  const perDrainMs = (performance.now() - t) / CALIBRATION_DRAINS;

  const allocPerFrame = await allocation(() => drains(ALLOC_FRAMES / FRAMES_PER_DRAIN), ALLOC_FRAMES);

  const runs = Math.max(1, Math.round((seconds * 1000) / perDrainMs));
  const before = counters(net);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  drains(runs);
  const ns = Number(process.hrtime.bigint() - t0);
  const cpu = process.cpuUsage(cpu0);
  const out = outcome(before, counters(net));
  return {
    scenario: cap.name,
    mode: 'in-process',
    seconds: ns / 1e9,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    allocPerFrame,
    outcome: out,
  };
}

/** Bytes the heap grew by a frame while `run` handled `frames` frames; null if a collection ran. */
async function allocation(run: () => void, frames: number): Promise<number | null> {
  if (!gc) return null;
  gc();
  await new Promise(setImmediate);
  gcWatch.start(performance.now());
  const heap0 = process.memoryUsage().heapUsed;
  run();
  const heap1 = process.memoryUsage().heapUsed;
  return (await gcWatch.count()) === 0 ? (heap1 - heap0) / frames : null;
}
