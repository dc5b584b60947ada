/*
 * The lease table of one network.
 *
 * Theory of operation
 * - A lease ties one client identity (the attachment's key, not a MAC the guest could choose) to one
 *   address of the pool. It is `offered` for a short hold after an OFFER, then `bound` after an ACK until
 *   it expires, is released, or its VM goes away.
 * - Invariants: an address belongs to at most one lease and an identity holds at most one lease; the
 *   gateway, network and broadcast addresses are outside the pool; a declined address is quarantined.
 * - A reservation ties an address to a MAC: only an identity with that MAC is ever given it. A reserved
 *   address may lie outside the pool (a static address beside the dynamic range).
 * - Bound leases are persisted after every change (LeaseStore: temp file + rename), so a restarted
 *   softnet, even after SIGKILL, knows every address a client may still use and never hands it to another.
 *   A disk that refuses the write degrades softnet rather than cutting every VM off: the table goes on in
 *   memory and the write is retried (StateFiles). Offers are not persisted: a client whose offer was lost
 *   simply asks again.
 * - A lease file that cannot be trusted was moved aside by the store; addresses it contested are held
 *   back like declined ones, and what it still held soundly is written again at once.
 * - Time comes in as an argument (monotonic ms, util/clock.ts), so expiry is driven by the caller's timer
 *   and a step of the wall clock changes nothing.
 */

import type { LanServer, LeaseStore, StoredLease } from './lease-store.js';

/** One lease. */
export interface Lease extends StoredLease {
  state: 'offered' | 'bound';
}

/** The pool of one network and who holds what in it. */
export class LeaseTable {
  private readonly byKey = new Map<string, Lease>();
  private readonly byIp = new Map<number, Lease>();
  private readonly declined = new Map<number, number>();
  /** Reserved addresses: ip -> MAC text, and the way back. */
  private readonly reservedIp = new Map<number, string>();
  private readonly reservedMac = new Map<string, number>();

  constructor(
    private readonly poolStart: number,
    private readonly poolEnd: number,
    private readonly store: LeaseStore | null,
    now: number,
  ) {
    const loaded = store?.load();
    if (!loaded) return;
    for (const l of loaded.leases)
      if (l.expires > now && this.inPool(l.ip)) this.put({ ...l, state: 'bound' });
    for (const [ip, until] of loaded.contested) if (until > now) this.declined.set(ip, until);
    if (loaded.setAside) this.save();
  }

  /** The lease of an identity, if any (an expired one is still returned until expire() runs). */
  get(key: string): Lease | undefined {
    return this.byKey.get(key);
  }

  /** The lease holding an address, if any. */
  holder(ip: number): Lease | undefined {
    return this.byIp.get(ip);
  }

  /** Every lease, offered and bound. */
  all(): IterableIterator<Lease> {
    return this.byKey.values();
  }

  /** Reserves `ip` for the VM with MAC `mac` (lower-case text), replacing that MAC's earlier reservation. */
  reserve(mac: string, ip: number): void {
    this.unreserve(mac);
    this.reservedIp.set(ip, mac);
    this.reservedMac.set(mac, ip);
  }

  /** Ends the reservation of `mac`, if any. */
  unreserve(mac: string): void {
    const ip = this.reservedMac.get(mac);
    if (ip === undefined) return;
    this.reservedMac.delete(mac);
    this.reservedIp.delete(ip);
  }

  /** The address reserved for `mac`, or 0. */
  reservation(mac: string): number {
    return this.reservedMac.get(mac) ?? 0;
  }

  /**
   * Whether `key` (a VM with MAC `mac`) may have `ip`: in the pool or reserved for `mac`, not reserved for
   * another MAC, not quarantined, and not held by another identity.
   */
  available(key: string, mac: string, ip: number, now: number): boolean {
    const reservedFor = this.reservedIp.get(ip);
    if (reservedFor !== undefined ? reservedFor !== mac : !this.inPool(ip)) return false;
    const q = this.declined.get(ip);
    if (q !== undefined && q > now) return false;
    const h = this.byIp.get(ip);
    return h === undefined || h.key === key || h.expires <= now;
  }

