// In-process pipeline bench: frames go through the real pipeline, segment and services with a fake port
// (no system calls), so the figures are the cost of softnet's own per-frame code. Prints frames/s, ns a
// frame and bytes allocated a frame for each scenario, IPv4 and IPv6 (bench/pipeline/ipv6.ts) on one
// dual-stack network. Run: make bench, which runs
// node --expose-gc --min-semi-space-size=128 --max-semi-space-size=128 dist/bench/pipeline.js; with
// BENCH_ONLY=TEXT, only the scenarios whose name holds TEXT, and BENCH_BATCHES=N batches each.

import { PerformanceObserver, performance } from 'node:perf_hooks';
import { CaptureSink, PortTap } from '../src/capture/tap.js';
import { NatProto } from '../src/nat/flows.js';
import { BATCH, BIG_BATCH, DRAIN_ROUNDS } from '../src/pipeline/pipeline.js';
import type { Port } from '../src/ports/port.js';
import { parseMac } from '../src/wire/addr.js';
import { IPV4_HEADER_LEN, IpProto } from '../src/wire/ipv4.js';
import { VNET_HDR_LEN } from '../src/wire/vnet.js';
import { ipFrame } from '../test/lib/frames.js';
import { addBridgedVm, fromLanFrame, inProcessBridge, inProcessNetwork } from '../test/lib/in-process.js';
import { BENCH_ULA, ipv6Scenarios, type Scenario, UPLINK6, WORLD6_NET } from './pipeline/ipv6.js';

const VM_MAC = parseMac('52:54:00:be:00:01')!;
const HOST_MAC = parseMac('02:00:00:00:00:fe')!;
const BATCHES = Number(process.env.BENCH_BATCHES ?? 40_000);
/** Runs only the scenarios whose name holds this text (to profile one path). */
const ONLY = process.env.BENCH_ONLY;
// With --expose-gc and a young generation larger than the run allocates, no collection happens during a
// run, so the heap's growth is exactly what the run allocated.
const gc = (globalThis as { gc?: () => void }).gc;

const WORLD = 0xcb00710a; // 203.0.113.10
const UPLINK = 0xc6336402; // 198.51.100.2
const net = inProcessNetwork({
  vmMac: VM_MAC,
  gatewayMac: HOST_MAC,
  allow: ['203.0.113.0/24', WORLD6_NET],
  nat: { addr: UPLINK, lo: 61000, hi: 64999, perVm: 1000, v6: { addr: UPLINK6 } },
  ipv6: BENCH_ULA,
});
const { io, p, cfg, vmPort } = net;
const hostLink = net.hostPort;
const capture = net.capture!;
const raw = net.nat!.raw;
const vmIp = net.att.ip;
io.keep = true;
// One flow out to the world, so replies to its external port have a mapping to come back by.
const toWorld = ipFrame(VM_MAC, HOST_MAC, vmIp, WORLD, IpProto.UDP);
io.deliver(vmPort.id, toWorld);
p.drain(vmPort);
const out = io.take(raw.id)[0];
if (!out) throw new Error('no NAT output');
const extPort = new DataView(out.buffer).getUint16(IPV4_HEADER_LEN);
io.keep = false;
const fromWorld = new Uint8Array(VNET_HDR_LEN + 64);
fromWorld.set(ipFrame(HOST_MAC, HOST_MAC, WORLD, UPLINK, IpProto.UDP), VNET_HDR_LEN);
const fw = new DataView(fromWorld.buffer);
fw.setUint16(VNET_HDR_LEN + 14 + IPV4_HEADER_LEN, 5001);
fw.setUint16(VNET_HDR_LEN + 14 + IPV4_HEADER_LEN + 2, extPort);
fw.setUint16(VNET_HDR_LEN + 14 + IPV4_HEADER_LEN + 6, 0);

/** A capture of the VM whose client takes everything at once, to show what capturing costs. */
function captured(): PortTap {
  const tap = new PortTap();
  tap.sinks.push(
    new CaptureSink(1, (bytes) => bytes.length, Number.POSITIVE_INFINITY, { complete() {}, failed() {} }),
  );
  return tap;
}

// A port forward, 5001/udp on the uplink to the VM's 5001: the world's datagrams to it come in, and the
// VM's answers from 5001 go out by it (its frame is the NAT-out one with the ports swapped).
net.nat!.forwards.add(net.att, NatProto.UDP, 5001, 5001);
const toForward = Uint8Array.from(fromWorld);
new DataView(toForward.buffer).setUint16(VNET_HDR_LEN + 14 + IPV4_HEADER_LEN + 2, 5001);
const fromForward = Uint8Array.from(toWorld);
const ff = new DataView(fromForward.buffer);
ff.setUint16(14 + IPV4_HEADER_LEN, 5001);
ff.setUint16(14 + IPV4_HEADER_LEN + 2, 40000);

// A bridge network on the same pipeline, with one bridged VM holding an address from the fake LAN server.
const BVM_MAC = parseMac('52:54:00:be:00:02')!;
const LAN_HOST_MAC = parseMac('02:33:00:00:00:0a')!;
const LAN_HOST = 0x0a4d000a;
const bridge = inProcessBridge({ p, io });
const bvm = addBridgedVm(bridge, 41, BVM_MAC, 'bvm', 0x0a4d0064);
const bvmIp = bvm.att.ip;
const bvmExt = bvm.att.extMac;

