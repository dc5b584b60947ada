// The scale bench (issue 7): TCP throughput per VM with 1, 2, 4 and 8 VMs sending to the world at once;
// softnet's CPU and memory with 100 idle VMs attached; and whether one VM slows down because many others
// are attached. Same topology as the peers bench. By default every VM is handed to one engine (the first
// VM's process); --deployment per-vm gives each VM an engine of its own, for comparison.
// Run as root: make bench-scale, or node dist/bench/scale.js [--rounds N] [--seconds S] [--active 1,2,4,8]
// [--idle 100] [--idle-seconds 10] [--deployment engine|per-vm] [--out DIR].

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { conditions, load1 } from './peers/conditions.js';
import { Lab, sweepStale } from './peers/lab.js';
import { firstLine, tcpThroughput } from './peers/measure.js';
import { median } from './peers/summary.js';
import { Topology } from './peers/topology.js';
import { type Deployment, EnginePerVm, OneEngine } from './scale/deployment.js';
import {
  type ActiveStep,
  type AloneStep,
  markdownReport,
  type ScaleRecord,
  textReport,
} from './scale/report.js';
import { cpuSeconds, memory, unreserved } from './scale/usage.js';

/** VMs attached at once while softnets start (each start is a burst of CPU on a 2-core machine). */
const PARALLEL_ATTACH = 4;
/**
 * Time for the VMs just attached to go quiet before idle CPU is measured: a Node process spends its first
 * 20 s or so on V8's first collections and compilations (measured: 20 per-VM processes took 7.5 % and 3.9 %
 * of a core in the first two 10 s windows after they attached, then 0.8-1.0 %).
 */
const SETTLE_MS = 25_000;
/** The idle time is measured, and logged, in windows of this many seconds. */
const IDLE_WINDOW_S = 10;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Runs iperf3 from each of `vms` at once, VM i to server port i; one bits-a-second figure a VM. */
async function together(topo: Topology, vms: string[], seconds: number): Promise<number[]> {
  await topo.ensureServers();
  return Promise.all(vms.map((vm, i) => tcpThroughput(topo, vm, topo.iperfPort(i), seconds, false)));
}

