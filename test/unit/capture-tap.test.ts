// The capture tap in-process: the real pipeline behind fake ports, a PortTap on the VM's port, and sinks
// whose "client" is a function. Frames are seen as the VM sent and got them, the buffer is bounded when
// the client does not keep up, and the registry takes the tap away with the last capture.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PcapWriter, parsePcap } from '../../src/capture/pcap.js';
import { type CapturedFrame, Direction, readMessage } from '../../src/capture/records.js';
import { CaptureSink, CHUNK, PortTap, RETRY_MS } from '../../src/capture/tap.js';
import type { Channel } from '../../src/control/channel.js';
import type { Message } from '../../src/control/protocol.js';
import { Captures, MAX_PER_VM } from '../../src/engine/captures.js';
import type { LiveVm } from '../../src/engine/engine.js';
import { BATCH } from '../../src/pipeline/pipeline.js';
import { parseMac } from '../../src/wire/addr.js';
import { IcmpType } from '../../src/wire/icmp.js';
import { IpProto } from '../../src/wire/ipv4.js';
import { ipFrame } from '../lib/frames.js';
import { inProcessNetwork } from '../lib/in-process.js';

const VM_MAC = parseMac('52:54:00:00:00:01')!;
const GW_MAC = parseMac('02:00:00:00:00:fe')!;
const HOST_MAC = parseMac('02:00:00:00:00:77')!;
const EAGAIN = -11;
const EPIPE = -32;

const turn = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const none = { complete() {}, failed() {} };

/** A client that keeps every message it is sent, or refuses them (EAGAIN) while `full` is set. */
function client() {
  const messages: Uint8Array[] = [];
  const c = {
    full: false,
    messages,
    send: (bytes: Uint8Array) => {
      if (c.full) return EAGAIN;
      messages.push(bytes.slice(1));
      return bytes.length;
    },
    frames(): CapturedFrame[] {
      return messages.flatMap((m) => {
        const r = readMessage(m);
        if (typeof r === 'string') throw new Error(r);
        return r.frames;
      });
    },
  };
  return c;
}

