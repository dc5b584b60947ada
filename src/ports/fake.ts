// A fake of the addon's batched I/O: frames handed to it are "received" by the pipeline and frames the
// pipeline sends are kept for inspection. For the in-process bench and tests; no fd, no system call.

import type { FrameIo } from '../pipeline/pipeline.js';
import { VNET_HDR_LEN as VNET } from '../wire/vnet.js';

/** Batched I/O over in-memory queues, one per port number. */
export class FakeIo implements FrameIo {
  private readonly inbox = new Map<number, Uint8Array[]>();
  private readonly templates = new Map<number, Uint8Array>();
  private readonly sent = new Map<number, Uint8Array[]>();
  /** Frames sent per port. */
  readonly sentCount = new Map<number, number>();
  /** Whether sent frames are kept for take(); the bench turns it off and only counts. */
  keep = true;
  /**
   * Ports with virtio headers, as the addon's vnet ports: frames delivered to them and taken from them
   * start with their 10-byte virtio_net_hdr. Every other port's receive zeroes the header before the frame.
   */
  readonly vnet = new Set<number>();
  private u8: Uint8Array | null = null;

  /** Uses `arena` for the offsets recv() and send() take, as the addon's setArena does. */
  setArena(arena: ArrayBuffer): void {
    this.u8 = new Uint8Array(arena);
  }

  /** Queues frames for the pipeline to receive on `port`. */
  deliver(port: number, ...frames: Uint8Array[]): void {
    const q = this.inbox.get(port) ?? [];
    q.push(...frames);
    this.inbox.set(port, q);
  }

  /** Makes every recv() on `port` return a full batch of copies of `frame` (the bench's endless source). */
  flood(port: number, frame: Uint8Array): void {
    this.templates.set(port, frame);
  }

  /** Ends flood(). */
  stopFlood(port: number): void {
    this.templates.delete(port);
  }

  recv(port: number, base: number, stride: number, max: number, lens: Uint32Array): number {
    const t = this.templates.get(port);
    if (t) {
      for (let i = 0; i < max; i++) lens[i] = this.place(port, t, base + i * stride);
      return max;
    }
    const q = this.inbox.get(port);
    let n = 0;
    while (q && q.length > 0 && n < max) {
      lens[n] = this.place(port, q.shift()!, base + n * stride);
      n++;
    }
    return n;
  }

  /** Writes frame `f` for a slot whose frame starts at `at`, as the addon would; returns the frame's length. */
  protected place(port: number, f: Uint8Array, at: number): number {
    const u8 = this.u8!;
    if (this.vnet.has(port)) {
      u8.set(f, at - VNET);
      return f.length - VNET;
    }
    u8.set(f, at);
    // A loop, not fill(): a builtin call a frame would count against softnet in the bench.
    for (let i = at - VNET; i < at; i++) u8[i] = 0;
    return f.length;
  }

  send(port: number, offs: Uint32Array, lens: Uint32Array, count: number): number {
    this.sentCount.set(port, (this.sentCount.get(port) ?? 0) + count);
    if (this.keep) {
      const pre = this.vnet.has(port) ? VNET : 0;
      const list = this.sent.get(port) ?? [];
      for (let i = 0; i < count; i++) list.push(this.u8!.slice(offs[i] - pre, offs[i] + lens[i]));
      this.sent.set(port, list);
    }
    return count;
  }

  /** Takes the frames sent on `port` so far. */
  take(port: number): Uint8Array[] {
    const list = this.sent.get(port) ?? [];
    this.sent.set(port, []);
    return list;
  }
}