function list(text: string): number[] {
  return text.split(',').map(Number);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '5' },
      active: { type: 'string', default: '1,2,4,8' },
      idle: { type: 'string', default: '100' },
      'idle-seconds': { type: 'string', default: '10' },
      deployment: { type: 'string', default: 'engine' },
      out: { type: 'string', default: fileURLToPath(new URL('../../bench/results/', import.meta.url)) },
    },
  });
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  const active = list(values.active);
  const idleVms = Number(values.idle);
  const idleSeconds = Number(values['idle-seconds']);
  const maxActive = Math.max(...active);
  const valid =
    rounds >= 1 &&
    rounds <= 10 &&
    seconds >= 1 &&
    seconds <= 60 &&
    active.every((n) => Number.isInteger(n) && n >= 1 && n <= 16) &&
    Number.isInteger(idleVms) &&
    idleVms >= maxActive &&
    idleVms <= 200 &&
    idleSeconds >= 1 &&
    idleSeconds <= 60 &&
    (values.deployment === 'engine' || values.deployment === 'per-vm');
  if (!valid) {
    throw new Error(
      '--rounds 1-10, --seconds 1-60, --active counts 1-16, --idle from the largest active count to 200, --idle-seconds 1-60, --deployment engine|per-vm',
    );
  }
  if (process.getuid?.() !== 0) throw new Error('the scale bench makes namespaces: run it as root');

  const stale = sweepStale();
  if (stale.length) log(`removed namespaces a killed bench left: ${stale.join(' ')}`);
  const startedAt = new Date().toISOString();
  const loadAtStart = load1();
  const deployment: Deployment = values.deployment === 'per-vm' ? new EnginePerVm() : new OneEngine();
  const steps: ActiveStep[] = active.map((vms) => ({ vms, rounds: [], errors: [] }));
  const alone: AloneStep[] = [];
  const errors: string[] = [];
  let idle: ScaleRecord['idle'];
  const lab = new Lab();
  try {
    const topo = await Topology.build(lab, maxActive);
    const vms: string[] = [];
    for (let i = 0; i < idleVms; i++) vms.push(await topo.vm());

    const aloneRounds = async (when: string, attached: number) => {
      const step: AloneStep = { when, attached, samples: [] };
      for (let round = 1; round <= rounds; round++) {
        try {
          step.samples.push((await together(topo, vms.slice(0, 1), seconds))[0]);
        } catch (e) {
          errors.push(`one VM ${when}, round ${round}: ${firstLine(e)}`);
        }
      }
      log(`one VM ${when}: ${step.samples.map((b) => (b / 1e9).toFixed(2)).join(' ')} Gbit/s`);
      alone.push(step);
    };

    log(`attaching ${maxActive} VMs`);
    await deployment.attach(topo, vms.slice(0, maxActive), PARALLEL_ATTACH);
    for (let round = 1; round <= rounds; round++) {
      for (const step of steps) {
        try {
          const perVm = await together(topo, vms.slice(0, step.vms), seconds);
          step.rounds.push(perVm);
          log(
            `round ${round}/${rounds}, ${step.vms} active: ${perVm.map((b) => (b / 1e9).toFixed(2)).join(' ')} Gbit/s`,
          );
        } catch (e) {
          step.errors.push(`round ${round}: ${firstLine(e)}`);
          log(`round ${round}/${rounds}, ${step.vms} active: ${firstLine(e)}`);
        }
      }
    }

    // Before, with and after the idle VMs: a change that is only the machine's other load shows up as a
    // difference between before and after too.
    await aloneRounds('before the idle VMs', maxActive);
    log(`attaching ${idleVms - maxActive} more VMs (${idleVms} in all)`);
    await deployment.attach(topo, vms.slice(maxActive), PARALLEL_ATTACH);
    const reserved = await lab.exec(topo.host, 'cat', ['/proc/sys/net/ipv4/ip_local_reserved_ports']);
    await sleep(SETTLE_MS);
    const pids = deployment.pids();
    const engine = deployment.enginePid();
    const before = cpuSeconds(pids);
    const engineBefore = engine === undefined ? 0 : cpuSeconds([engine]);
    // Each window logged, so a process that has not gone quiet yet shows as a trend.
    let windowStart = before;
    for (let left = idleSeconds; left > 0; left -= IDLE_WINDOW_S) {
      const s = Math.min(IDLE_WINDOW_S, left);
      await sleep(s * 1000);
      const now = cpuSeconds(pids);
      log(`idle window of ${s} s: ${(((now - windowStart) / s) * 100).toFixed(1)} % of one core`);
      windowStart = now;
    }
    idle = {
      vms: pids.length,
      seconds: idleSeconds,
      cpuSeconds: cpuSeconds(pids) - before,
      memory: memory(pids),
      engine:
        engine === undefined
          ? undefined
          : { cpuSeconds: cpuSeconds([engine]) - engineBefore, memory: memory([engine]) },
      unreserved: unreserved(reserved.stdout, deployment.ranges()),
    };
    log(`idle: ${idle.cpuSeconds.toFixed(2)} CPU-seconds in ${idleSeconds} s over ${idle.vms} softnets`);
    await aloneRounds('with the idle VMs', idleVms);
    log(`detaching ${idleVms - maxActive} VMs`);
    await deployment.detach(idleVms - maxActive, PARALLEL_ATTACH);
    await aloneRounds('after the idle VMs went', maxActive);
  } catch (e) {
    errors.push(firstLine(e));
    log(`scale bench: ${firstLine(e)}`);
  } finally {
    await lab.cleanup();
  }

  for (const s of steps) {
    const complete = s.rounds.filter((r) => r.length === s.vms);
    s.perVm = median(complete.map((r) => r.reduce((a, b) => a + b, 0) / r.length));
    s.slowest = median(complete.map((r) => Math.min(...r)));
    s.total = median(complete.map((r) => r.reduce((a, b) => a + b, 0)));
  }
  for (const a of alone) a.median = median(a.samples);
  const record: ScaleRecord = {
    startedAt,
    finishedAt: new Date().toISOString(),
    conditions: conditions(),
    load: { atStart: loadAtStart, atEnd: load1() },
    deployment: deployment.description,
    seconds,
    rounds,
    attachedWhileActive: maxActive,
    active: steps,
    idle,
    alone,
    errors,
  };
  process.stdout.write(`\n${textReport(record)}`);
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, 'scale.json'), `${JSON.stringify(record, null, 2)}\n`);
  writeFileSync(join(values.out, 'scale.md'), markdownReport(record));
  log(`wrote scale.json and scale.md in ${values.out}`);
  if (errors.length) process.exitCode = 1;
}

main().catch((e) => {
  log(`scale bench: ${firstLine(e)}`);
  process.exitCode = 1;
});
