/*
 * The captures an engine runs (`softnet capture VM`).
 *
 * Theory of operation
 * - A capture is one client's copy of one attached VM's frames: a CaptureSink (capture/tap.ts) on the
 *   PortTap of the VM's port, sending through the client's control connection. The first capture of a
 *   port puts the tap there and the last one to end takes it away, so a port nobody captures has no tap
 *   and costs the pipeline one test per batch.
 * - A capture ends when its client asks (capture.stop: the reply carries its counts), when it has the
 *   frames it asked for, when its VM detaches, when the engine stops, or when its client's connection
 *   closes or fails. Ending takes the sink off the tap at once, then sends what it buffered and, unless
 *   the client asked or is gone, a `capture-end` event with the reason and the counts.
 * - Bounds: MAX_PER_VM captures of one VM and MAX_CAPTURES in all, each holding one tap.CHUNK buffer;
 *   one more is refused with a reason.
 */

import { CaptureSink, PortTap } from '../capture/tap.js';
import type { Channel } from '../control/channel.js';
import { ControlError } from '../control/protocol.js';
import type { LiveVm } from './engine.js';

/** Captures of one VM at once. */
export const MAX_PER_VM = 4;
/** Captures in one engine at once. */
export const MAX_CAPTURES = 32;

/** A capture's counts: frames sent to its client, and frames dropped because it could not keep up. */
export interface CaptureCounts {
  frames: number;
  dropped: number;
}

interface Running {
  vm: LiveVm;
  ch: Channel;
  sink: CaptureSink;
  tap: PortTap;
}

/** The running captures of one engine. */
export class Captures {
  private nextId = 1;
  private readonly running = new Map<number, Running>();

  /** Starts capturing `vm` for the client at `ch`, `limit` frames at most; returns the capture's id. */
  start(vm: LiveVm, ch: Channel, limit: number): number {
    if (this.running.size >= MAX_CAPTURES)
      throw new ControlError(`the engine runs ${MAX_CAPTURES} captures already, its most`);
    if (this.of(vm).length >= MAX_PER_VM)
      throw new ControlError(`VM ${vm.record.name} has ${MAX_PER_VM} captures running already, its most`);
    const port = vm.att.port;
    const tap = port.tap instanceof PortTap ? port.tap : new PortTap();
    const id = this.nextId++;
    const sink = new CaptureSink(id, (bytes) => ch.sendBinary(bytes), limit, {
      complete: () => void this.end(id, 'count', true),
      failed: () => void this.end(id, 'client-gone', false),
    });
    tap.sinks.push(sink);
    port.tap = tap;
    this.running.set(id, { vm, ch, sink, tap });
    return id;
  }

  /** Ends capture `id` of the client at `ch`, which asked; resolves with its counts once all is sent. */
  stop(id: number, ch: Channel): Promise<CaptureCounts> {
    const run = this.running.get(id);
    if (!run || run.ch !== ch) throw new ControlError(`no capture ${id} of this connection`);
    return this.end(id, 'stopped', false);
  }

  /** Ends the captures of a VM that detached. */
  vmGone(vm: LiveVm): void {
    for (const run of this.of(vm)) void this.end(run.sink.id, 'vm-detached', true);
  }

  /** Ends the captures of a client whose connection closed. */
  channelClosed(ch: Channel): void {
    for (const [id, run] of this.running) if (run.ch === ch) void this.end(id, 'client-gone', false);
  }

  /** Whether the client at `ch` runs a capture. */
  holds(ch: Channel): boolean {
    for (const run of this.running.values()) if (run.ch === ch) return true;
    return false;
  }

  /** Ends every capture (the engine stops), telling each client why. */
  closeAll(reason: string): void {
    for (const id of [...this.running.keys()]) void this.end(id, reason, true);
  }

  /** How many captures run. */
  get size(): number {
    return this.running.size;
  }

  private of(vm: LiveVm): Running[] {
    return [...this.running.values()].filter((r) => r.vm === vm);
  }

  private async end(id: number, reason: string, tell: boolean): Promise<CaptureCounts> {
    const run = this.running.get(id);
    if (!run) return { frames: 0, dropped: 0 };
    this.running.delete(id);
    const { sink, tap, vm } = run;
    tap.sinks.splice(tap.sinks.indexOf(sink), 1);
    if (tap.sinks.length === 0 && vm.att.port.tap === tap) vm.att.port.tap = null;
    // Without waiting when the client takes the rest at once, so an engine stopping still says why.
    if (!sink.stop()) await sink.drain();
    const counts = { frames: sink.sent, dropped: sink.dropped };
    if (tell) run.ch.send({ event: 'capture-end', capture: id, reason, ...counts });
    return counts;
  }
}
