// The replay over real fds, run by fd-launch.ts inside a namespace it made: the same network as in-process,
// but the VM port is a unix datagram socketpair (--mode socketpair) or a TAP device whose other side is in
// the VM namespace (--mode tap), a writer process blasts the capture into it, and this process drains it
// with the addon, woken by its readiness callbacks as the engine is. What the pipeline forwards goes
// somewhere real and cheap: the host link is a TAP in this namespace (its kernel takes the frames), the
// NAT's raw socket routes to a veth whose peer is down, so the device drops them. Prints one JSON Result
// line on stdout.
// Run: node fd.js --mode socketpair|tap --pcap FILE --vm-mac MAC --allow CIDRS --warmup S --seconds S
//      --tmp DIR [--vm-netns PATH]

import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PcapWriter } from '../../src/capture/pcap.js';
import { native, PortMode } from '../../src/native.js';
import type { Port } from '../../src/ports/port.js';
import { PortStat } from '../../src/ports/port.js';
import { parseMac } from '../../src/wire/addr.js';
import { PortId } from '../../test/lib/in-process.js';
import { loadCapture } from './capture.js';
import { FdIo } from './fd-io.js';
import { counters, GcWatch, gc, outcome, type Result } from './measure.js';
import { replayNetwork } from './network.js';

/** The MTU of both TAPs, softnet's default. */
const MTU = 1500;
const HOST_LINK = 'hostlink';
/** The VM's NIC inside its namespace. */
const VM_IFNAME = 'eth0';
/** The writer goes on this long after the measured window, so the window never sees it stop. */
const WRITER_MARGIN_S = 1;
const WRITER = fileURLToPath(new URL('./writer.js', import.meta.url));

const { values: a } = parseArgs({
  options: {
    mode: { type: 'string' },
    pcap: { type: 'string' },
    'vm-mac': { type: 'string' },
    allow: { type: 'string', default: '' },
    warmup: { type: 'string' },
    seconds: { type: 'string' },
    tmp: { type: 'string' },
    'vm-netns': { type: 'string' },
  },
});
const mode = a.mode;
if ((mode !== 'socketpair' && mode !== 'tap') || !a.pcap || !a.tmp || !a.warmup || !a.seconds) {
  throw new Error('usage: fd.js --mode socketpair|tap --pcap FILE --warmup S --seconds S --tmp DIR');
}
if (mode === 'tap' && !a['vm-netns']) throw new Error('--mode tap needs --vm-netns');
const warmup = Number(a.warmup);
const seconds = Number(a.seconds);

const cap = loadCapture(a.pcap, a['vm-mac'] ? parseMac(a['vm-mac']) : null);
const io = new FdIo();
const net = replayNetwork(cap, io, a.allow ? a.allow.split(',') : []);
const { p, cfg, vmPort } = net;
const opened: number[] = [];
let writer: ChildProcess | null = null;
process.on('exit', () => writer?.kill('SIGKILL'));

/** Opens `fd` as an addon port and makes it fake port `fake`'s. */
function bind(fake: number, fd: number, portMode: number): number {
  const real = native.portOpen(fd, portMode);
  opened.push(real);
  io.bind(fake, real);
  return real;
}

try {
  const host = native.tapOpen(HOST_LINK, null, cap.gatewayMac, MTU, false);
  writeFileSync(`/proc/sys/net/ipv6/conf/${host.name}/disable_ipv6`, '1');
  native.ifConfigure(host.name, cfg.gateway, cfg.prefix, true);
  bind(PortId.HOST, host.fd, PortMode.TAP);
  bind(PortId.RAW, native.rawSocket(), PortMode.RAW);
  let vmReal: number;
  let peer = -1;
  if (mode === 'socketpair') {
    const [mine, theirs] = native.socketpair('dgram');
    peer = theirs;
    vmReal = bind(PortId.VM, mine, PortMode.DGRAM);
  } else {
    const tap = native.tapOpen(VM_IFNAME, a['vm-netns']!, cap.vmMac, MTU, true);
    vmReal = bind(PortId.VM, tap.fd, PortMode.TAP);
  }

  // The writer sends the frames as they are now, retargeted to this network's VM.
  const frames = join(a.tmp, `${cap.name}-${mode}.pcap`);
  const fd = openSync(frames, 'w');
  try {
    const w = PcapWriter.toFd(fd);
    for (const f of cap.frames) w.write(f, 0);
    w.flush();
  } finally {
    closeSync(fd);
  }
  const wargs = ['--pcap', frames, '--seconds', String(warmup + seconds + WRITER_MARGIN_S)];
  writer =
    mode === 'socketpair'
      ? spawn(process.execPath, [WRITER, '--fd', '3', ...wargs], {
          stdio: ['ignore', 'pipe', 'inherit', peer],
        })
      : spawn(
          'ip',
          ['netns', 'exec', basename(a['vm-netns']!), process.execPath, WRITER, '--tap', VM_IFNAME, ...wargs],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        );
  if (peer >= 0) native.closeFd(peer);
  let writerOut = '';
  writer.stdout!.on('data', (d: Buffer) => {
    writerOut += d.toString();
  });
  const writerDone = new Promise<number | null>((resolve) => writer!.once('exit', (code) => resolve(code)));

  let draining = true;
  const redrain = (port: Port): void => {
    if (draining && p.drain(port)) setImmediate(redrain, port);
  };
  native.portWatch(vmReal, (_id, status) => {
    if (status < 0) throw new Error(`the VM port failed: ${native.errnoName(status)}`);
    redrain(vmPort);
  });
  const received0 = vmPort.stats[PortStat.RX_FRAMES];

  await sleep(warmup * 1000);
  gc?.();
  await new Promise(setImmediate);
  const gcWatch = new GcWatch();
  const before = counters(net);
  const heap0 = process.memoryUsage().heapUsed;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  gcWatch.start(t0);
  await sleep(seconds * 1000);
  const t1 = performance.now();
  const cpu = process.cpuUsage(cpu0);
  const heap1 = process.memoryUsage().heapUsed;
  const after = counters(net);
  const gcs = await gcWatch.count();
  draining = false;
  const received = vmPort.stats[PortStat.RX_FRAMES] - received0;
  // Closing the VM's end ends the writer too (its peer is gone, or its TAP is).
  native.portClose(vmReal);
  opened.splice(opened.indexOf(vmReal), 1);
  const code = await writerDone;
  if (code !== 0) throw new Error(`the writer exited with ${code}`);
  const out = outcome(before, after);
  const result: Result = {
    scenario: cap.name,
    mode,
    seconds: (t1 - t0) / 1000,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    allocPerFrame: gc && gcs === 0 && out.frames > 0 ? (heap1 - heap0) / out.frames : null,
    outcome: out,
    writerSent: JSON.parse(writerOut).sent,
    received,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  for (const port of opened) native.portClose(port);
  writer?.kill('SIGKILL');
}
