/*
 * The hot loop: read a batch from a port, decide each frame, send what was decided, in batches.
 *
 * Theory of operation
 * - One arena holds every frame in flight. Its first part receives: recv() fills BATCH slots of STRIDE
 *   bytes. The second holds frames softnet writes itself (ARP, ICMP and DHCP answers): slot i of it
 *   belongs to the frame in receive slot i, so a frame's answer never overwrites another's. A port that
 *   receives aggregates of up to 64 KiB (the uplink's capture: GRO, a veth peer's TSO) reads into BIG
 *   slots instead, and the aggregates are cut into MTU-sized segments in the SEG part, which is handed out
 *   in order during a batch and taken back at its flush.
 * - Deciding a frame means queueing (offset, length) on the port it goes to: a forwarded frame is sent
 *   from its receive slot (no copy), an answer from its own slot. Nothing is allocated per frame.
 * - Every frame slot starts HEADROOM bytes into its stride, and the VNET_HDR_LEN bytes right before a
 *   frame are its virtio_net_hdr: read with it from a port with virtio headers (a TAP with offloads), or
 *   zeroed by the receive of any other port; softnet's own frames start with zeroed ones (the arena's
 *   answer and own slots are written by nothing else). So any frame in
 *   the arena says whether it is an aggregate or leaves its checksum to offload, and goes to a port with
 *   virtio headers as it is, with no copy (to one without, see offload.ts forwardFrame).
 * - Every queue is flushed before the next recv() reuses the slots, so a queued frame is never stale.
 * - A port's failure (its VM went away) is reported to the port's owner, never thrown.
 * - A captured port (port.tap set) shows its tap each batch it receives, before any frame of it is decided,
 *   and each batch sent to it, after the send: so a capture sees frames as the VM sent and got them.
 */

import { type Port, PortStat } from '../ports/port.js';
import { DROP_COUNT, Drop } from '../stats/drops.js';
import { monotonicSeconds } from '../util/clock.js';

/** Frames in one batch. */
export const BATCH = 64;
/** Bytes of one frame slot: an MTU-1500 frame with room to spare; longer frames are dropped. */
export const STRIDE = 2048;
/** Frames in one batch of a big-frame port, and the bytes of its slots: a virtio header and 64 KiB of IP. */
export const BIG_BATCH = 16;
export const BIG_STRIDE = 65_600;
/** Segment slots for one batch's aggregates (a 64 KiB TCP aggregate is at most 46 segments at MSS 1448). */
export const SEG_SLOTS = 768;
/** Frames one port may have queued in a batch: one per received frame, or every segment. */
export const QUEUE_LEN = BATCH + SEG_SLOTS;
/** Bytes of each slot before its frame, for the frame's virtio header (as native/softnet.c's HEADROOM). */
export const HEADROOM = 16;
// Where each part of the arena starts; a slot's frame starts HEADROOM bytes into the slot.
const RX_PART = 0;
const GEN_PART = RX_PART + BATCH * STRIDE;
const BIG_PART = GEN_PART + BATCH * STRIDE;
const SEG_PART = BIG_PART + BIG_BATCH * BIG_STRIDE;
/** One slot for a frame softnet sends by itself outside any batch (an announcement): see sendNow(). */
const OWN_PART = SEG_PART + SEG_SLOTS * STRIDE;
const ARENA_LEN = OWN_PART + STRIDE;
const RX_BASE = RX_PART + HEADROOM;
const GEN_BASE = GEN_PART + HEADROOM;
const BIG_BASE = BIG_PART + HEADROOM;
const SEG_BASE = SEG_PART + HEADROOM;
const OWN_BASE = OWN_PART + HEADROOM;
/** Batches taken from one port before the others get a turn. */
export const DRAIN_ROUNDS = 8;

/** The batched I/O the pipeline needs: the addon's recv and send, or a fake in tests and the bench. */
export interface FrameIo {
  recv(port: number, base: number, stride: number, max: number, lens: Uint32Array): number;
  send(port: number, offs: Uint32Array, lens: Uint32Array, count: number): number;
}

/** What the owner of a port does with each received frame, and when the port fails. */
export interface PortOwner {
  frame(port: Port, off: number, len: number, slot: number): void;
  failed(port: Port, errno: number): void;
}

/** The arena, the transmit queues and the drop counters of one engine. */
export class Pipeline {
  readonly arena = new ArrayBuffer(ARENA_LEN);
  /** Segment slots handed out since the last flush. */
  private segUsed = 0;
  readonly u8 = new Uint8Array(this.arena);
  readonly dv = new DataView(this.arena);
  readonly drops = new Float64Array(DROP_COUNT);
  /**
   * Monotonic seconds as of the last tick (once a second): the flows' clock. Timeouts need no finer one,
   * whole seconds are small integers, stored in a flow without allocating, and a step of the wall clock
   * does not end every mapping at once.
   */
  clock = monotonicSeconds();
  private readonly lens = new Uint32Array(BATCH);
  private readonly oneOff = new Uint32Array(1);
  private readonly oneLen = new Uint32Array(1);
  /** Ports with queued frames; a fixed array and a count, because emptying a JS array frees its storage. */
  private readonly dirty: Port[] = [];
  private dirtyCount = 0;
  private readonly owners: Array<PortOwner | undefined> = [];
  private readonly ports: Array<Port | undefined> = [];

