// The replay bench (issue 7): replays what a VM sent, from pcap captures, through softnet's real pipeline,
// segment, services and NAT, in-process (no system call) and over real fds (a unix datagram socketpair
// and a TAP device, fed by a writer process, in namespaces made for the run), and reports frames/s, CPU ns
// a frame, Gbit/s, bytes allocated a frame, and what became of the frames. The captures are the fixtures
// in bench/fixtures (make bench-fixtures writes them), or the user's (--pcap FILE, repeatable).
// Run: make bench-replay [REPLAY_ARGS='--pcap FILE ...'], which runs
// node --expose-gc --min-semi-space-size=128 --max-semi-space-size=128 dist/bench/replay.js [options]

import { cpus, loadavg } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { formatIpv4, formatMac, parseMac } from '../src/wire/addr.js';
import { type Capture, loadCapture } from './replay/capture.js';
import { type FdMode, replayOverFds } from './replay/fd-launch.js';
import { replayInProcess } from './replay/in-process.js';
import { gc } from './replay/measure.js';
import { notes, type Row, row, table, targetLine, writeResults } from './replay/report.js';

const FIXTURES = ['udp64', 'tcp1500', 'mixed'].map((n) =>
  fileURLToPath(new URL(`../../bench/fixtures/${n}.pcap`, import.meta.url)),
);
const MODES = ['in-process', 'socketpair', 'tap'] as const;
type Mode = (typeof MODES)[number];

const USAGE = `usage: replay.js [--pcap FILE]... [--vm-mac MAC] [--allow CIDR,...] [--seconds S] [--warmup S]
                 [--modes in-process,socketpair,tap] [--out DIR]
  --pcap     a classic pcap (not pcapng) of Ethernet frames; the VM is its most frequent source MAC unless
             --vm-mac names it; default: the fixtures in bench/fixtures
  --allow    destinations the policy allows beyond softnet's defaults (default: the fixtures' world,
             203.0.113.0/24)
  --seconds  length of each measured run (default 2); --warmup: over real fds, the run before it (default 0.5)
  --modes    which to run (default all; socketpair and tap need root)
  --out      where replay.json and replay.md go (default bench/results)`;

/** parseArgs, or the usage and exit status 2 for an unknown option or a missing value. */
function parseOrExit<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (e) {
    process.stderr.write(`replay: ${e instanceof Error ? e.message : String(e)}\n${USAGE}\n`);
    process.exit(2);
  }
}
const { values: o } = parseOrExit({
  options: {
    pcap: { type: 'string', multiple: true },
    'vm-mac': { type: 'string' },
    allow: { type: 'string', default: '203.0.113.0/24' },
    seconds: { type: 'string', default: '2' },
    warmup: { type: 'string', default: '0.5' },
    modes: { type: 'string', default: MODES.join(',') },
    out: { type: 'string', default: fileURLToPath(new URL('../../bench/results/', import.meta.url)) },
    help: { type: 'boolean' },
  },
});
if (o.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const seconds = Number(o.seconds);
const warmup = Number(o.warmup);
const modes = o.modes.split(',') as Mode[];
const vmMac = o['vm-mac'] ? parseMac(o['vm-mac']) : null;
const allow = o.allow.split(',').filter(Boolean);
if (
  !(seconds > 0) ||
  !(warmup >= 0) ||
  modes.some((m) => !MODES.includes(m)) ||
  (o['vm-mac'] !== undefined && vmMac === null)
) {
  process.stderr.write(`${USAGE}\n`);
  process.exit(2);
}
if (modes.some((m) => m !== 'in-process') && process.getuid?.() !== 0) {
  process.stderr.write(
    'replay: socketpair and tap make namespaces and TAP devices: run as root, or --modes in-process\n',
  );
  process.exit(2);
}

// An interrupted run still removes its namespaces: the exit handlers (test/lib/topology.ts's) run on exit().
for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
] as const) {
  process.once(sig, () => process.exit(code));
}

let captures: Capture[];
try {
  captures = (o.pcap ?? FIXTURES).map((path) => loadCapture(path, vmMac));
} catch (e) {
  // A capture that cannot be replayed (missing, pcapng, damaged, not Ethernet) is the user's to fix: one line.
  process.stderr.write(`replay: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(2);
}
const out = process.stdout;
const loadAtStart = loadavg()[0].toFixed(2);
out.write(
  `softnet replay bench: node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ` +
    `load average ${loadAtStart}; ${seconds} s a run\n`,
);
if (!gc) out.write('(node runs without --expose-gc: bytes allocated a frame are not measured)\n');
for (const c of captures) {
  const s = c.skipped;
  out.write(
    `${c.name}: ${c.frames.length} of ${c.records} frames sent by ${formatMac(c.vmMac)} (${formatIpv4(c.vmIp)}), ` +
      `${(c.bytes / c.frames.length).toFixed(0)} B on average, to gateway ${formatMac(c.gatewayMac)}` +
      (s.otherMac + s.cut + s.tooLong > 0
        ? `; left out: ${s.otherMac} from other MACs, ${s.cut} cut by the snaplen, ${s.tooLong} longer than a slot`
        : '') +
      '\n',
  );
}

const rows: Row[] = [];
for (const c of captures) {
  for (const mode of modes) {
    const r =
      mode === 'in-process'
        ? await replayInProcess(c, allow, seconds)
        : await replayOverFds(c, mode as FdMode, allow, warmup, seconds);
    rows.push(row(r));
    out.write(`  ${c.name} ${mode}: ${rows[rows.length - 1].mframesPerS.toFixed(3)} Mframes/s\n`);
  }
}

out.write(`\n${table(rows)}\n\n`);
for (const n of notes(rows)) out.write(`${n}\n`);
const target = targetLine(rows);
out.write(
  `${target ? target.line : 'target: not evaluated (the udp64 capture was not replayed in-process)'}\n`,
);
out.write(
  'ns/frame is the CPU time of the replaying process a frame (user + system), so over real fds it includes ' +
    "the kernel's work for its system calls; Mframes/s and Gbit/s are over wall time. Figures on a shared " +
    '2-core machine are noisy.\n',
);
writeResults(
  o.out,
  {
    date: new Date().toISOString(),
    node: process.version,
    cpu: `${cpus().length} x ${cpus()[0]?.model ?? '?'}`,
    'load average at start': loadAtStart,
    'seconds a run': seconds,
    'warm-up over fds (s)': warmup,
    allow: allow.join(','),
    captures: captures.map(
      (c) => `${c.name} (${c.frames.length} frames, ${relative(process.cwd(), c.path)})`,
    ),
  },
  rows,
);
out.write(`wrote ${join(o.out, 'replay.json')} and replay.md\n`);
