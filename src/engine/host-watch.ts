// When the engine looks at the host's interfaces again: after each burst of rtnetlink events, when a
// socket on one of them fails, and every few seconds for what no event said (an event lost when its
// socket's queue overflowed). However often it is asked, it looks once per turn of the event loop.

import { HostEvents } from '../ports/host-events.js';
import type { Logger } from '../util/log.js';

/** Seconds between looks at the host's interfaces without an event. */
const LOOK_EVERY_TICKS = 5;

/** Runs `look` when the host's interfaces may have changed. */
export class HostWatch {
  private events: HostEvents | null = null;
  private pending = false;
  private ticks = 0;
  private closed = false;

  constructor(
    private readonly look: () => void,
    private readonly log: Logger,
  ) {}

  /** Subscribes to the host's interface events; without them, the looks every few seconds remain. */
  start(): void {
    try {
      this.events = new HostEvents(this.soon);
    } catch (e) {
      this.log.warn('no rtnetlink events: the host is looked at every few seconds only', {
        error: e instanceof Error ? e.message : String(e),
      });
    }
  }

  /** Looks at the next turn of the event loop (once, however often asked before it). */
  readonly soon = (): void => {
    if (this.pending || this.closed) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      if (!this.closed) this.look();
    });
  };

  /** The engine's one-second tick: every few of them, a look. */
  tick(): void {
    if (++this.ticks % LOOK_EVERY_TICKS === 0 && !this.closed) this.look();
  }

  /** Stops looking. */
  close(): void {
    this.closed = true;
    this.events?.close();
  }
}