describe('capture tap', () => {
  test('sees an echo to the gateway as the VM sent it and its answer as the VM got it', async () => {
    const net = inProcessNetwork({ vmMac: VM_MAC, gatewayMac: GW_MAC });
    const c = client();
    const tap = new PortTap();
    tap.sinks.push(new CaptureSink(1, c.send, Number.POSITIVE_INFINITY, none));
    net.vmPort.tap = tap;
    const request = ipFrame(VM_MAC, GW_MAC, net.att.ip, net.cfg.gateway, IpProto.ICMP);
    net.io.deliver(net.vmPort.id, request);
    net.p.drain(net.vmPort);
    assert.equal(c.messages.length, 0, 'sent on the next turn, not from inside the pipeline');
    await turn();
    const [from, to] = c.frames();
    assert.equal(from.dir, Direction.FROM_VM);
    assert.deepEqual(from.data, request, 'the request before it was answered in place');
    assert.equal(to.dir, Direction.TO_VM);
    assert.deepEqual(to.data, net.io.take(net.vmPort.id)[0], 'the answer as sent');
    assert.equal(to.data[14 + 20], IcmpType.ECHO_REPLY);
    const now = Date.now() / 1000;
    assert.ok(Math.abs(from.sec + from.nsec / 1e9 - now) < 5, 'stamped with the time of day');
  });

  test('a frame from the host reaches the capture with the internal MAC, and a pcap holds it', async () => {
    const net = inProcessNetwork({ vmMac: VM_MAC, gatewayMac: GW_MAC });
    const c = client();
    const tap = new PortTap();
    tap.sinks.push(new CaptureSink(1, c.send, Number.POSITIVE_INFINITY, none));
    net.vmPort.tap = tap;
    net.io.deliver(
      net.hostPort.id,
      ipFrame(HOST_MAC, net.att.extMac, net.cfg.gateway, net.att.ip, IpProto.UDP),
    );
    net.p.drain(net.hostPort);
    await turn();
    const [f] = c.frames();
    assert.equal(f.dir, Direction.TO_VM);
    assert.deepEqual(f.data.subarray(0, 6), VM_MAC);
    const w = PcapWriter.inMemory();
    w.write(f.data, f.sec, f.nsec);
    const file = parsePcap(w.bytes());
    assert.equal(file.records.length, 1);
    assert.deepEqual([...file.records[0].data], [...f.data]);
    assert.equal(file.records[0].sec, f.sec);
    assert.equal(file.records[0].nsec, Math.floor(f.nsec / 1000) * 1000);
  });

  test('two sinks on one tap each get every frame; a port without a tap is left alone', async () => {
    const net = inProcessNetwork({ vmMac: VM_MAC, gatewayMac: GW_MAC });
    const a = client();
    const b = client();
    const tap = new PortTap();
    tap.sinks.push(new CaptureSink(1, a.send, Number.POSITIVE_INFINITY, none));
    tap.sinks.push(new CaptureSink(2, b.send, Number.POSITIVE_INFINITY, none));
    net.vmPort.tap = tap;
    const frame = ipFrame(VM_MAC, GW_MAC, net.att.ip, net.cfg.gateway, IpProto.UDP);
    net.io.deliver(net.vmPort.id, frame, frame, frame);
    net.p.drain(net.vmPort);
    await turn();
    assert.equal(a.frames().length, 3);
    assert.equal(b.frames().length, 3);
    const first = readMessage(b.messages[0]);
    assert.ok(typeof first !== 'string' && first.capture === 2, 'each message names its capture');
    net.vmPort.tap = null;
    net.io.deliver(net.vmPort.id, frame);
    net.p.drain(net.vmPort);
    await turn();
    assert.equal(a.frames().length, 3);
  });

  test('a client that does not keep up costs one buffer, and what did not fit is counted', async () => {
    const net = inProcessNetwork({ vmMac: VM_MAC, gatewayMac: GW_MAC });
    const c = client();
    c.full = true;
    const sink = new CaptureSink(1, c.send, Number.POSITIVE_INFINITY, none);
    const tap = new PortTap();
    tap.sinks.push(sink);
    net.vmPort.tap = tap;
    const frame = ipFrame(VM_MAC, GW_MAC, net.att.ip, net.cfg.gateway, IpProto.UDP, 1514);
    net.io.flood(net.vmPort.id, frame);
    for (let i = 0; i < 10; i++) net.p.drain(net.vmPort);
    net.io.stopFlood(net.vmPort.id);
    const per = Math.floor((CHUNK - 9) / (16 + 1514));
    assert.equal(sink.sent, 0);
    assert.ok(sink.dropped >= 10 * 8 * BATCH - per, `dropped ${sink.dropped}`);
    c.full = false;
    // Retried every RETRY_MS; a loaded machine may take longer than that.
    for (let i = 0; i < 400 && sink.sent === 0; i++) await sleep(RETRY_MS);
    assert.equal(sink.sent, per, 'the buffer went out once the client could take it');
    assert.equal(c.messages.length, 1);
    assert.ok(c.messages[0].length <= CHUNK);
    // The same flood with a client that keeps up loses nothing: full buffers go out as they fill.
    const before = sink.sent;
    net.io.deliver(net.vmPort.id, ...Array.from({ length: 200 }, () => frame));
    while (net.p.drain(net.vmPort));
    await turn();
    assert.equal(sink.sent - before, 200);
  });

  test('a limit takes that many frames and says so once they are sent', async () => {
    const net = inProcessNetwork({ vmMac: VM_MAC, gatewayMac: GW_MAC });
    const c = client();
    let complete = 0;
    const tap = new PortTap();
    tap.sinks.push(new CaptureSink(1, c.send, 3, { complete: () => complete++, failed() {} }));
    net.vmPort.tap = tap;
    const frame = ipFrame(VM_MAC, GW_MAC, net.att.ip, net.cfg.gateway, IpProto.UDP);
    net.io.deliver(net.vmPort.id, frame, frame, frame, frame, frame);
    net.p.drain(net.vmPort);
    await turn();
    assert.equal(c.frames().length, 3);
    assert.equal(complete, 1);
  });

  test('a client gone for good kills its sink, which is told after the batch', async () => {
    const net = inProcessNetwork({ vmMac: VM_MAC, gatewayMac: GW_MAC });
    const errors: number[] = [];
    const sink = new CaptureSink(1, () => EPIPE, Number.POSITIVE_INFINITY, {
      complete() {},
      failed: (e) => errors.push(e),
    });
    const tap = new PortTap();
    tap.sinks.push(sink);
    net.vmPort.tap = tap;
    const frame = ipFrame(VM_MAC, GW_MAC, net.att.ip, net.cfg.gateway, IpProto.UDP);
    net.io.deliver(net.vmPort.id, frame);
    net.p.drain(net.vmPort);
    await turn();
    assert.deepEqual(errors, [EPIPE]);
    net.io.deliver(net.vmPort.id, frame);
    net.p.drain(net.vmPort);
    await turn();
    assert.deepEqual(errors, [EPIPE], 'told once, sends nothing more');
    assert.equal(sink.sent, 0);
  });
});

