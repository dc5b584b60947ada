/*
 * Inbound IPv4 fragments. Only a datagram's first fragment carries the ports that name its mapping; the
 * later ones are matched to it by (source address, protocol, IP id).
 *
 * Theory of operation
 * - When a first fragment (offset 0, more-fragments set) is translated, its (source, protocol, id) is
 *   remembered with the VM it went to, for 30 s (RFC 791's reassembly timeout is of that order).
 * - A later fragment with a remembered key goes to the same VM with only its destination rewritten.
 * - One that comes before its first fragment finds nothing and is dropped under a named reason: softnet
 *   does not hold fragments back.
 * - Times are whole seconds, the flows' clock. Keys are small integers in two levels of Map (source, then protocol << 16 | id), so no lookup
 *   allocates; entries are made once per fragmented datagram and swept with the flows.
 */

import type { NatOwner } from './flows.js';

/** Seconds a first fragment's destination is remembered. */
const FRAGMENT_TTL = 30;

interface Entry {
  owner: NatOwner;
  until: number;
  /** NAT66: the interface identifier of the VM address the train goes to. */
  iid2: number;
  iid3: number;
}

/** Fragment trains in flight towards the VMs. */
export class FragmentTable {
  private readonly bySource = new Map<number, Map<number, Entry>>();

  /** Remembers that the datagram (src, proto, id) goes to `owner` (for NAT66, its address iid2:iid3). */
  remember(src: number, proto: number, id: number, owner: NatOwner, now: number, iid2 = 0, iid3 = 0): void {
    let inner = this.bySource.get(src | 0);
    if (!inner) {
      inner = new Map();
      this.bySource.set(src | 0, inner);
    }
    inner.set((proto << 16) | id, { owner, until: now + FRAGMENT_TTL, iid2, iid3 });
  }

  /** The VM a later fragment of (src, proto, id) goes to, if its first fragment was seen. */
  find(src: number, proto: number, id: number): NatOwner | undefined {
    return this.bySource.get(src | 0)?.get((proto << 16) | id)?.owner;
  }

  /** find() with the whole entry: NAT66 needs the address it went to. */
  entry(src: number, proto: number, id: number): Readonly<Entry> | undefined {
    return this.bySource.get(src | 0)?.get((proto << 16) | id);
  }

  /** Forgets trains older than their timeout, and every train of a VM that went away. */
  sweep(now: number, gone?: NatOwner): void {
    for (const [src, inner] of this.bySource) {
      for (const [key, e] of inner) if (e.until <= now || e.owner === gone) inner.delete(key);
      if (inner.size === 0) this.bySource.delete(src);
    }
  }
}