const scenarios: Scenario[] = [
  [
    'vm -> gateway ICMP echo, 64 B (answered in place)',
    vmPort,
    ipFrame(VM_MAC, HOST_MAC, vmIp, cfg.gateway, IpProto.ICMP),
    2,
    false,
  ],
  [
    'vm -> host UDP, 64 B (to the host link)',
    vmPort,
    ipFrame(VM_MAC, HOST_MAC, vmIp, cfg.gateway, IpProto.UDP),
    1,
    false,
  ],
  [
    'host -> vm UDP, 64 B (to the VM port)',
    hostLink,
    // The host knows the VM by its external MAC (MAC translation).
    ipFrame(HOST_MAC, net.att.extMac, cfg.gateway, vmIp, IpProto.UDP),
    2,
    false,
  ],
  [
    'host -> vm UDP, 64 B, the VM captured (softnet capture)',
    hostLink,
    ipFrame(HOST_MAC, net.att.extMac, cfg.gateway, vmIp, IpProto.UDP),
    2,
    true,
  ],
  [
    'vm -> host UDP, 1514 B (to the host link)',
    vmPort,
    ipFrame(VM_MAC, HOST_MAC, vmIp, cfg.gateway, IpProto.UDP, 1514),
    1,
    false,
  ],
  ['vm -> world UDP, 64 B (NAT out, checksum verified)', vmPort, toWorld, raw.id, false],
  [
    'vm -> world UDP, 1514 B (NAT out, checksum verified)',
    vmPort,
    ipFrame(VM_MAC, HOST_MAC, vmIp, WORLD, IpProto.UDP, 1514),
    raw.id,
    false,
  ],
  ['world -> vm UDP, 64 B (NAT in)', capture, fromWorld, vmPort.id, false],
  ['vm -> world UDP, 64 B (port forward out, checksum verified)', vmPort, fromForward, raw.id, false],
  ['world -> vm UDP, 64 B (port forward in)', capture, toForward, vmPort.id, false],
  [
    'bridged vm -> LAN UDP, 64 B (to the LAN)',
    bvm.port,
    ipFrame(BVM_MAC, LAN_HOST_MAC, bvmIp, LAN_HOST, IpProto.UDP),
    bridge.tx.id,
    false,
  ],
  [
    'bridged vm -> LAN UDP, 1514 B (to the LAN)',
    bvm.port,
    ipFrame(BVM_MAC, LAN_HOST_MAC, bvmIp, LAN_HOST, IpProto.UDP, 1514),
    bridge.tx.id,
    false,
  ],
  [
    'LAN -> bridged vm UDP, 64 B (to the VM port)',
    bridge.rx,
    fromLanFrame(ipFrame(LAN_HOST_MAC, bvmExt, LAN_HOST, bvmIp, IpProto.UDP)),
    bvm.port.id,
    false,
  ],
  ...ipv6Scenarios(net, VM_MAC, HOST_MAC),
];

let gcStarts: number[] = [];
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcStarts.push(e.startTime);
}).observe({ entryTypes: ['gc'] });

/** Drains `port` until `batches` batches went through; returns how many frames did. */
function run(port: Port, batches: number): number {
  let done = 0;
  while (done < batches) {
    p.drain(port);
    done += DRAIN_ROUNDS;
  }
  return done * (port.big ? BIG_BATCH : BATCH);
}

process.stdout.write(
  `softnet in-process pipeline bench: ${BATCHES} batches of ${BATCH} frames per scenario, node ${process.version}\n`,
);
process.stdout.write(
  '| scenario | Mframes/s | ns/frame | Gbit/s | bytes allocated/frame |\n|---|---|---|---|---|\n',
);
for (const [name, port, f, outPort, tap] of scenarios) {
  if (ONLY && !name.includes(ONLY)) continue;
  vmPort.tap = tap ? captured() : null;
  io.flood(port.id, f);
  run(port, 2000);
  const sentBefore = io.sentCount.get(outPort) ?? 0;
  const dropsBefore = p.drops.reduce((a, b) => a + b, 0);
  gc?.();
  await new Promise(setImmediate);
  gcStarts = [];
  const heap0 = process.memoryUsage().heapUsed;
  const start = performance.now();
  const t0 = process.hrtime.bigint();
  const frames = run(port, BATCHES);
  const ns = Number(process.hrtime.bigint() - t0);
  const heap1 = process.memoryUsage().heapUsed;
  io.stopFlood(port.id);
  vmPort.tap = null;
  // GC entries are delivered asynchronously: let them arrive before reading the count.
  await new Promise(setImmediate);
  const sent = (io.sentCount.get(outPort) ?? 0) - sentBefore;
  const drops = p.drops.reduce((a, b) => a + b, 0) - dropsBefore;
  if (sent !== frames || drops !== 0)
    throw new Error(`${name}: ${sent} of ${frames} frames went out, ${drops} dropped`);
  const gcs = gcStarts.filter((t) => t >= start).length;
  const alloc =
    gc && gcs === 0 ? ((heap1 - heap0) / frames).toFixed(3) : 'n/a (needs --expose-gc and no GC in the run)';
  process.stdout.write(
    `| ${name} | ${((frames / ns) * 1000).toFixed(2)} | ${(ns / frames).toFixed(1)} | ${((frames * f.length * 8) / ns).toFixed(2)} | ${alloc} |\n`,
  );
}
