/*
 * The capture tap: copies of a captured VM's frames on their way to `softnet capture`.
 *
 * Theory of operation
 * - A port someone captures carries a PortTap (port.tap). The pipeline shows it each batch received from
 *   the port, before any frame of it is decided (answers are written over the frames they answer), and
 *   each batch sent to the port, after the send. The tap stamps the batch once and hands every frame to
 *   each of its sinks: one CaptureSink per `softnet capture` of that VM.
 * - A sink copies frames, as records (records.ts), into one message buffer of CHUNK bytes. The buffer goes
 *   out as one binary control message when the next frame does not fit, and on the event loop's next turn
 *   after its first record, so a quiet VM's frames are not held back.
 * - Sending never blocks: when the client's socket is full the buffer waits, retried every RETRY_MS, and
 *   frames that do not fit meanwhile are dropped and counted. A capture so holds at most CHUNK bytes of the
 *   engine's memory (plus its socket's buffer) whatever its client does, and never slows the VM.
 * - A sink with a limit (-c) takes no frame beyond it and says so once those frames are sent.
 * - A send failing otherwise (the client is gone) kills the sink: it takes nothing more and says so.
 * - Stopping takes no more frames and sends what is buffered, waiting a little for a slow client
 *   (drain), and counts as dropped what it still could not send.
 */

import type { FrameTap } from '../ports/port.js';
import {
  Direction,
  MESSAGE_HEADER_LEN,
  RECORD_HEADER_LEN,
  writeMessageHeader,
  writeRecord,
} from './records.js';

/** Bytes of a sink's message buffer: a few dozen full-size frames, well within a control message. */
export const CHUNK = 64 * 1024;
/** How often a buffer the client's socket could not take is offered again. */
export const RETRY_MS = 5;
/** How long ending a capture waits for its last buffer to go out before counting it dropped. */
const END_WAIT_MS = 1000;
const EAGAIN = 11;
/** The longest frame a record holds: what fits in an empty buffer (a VM's frames are far shorter). */
const MAX_FRAME = CHUNK - MESSAGE_HEADER_LEN - RECORD_HEADER_LEN;

/** What a sink tells its owner. */
export interface SinkEvents {
  /** Every frame of its limit has been sent. */
  complete(): void;
  /** Sending failed for good (-errno): the client is gone. */
  failed(errno: number): void;
}

/** One capture's frames, buffered and sent as binary messages through `send` (bytes sent, or -errno). */
export class CaptureSink {
  /** Frames sent to the client, and frames dropped because it could not keep up. */
  sent = 0;
  dropped = 0;
  /** Frames taken, sent or buffered: what the limit counts. */
  private taken = 0;
  private readonly buf = new Uint8Array(CHUNK);
  private readonly dv = new DataView(this.buf.buffer);
  private used: number;
  /** Records in the buffer. */
  private buffered = 0;
  private scheduled = false;
  private retry: NodeJS.Timeout | null = null;
  /** Takes no more frames (stopped, or the client is gone). */
  private closed = false;
  /** Sending failed for good: the client is gone. */
  private dead = false;
  private readonly sendSoon = (): void => this.sendScheduled();

  constructor(
    readonly id: number,
    private readonly send: (bytes: Uint8Array) => number,
    /** Frames to take before completing; Infinity for no limit. */
    private readonly limit: number,
    private readonly events: SinkEvents,
  ) {
    this.used = writeMessageHeader(this.buf, id);
  }

  /** Takes a copy of the frame at u8[off, off+len), stamped `sec`.`nsec`, that went `dir`. */
  take(u8: Uint8Array, off: number, len: number, dir: number, sec: number, nsec: number): void {
    if (this.closed || this.taken >= this.limit) return;
    if (len > MAX_FRAME || (this.used + RECORD_HEADER_LEN + len > CHUNK && !this.flush())) {
      this.dropped++;
      return;
    }
    this.used = writeRecord(this.buf, this.dv, this.used, sec, nsec, dir, u8, off, len);
    this.buffered++;
    this.taken++;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.sendSoon);
    }
  }

  /** Takes no more frames and sends what is buffered if the client takes it now; true when all is sent. */
  stop(): boolean {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    return this.flush();
  }

  /**
   * After stop(): waits up to END_WAIT_MS for the client's socket to take what is still buffered; what it
   * has not taken by then counts as dropped.
   */
  async drain(): Promise<void> {
    const deadline = Date.now() + END_WAIT_MS;
    while (this.buffered > 0 && !this.dead && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      this.flush();
    }
    this.dropped += this.buffered;
    this.buffered = 0;
  }

  /** Sends what is buffered; true when nothing is left. */
  private flush(): boolean {
    if (this.buffered === 0) return true;
    if (this.dead) return false;
    const n = this.send(this.buf.subarray(0, this.used));
    if (n === -EAGAIN) return false;
    if (n < 0) {
      this.dead = true;
      this.closed = true;
      // Told after the current batch: the owner takes this sink off the tap that is calling it.
      queueMicrotask(() => this.events.failed(n));
      return false;
    }
    this.sent += this.buffered;
    this.used = MESSAGE_HEADER_LEN;
    this.buffered = 0;
    return true;
  }

  private sendScheduled(): void {
    this.scheduled = false;
    this.retry = null;
    if (this.closed) return;
    if (!this.flush()) {
      if (!this.dead) this.retry = setTimeout(this.sendSoon, RETRY_MS);
      return;
    }
    if (this.taken >= this.limit) this.events.complete();
  }
}

/** The time of the batch being tapped, set by stamp(): two numbers, so stamping allocates nothing. */
let stampSec = 0;
let stampNsec = 0;

/** Sets stampSec and stampNsec to now, to the microsecond or better. */
function stamp(): void {
  const t = performance.timeOrigin + performance.now();
  const ms = Math.floor(t);
  stampSec = Math.floor(ms / 1000);
  stampNsec = (ms % 1000) * 1e6 + Math.floor((t - ms) * 1e6);
}

/** The tap of one captured port: hands each frame to each of the port's capture sinks. */
export class PortTap implements FrameTap {
  readonly sinks: CaptureSink[] = [];

  received(u8: Uint8Array, base: number, stride: number, lens: Uint32Array, count: number): void {
    stamp();
    const sec = stampSec;
    const nsec = stampNsec;
    for (const sink of this.sinks) {
      for (let i = 0; i < count; i++) {
        // A frame longer than its slot was cut by the read and is dropped by the pipeline.
        if (lens[i] <= stride) sink.take(u8, base + i * stride, lens[i], Direction.FROM_VM, sec, nsec);
      }
    }
  }

  sent(u8: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number): void {
    stamp();
    const sec = stampSec;
    const nsec = stampNsec;
    for (const sink of this.sinks) {
      for (let i = 0; i < count; i++) sink.take(u8, offs[i], lens[i], Direction.TO_VM, sec, nsec);
    }
  }
}
