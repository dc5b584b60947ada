// The host's interface events: an rtnetlink socket whose readiness says that a link, an address or a
// route changed. Events are not parsed: each burst of them makes the engine read the state it cares about
// again, once, after the burst (a change of address is a deletion and an addition, a link going away
// brings its routes down with it).

import { native, PortMode } from '../native.js';

/** Tells `changed` once after each burst of rtnetlink events. */
export class HostEvents {
  private readonly fd: number;
  private readonly port: number;
  private pending = false;
  private closed = false;
  private readonly fire = (): void => {
    this.pending = false;
    if (!this.closed) this.changed();
  };

  constructor(private readonly changed: () => void) {
    this.fd = native.rtnlOpen();
    try {
      this.port = native.portOpen(this.fd, PortMode.WATCH);
    } catch (e) {
      native.closeFd(this.fd);
      throw e;
    }
    native.portWatch(this.port, () => this.ready());
  }

  private ready(): void {
    native.rtnlDrain(this.fd);
    if (this.pending) return;
    this.pending = true;
    // After the events already queued behind this one, so a burst is read as one change.
    setImmediate(this.fire);
  }

  /** Stops listening. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.portClose(this.port);
  }
}
