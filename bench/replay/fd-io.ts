// A FakeIo that hands ports over to the addon: a port is fake until it is bound (so the VM gets its lease
// through frames in memory, as in-process), and from then on its recv() and send() are the addon's, on a
// real fd. The pipeline keeps its fake port numbers; only this table knows the addon's.

import { native } from '../../src/native.js';
import { FakeIo } from '../../src/ports/fake.js';

/** Room for every fake port number (test/lib/in-process.ts's PortId). */
const FAKE_PORTS = 8;

/** Batched I/O for the replay over real fds. */
export class FdIo extends FakeIo {
  private readonly real = new Int32Array(FAKE_PORTS).fill(-1);

  /** From now on, fake port `fake` is the addon's port `real`. */
  bind(fake: number, real: number): void {
    this.real[fake] = real;
  }

  override recv(port: number, base: number, stride: number, max: number, lens: Uint32Array): number {
    const r = this.real[port];
    return r < 0 ? super.recv(port, base, stride, max, lens) : native.recv(r, base, stride, max, lens);
  }

  override send(port: number, offs: Uint32Array, lens: Uint32Array, count: number): number {
    const r = this.real[port];
    return r < 0 ? super.send(port, offs, lens, count) : native.send(r, offs, lens, count);
  }
}
