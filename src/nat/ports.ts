// The external ports of one protocol: the reserved range, handed out in a random order (RFC 6056: a
// predictable next port helps off-path attackers) and taken back when a mapping ends.

/** A pool of ports from lo to hi inclusive. */
export class PortPool {
  private readonly free: Int32Array;
  private count: number;

  constructor(
    readonly lo: number,
    readonly hi: number,
    random: () => number = Math.random,
  ) {
    this.free = new Int32Array(hi - lo + 1);
    for (let i = 0; i < this.free.length; i++) this.free[i] = lo + i;
    for (let i = this.free.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      const t = this.free[i];
      this.free[i] = this.free[j];
      this.free[j] = t;
    }
    this.count = this.free.length;
  }

  /** Ports still free. */
  get available(): number {
    return this.count;
  }

  /** A free port, or 0 when none is left. */
  take(): number {
    return this.count === 0 ? 0 : this.free[--this.count];
  }

  /** Takes a specific port (a mapping restored after a restart); false if it is not free. */
  takeExact(port: number): boolean {
    for (let i = 0; i < this.count; i++) {
      if (this.free[i] === port) {
        this.free[i] = this.free[--this.count];
        return true;
      }
    }
    return false;
  }

  /** Returns a port. */
  give(port: number): void {
    this.free[this.count++] = port;
  }
}
