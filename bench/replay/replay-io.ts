// A FakeIo whose VM port receives a capture's frames over and over: every recv() fills the whole batch with
// the next frames, each copied into its slot as the kernel would copy it. Nothing is allocated per frame.

import { FakeIo } from '../../src/ports/fake.js';

/** Batched I/O for the in-process replay. */
export class ReplayIo extends FakeIo {
  private bytes: Uint8Array | null = null;
  private port = -1;
  private frames: Uint8Array[] = [];
  private next = 0;

  override setArena(arena: ArrayBuffer): void {
    super.setArena(arena);
    this.bytes = new Uint8Array(arena);
  }

  /** Makes `port` receive `frames`, in order and from the first again after the last. */
  play(port: number, frames: Uint8Array[]): void {
    if (frames.length === 0) throw new Error('nothing to replay');
    this.port = port;
    this.frames = frames;
    this.next = 0;
  }

  override recv(port: number, base: number, stride: number, max: number, lens: Uint32Array): number {
    if (port !== this.port) return super.recv(port, base, stride, max, lens);
    const u8 = this.bytes!;
    const frames = this.frames;
    const n = frames.length;
    let k = this.next;
    for (let i = 0; i < max; i++) {
      const f = frames[k];
      const at = base + i * stride;
      u8.set(f, at);
      // As the addon does for a port without virtio headers: the header before the frame says "nothing".
      // A loop, not fill(): a builtin call a frame would count against softnet.
      for (let j = at - 10; j < at; j++) u8[j] = 0;
      lens[i] = f.length;
      k = k + 1 === n ? 0 : k + 1;
    }
    this.next = k;
    return max;
  }
}