  constructor(private readonly io: FrameIo) {}

  /** Registers a port and who handles its frames. */
  add(port: Port, owner: PortOwner): void {
    this.ports[port.id] = port;
    this.owners[port.id] = owner;
  }

  /** Forgets a port (before it is closed). */
  remove(port: Port): void {
    this.ports[port.id] = undefined;
    this.owners[port.id] = undefined;
  }

  /** The port registered under an addon port number. */
  port(id: number): Port | undefined {
    return this.ports[id];
  }

  /** Reports a port's failure (-errno) to its owner. */
  fail(port: Port, errno: number): void {
    if (!port.closed) this.owners[port.id]?.failed(port, errno);
  }

  /** The offset where the answer to the frame in receive slot `slot` is written. */
  answerOffset(slot: number): number {
    return GEN_BASE + slot * STRIDE;
  }

  /** The offset of the next free segment slot of this batch. */
  nextSegment(): number {
    return SEG_BASE + this.segUsed * STRIDE;
  }

  /** Segment slots still free in this batch. */
  segmentsLeft(): number {
    return SEG_SLOTS - this.segUsed;
  }

  /** Marks `count` slots from nextSegment() as used until the flush. */
  takeSegments(count: number): void {
    this.segUsed += count;
  }

  /** Where a frame for sendNow() is written. */
  ownFrame(): number {
    return OWN_BASE;
  }

  /**
   * Sends the frame written at ownFrame() on `port` at once, outside any batch: for what softnet says of
   * itself on the slow path (a gratuitous ARP when a VM gets an address), never per received frame.
   */
  sendNow(port: Port, len: number): void {
    if (port.closed) return;
    this.oneOff[0] = OWN_BASE;
    this.oneLen[0] = len;
    if (this.io.send(port.id, this.oneOff, this.oneLen, 1) === 1) {
      port.stats[PortStat.TX_FRAMES]++;
      port.stats[PortStat.TX_BYTES] += len;
    } else {
      port.stats[PortStat.TX_DROPS]++;
    }
  }

  /** Queues the frame at arena[off, off+len) for `port`. */
  queue(port: Port, off: number, len: number): void {
    const n = port.txCount;
    if (n === port.txOffs.length) {
      port.stats[PortStat.TX_DROPS]++;
      this.drops[Drop.TX_FULL]++;
      return;
    }
    if (n === 0) this.dirty[this.dirtyCount++] = port;
    port.txOffs[n] = off;
    port.txLens[n] = len;
    port.txCount = n + 1;
  }

  /** Sends every queued frame, one send() per port. */
  flush(): void {
    const dirty = this.dirty;
    for (let i = 0; i < this.dirtyCount; i++) {
      const port = dirty[i];
      const count = port.txCount;
      port.txCount = 0;
      if (port.closed) {
        this.drops[Drop.VM_DOWN] += count;
        continue;
      }
      const sent = this.io.send(port.id, port.txOffs, port.txLens, count);
      if (sent < 0) {
        port.stats[PortStat.TX_DROPS] += count;
        this.drops[Drop.VM_DOWN] += count;
        this.owners[port.id]?.failed(port, sent);
        continue;
      }
      if (port.tap !== null && sent > 0) port.tap.sent(this.u8, port.txOffs, port.txLens, sent);
      let bytes = 0;
      for (let j = 0; j < sent; j++) bytes += port.txLens[j];
      port.stats[PortStat.TX_FRAMES] += sent;
      port.stats[PortStat.TX_BYTES] += bytes;
      if (sent < count) {
        port.stats[PortStat.TX_DROPS] += count - sent;
        this.drops[Drop.TX_FULL] += count - sent;
      }
    }
    this.dirtyCount = 0;
    this.segUsed = 0;
  }

  /** Reads and handles batches from `port` until it is empty or has had its turn; true if it may hold more. */
  drain(port: Port): boolean {
    const owner = this.owners[port.id];
    if (!owner) return false;
    const lens = this.lens;
    for (let round = 0; round < DRAIN_ROUNDS; round++) {
      const big = port.big;
      const base = big ? BIG_BASE : RX_BASE;
      const stride = big ? BIG_STRIDE : STRIDE;
      const max = big ? BIG_BATCH : BATCH;
      const n = this.io.recv(port.id, base, stride, max, lens);
      if (n < 0) {
        owner.failed(port, n);
        return false;
      }
      // Before any frame is decided: answers are written over the frames they answer.
      if (port.tap !== null && n > 0) port.tap.received(this.u8, base, stride, lens, n);
      let bytes = 0;
      for (let i = 0; i < n; i++) {
        const len = lens[i];
        if (len > stride - HEADROOM) {
          this.drops[Drop.OVERSIZE]++;
          continue;
        }
        bytes += len;
        owner.frame(port, base + i * stride, len, i);
      }
      port.stats[PortStat.RX_FRAMES] += n;
      port.stats[PortStat.RX_BYTES] += bytes;
      this.flush();
      if (n < max || port.closed) return false;
    }
    return true;
  }
}