  /**
   * The address to offer `key`: its reservation if it can have it, else the one it holds, else `requested`
   * if available, else the lowest free; 0 if none.
   */
  choose(key: string, mac: string, requested: number, now: number): number {
    const reserved = this.reservation(mac);
    if (reserved !== 0 && this.available(key, mac, reserved, now)) return reserved;
    const own = this.byKey.get(key);
    if (own && own.expires > now) return own.ip;
    if (requested !== 0 && this.available(key, mac, requested, now)) return requested;
    for (let ip = this.poolStart; ip <= this.poolEnd; ip++) if (this.available(key, mac, ip, now)) return ip;
    return 0;
  }

  /** Holds `ip` for `key` until `until` after an OFFER; a bound lease of the same address stays bound. */
  offer(key: string, mac: string, ip: number, until: number): void {
    const own = this.byKey.get(key);
    if (own && own.ip === ip && own.state === 'bound') {
      // Still bound (perhaps just expired, before expire() ran): the hold must keep it for this key.
      own.expires = Math.max(own.expires, until);
      return;
    }
    const dropped = this.take(key, ip);
    this.put({ key, mac, ip, state: 'offered', expires: until });
    if (dropped) this.save();
  }

  /**
   * Binds `ip` to `key` until `until` after an ACK (a bridged VM's from `server`); returns whether this was
   * a renewal of the same binding.
   */
  bind(
    key: string,
    mac: string,
    ip: number,
    until: number,
    hostname?: string,
    server?: LanServer,
  ): 'bound' | 'renewed' {
    const own = this.byKey.get(key);
    const renewed = own !== undefined && own.ip === ip && own.state === 'bound';
    this.take(key, ip);
    this.put({ key, mac, ip, state: 'bound', expires: until, hostname, server });
    this.save();
    return renewed ? 'renewed' : 'bound';
  }

  /** Frees the lease of `key`; returns it, or undefined if it held none. */
  release(key: string): Lease | undefined {
    const own = this.byKey.get(key);
    if (!own) return undefined;
    this.remove(own);
    if (own.state === 'bound') this.save();
    return own;
  }

  /**
   * After a DECLINE (someone else answers ARP for `ip`): frees `key`'s lease of it and quarantines it until
   * `until`. Only the address `key` was offered or holds can be declined, so no VM can push another off its
   * address; returns false, changing nothing, for any other.
   */
  decline(key: string, ip: number, until: number): boolean {
    const own = this.byKey.get(key);
    if (!own || own.ip !== ip) return false;
    this.release(key);
    this.declined.set(ip, until);
    return true;
  }

  /** Removes leases and quarantines that ended by `now`; returns the bound leases that expired. */
  expire(now: number): Lease[] {
    const gone: Lease[] = [];
    for (const l of this.byKey.values()) {
      if (l.expires <= now) {
        this.remove(l);
        if (l.state === 'bound') gone.push(l);
      }
    }
    for (const [ip, until] of this.declined) if (until <= now) this.declined.delete(ip);
    if (gone.length > 0) this.save();
    return gone;
  }

  private inPool(ip: number): boolean {
    return ip >= this.poolStart && ip <= this.poolEnd;
  }

  /** Makes room for `key` to hold `ip` (drops its other lease and an expired holder); true if a bound one went. */
  private take(key: string, ip: number): boolean {
    let dropped = false;
    const own = this.byKey.get(key);
    if (own && own.ip !== ip) {
      this.remove(own);
      dropped = own.state === 'bound';
    }
    const h = this.byIp.get(ip);
    if (h && h.key !== key) {
      this.remove(h);
      dropped ||= h.state === 'bound';
    }
    return dropped;
  }

  private put(l: Lease): void {
    this.byKey.set(l.key, l);
    this.byIp.set(l.ip, l);
  }

  private remove(l: Lease): void {
    this.byKey.delete(l.key);
    if (this.byIp.get(l.ip) === l) this.byIp.delete(l.ip);
  }

  /** Writes the bound leases now; throws if permission is refused (checked once at start, see StateWriter.saveNow). */
  persist(): void {
    this.store?.saveNow(this.bound());
  }

  private save(): void {
    this.store?.save(this.bound());
  }

  private bound(): Lease[] {
    const bound: Lease[] = [];
    for (const l of this.byKey.values()) if (l.state === 'bound') bound.push(l);
    return bound;
  }
}
