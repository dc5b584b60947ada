// The VM's end of a frame fd, driven from the test process through the addon: what a VM tool's NIC does.

import { setTimeout as sleep } from 'node:timers/promises';
import { native } from '../../src/native.js';
import { HEADROOM } from '../../src/pipeline/pipeline.js';

const SLOTS = 16;
const STRIDE = 2048;

/** One end of a VM port; sends frames and waits for the ones that come back. */
export class FramePeer {
  private readonly arena = new ArrayBuffer(SLOTS * STRIDE);
  private readonly u8 = new Uint8Array(this.arena);
  private readonly offs = new Uint32Array(SLOTS);
  private readonly lens = new Uint32Array(SLOTS);
  private readonly port: number;
  private readonly pending: Uint8Array[] = [];

  constructor(fd: number, mode: number) {
    native.setArena(this.arena);
    this.port = native.portOpen(fd, mode);
  }

  /** Sends one frame; returns how many the kernel took (1) or -errno. */
  send(frame: Uint8Array): number {
    this.u8.set(frame, HEADROOM);
    this.offs[0] = HEADROOM;
    this.lens[0] = frame.length;
    return native.send(this.port, this.offs, this.lens, 1);
  }

  /** Waits up to `ms` for a frame that `want` accepts; frames it refuses are skipped. */
  async receive(want: (frame: Uint8Array) => boolean, ms = 5000): Promise<Uint8Array> {
    const deadline = Date.now() + ms;
    for (;;) {
      // As the pipeline's: each slot's frame starts HEADROOM bytes in, after room for a virtio header.
      const n = native.recv(this.port, HEADROOM, STRIDE, SLOTS, this.lens);
      if (n < 0) throw new Error(`recv failed: ${native.errnoName(n)}`);
      for (let i = 0; i < n; i++) {
        const at = HEADROOM + i * STRIDE;
        this.pending.push(this.u8.slice(at, at + this.lens[i]));
      }
      while (this.pending.length > 0) {
        const f = this.pending.shift()!;
        if (want(f)) return f;
      }
      if (Date.now() > deadline) throw new Error('no matching frame arrived');
      await sleep(10);
    }
  }

  /** Closes this end, which the other side sees as the VM going away. */
  close(): void {
    native.portClose(this.port);
  }
}
