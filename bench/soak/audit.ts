// No packet leaves the host for the world from an address the host does not hold at that moment: tcpdump on
// the router's end of each uplink sees every IPv4 packet the host sends there, and each packet's source is
// compared with the addresses that link had at the packet's time. The soak's faults record every address
// they add or remove (AddressBook), so the timeline is known exactly, up to the instant of the change.

import type { ChildProcess } from 'node:child_process';
import { tcpdumpListening } from '../../test/lib/tcpdump.js';
import type { Topology } from '../../test/lib/topology.js';
import { eachLine } from './probe.js';

/**
 * How far from an address change a packet may still carry the other address: the `ip` command that makes
 * the change returns a little after the kernel made it, and a packet captured on the router was sent a
 * little before. A packet outside this window with a source the link did not hold is a violation.
 */
export const CHANGE_SLACK_MS = 500;

/**
 * Each link's addresses over time ([address, held from, held until (Infinity while held)]), and the instants
 * the default route moved from one link to another.
 */
export class AddressBook {
  private readonly spans = new Map<string, Array<{ addr: string; from: number; to: number }>>();
  private readonly moves: number[] = [];

  /** `addr` is on `link` from `at` (default now). */
  add(link: string, addr: string, at = Date.now()): void {
    const list = this.spans.get(link) ?? [];
    list.push({ addr, from: at, to: Infinity });
    this.spans.set(link, list);
  }

  /** `addr` left `link` at `at` (default now). */
  remove(link: string, addr: string, at = Date.now()): void {
    for (const s of this.spans.get(link) ?? []) if (s.addr === addr && s.to === Infinity) s.to = at;
  }

  /** The default route moves now (called just before and just after the change). */
  routeMoved(at = Date.now()): void {
    this.moves.push(at);
  }

  /**
   * Where a packet from `addr` leaving on `link` at `t` stands: 'ok' when the link held the address then,
   * give or take CHANGE_SLACK_MS, or when another link did at the instant the default route moved (a packet
   * NATed just before the move may leave just after it); 'other-link' when only another of the host's links
   * held it; 'unheld' when no link of the host did.
   */
  classify(link: string, addr: string, t: number): 'ok' | 'other-link' | 'unheld' {
    const on = (l: string) =>
      (this.spans.get(l) ?? []).some(
        (s) => s.addr === addr && s.from - CHANGE_SLACK_MS <= t && t <= s.to + CHANGE_SLACK_MS,
      );
    if (on(link)) return 'ok';
    if (![...this.spans.keys()].some(on)) return 'unheld';
    return this.moves.some((m) => Math.abs(t - m) <= CHANGE_SLACK_MS) ? 'ok' : 'other-link';
  }
}

/** What the audit of one link found. */
export interface LinkAudit {
  link: string;
  packets: number;
  /** Packets whose source no link of the host held then: their number and up to 20 of their tcpdump lines. */
  violations: number;
  examples: string[];
  /**
   * Packets whose source the host held, but on another link, outside the instant the route moved (the
   * host's own stack answering late replies to the previous uplink's address, say): reported, not failed.
   */
  otherLink: number;
  otherLinkExamples: string[];
}

/** Watches the packets the host sends on `hostLink`, captured at its peer `routerIf` in `router`. */
export class SourceAudit {
  readonly result: LinkAudit;
  private child: ChildProcess | null = null;

  constructor(
    private readonly topo: Topology,
    private readonly routerIf: string,
    hostLink: string,
    private readonly book: AddressBook,
  ) {
    this.result = {
      link: hostLink,
      packets: 0,
      violations: 0,
      examples: [],
      otherLink: 0,
      otherLinkExamples: [],
    };
  }

  /** Starts tcpdump in namespace `router` and resolves once it listens. */
  async start(router: string): Promise<void> {
    // -Q in: what the router receives on this link, i.e. what the host sent; -tt: epoch seconds.
    const child = this.topo.spawn(router, 'tcpdump', [
      '-n',
      '-l',
      '-tt',
      '--immediate-mode',
      '-Q',
      'in',
      '-i',
      this.routerIf,
      'ip',
    ]);
    this.child = child;
    const ready = tcpdumpListening(child, `tcpdump on ${this.routerIf}`);
    // eachLine reads stderr away, so the listening line is watched first.
    eachLine(child, (line) => this.packet(line));
    await ready;
  }

  /** Stops tcpdump (after it flushed what it saw). */
  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const closed = new Promise((r) => c.once('close', r));
    c.kill('SIGTERM');
    await closed;
  }

  private packet(line: string): void {
    // "1700000000.123456 IP 198.51.100.2.61000 > 203.0.113.10.7007: UDP, length 12"
    const m = /^(\d+)\.(\d+) IP (\d+\.\d+\.\d+\.\d+)/.exec(line);
    if (!m) return;
    this.result.packets++;
    const t = Number(m[1]) * 1000 + Math.floor(Number(m[2]) / 1000);
    const r = this.result;
    const where = this.book.classify(r.link, m[3], t);
    if (where === 'unheld') {
      r.violations++;
      if (r.examples.length < 20) r.examples.push(line);
    } else if (where === 'other-link') {
      r.otherLink++;
      if (r.otherLinkExamples.length < 20) r.otherLinkExamples.push(line);
    }
  }
}