describe('capture records', () => {
  test('a message that overruns, of another kind, or with a bad direction is refused whole', () => {
    const c = client();
    const sink = new CaptureSink(9, c.send, Number.POSITIVE_INFINITY, none);
    const f = new Uint8Array(60).fill(0xab);
    sink.take(f, 0, 60, Direction.TO_VM, 1, 2);
    sink.stop();
    const good = c.messages[0];
    const r = readMessage(good);
    assert.ok(typeof r !== 'string');
    assert.equal(r.capture, 9);
    assert.deepEqual(r.frames[0], { sec: 1, nsec: 2, dir: Direction.TO_VM, data: f });
    assert.match(readMessage(good.subarray(0, good.length - 1)) as string, /overruns/);
    const kind = good.slice();
    kind[0] = 7;
    assert.match(readMessage(kind) as string, /unknown kind 7/);
    const dir = good.slice();
    dir[8 + 12] = 5;
    assert.match(readMessage(dir) as string, /malformed/);
    assert.match(readMessage(good.subarray(0, 3)) as string, /cut short/);
  });
});

describe('capture registry', () => {
  /** A LiveVm and a Channel reduced to what the registry touches. */
  function fakes(net: ReturnType<typeof inProcessNetwork>) {
    const vm = { att: net.att, record: { name: 'vm1' } } as unknown as LiveVm;
    const events: Message[] = [];
    const c = client();
    const ch = { sendBinary: c.send, send: (m: Message) => events.push(m) > 0 } as unknown as Channel;
    return { vm, ch, events, c };
  }

  test('captures share the port tap, the last one to end takes it away, and a detaching VM ends them', async () => {
    const net = inProcessNetwork({ vmMac: VM_MAC, gatewayMac: GW_MAC });
    const { vm, ch, events, c } = fakes(net);
    const caps = new Captures();
    const a = caps.start(vm, ch, Number.POSITIVE_INFINITY);
    const b = caps.start(vm, ch, Number.POSITIVE_INFINITY);
    const tap = net.vmPort.tap as PortTap;
    assert.equal(tap.sinks.length, 2);
    for (let i = 2; i < MAX_PER_VM; i++) caps.start(vm, ch, Number.POSITIVE_INFINITY);
    assert.throws(() => caps.start(vm, ch, Number.POSITIVE_INFINITY), /captures running already/);
    const frame = ipFrame(VM_MAC, GW_MAC, net.att.ip, net.cfg.gateway, IpProto.UDP);
    net.io.deliver(net.vmPort.id, frame);
    net.p.drain(net.vmPort);
    assert.deepEqual(await caps.stop(a, ch), { frames: 1, dropped: 0 }, 'its buffer goes out as it stops');
    assert.equal(tap.sinks.length, MAX_PER_VM - 1);
    assert.throws(() => caps.stop(a, ch), /no capture/);
    assert.throws(() => caps.stop(b, {} as Channel), /no capture/, 'only by its own connection');
    caps.vmGone(vm);
    await turn();
    assert.equal(net.vmPort.tap, null);
    assert.equal(caps.size, 0);
    const ends = events.filter((e) => e.event === 'capture-end');
    assert.equal(ends.length, MAX_PER_VM - 1);
    assert.deepEqual(ends[0], {
      event: 'capture-end',
      capture: b,
      reason: 'vm-detached',
      frames: 1,
      dropped: 0,
    });
    assert.equal(c.frames().length, MAX_PER_VM);
  });

  test("a client's connection closing ends its captures without a word", async () => {
    const net = inProcessNetwork({ vmMac: VM_MAC, gatewayMac: GW_MAC });
    const { vm, ch, events } = fakes(net);
    const caps = new Captures();
    caps.start(vm, ch, Number.POSITIVE_INFINITY);
    caps.channelClosed(ch);
    await turn();
    assert.equal(net.vmPort.tap, null);
    assert.equal(events.length, 0);
  });
});
