// A destination rule table: CIDR prefixes with a verdict, looked up by longest prefix. Built once from the
// command line; a lookup is a few Map reads with small-integer keys, nothing allocated, no strings.

import type { Cidr } from '../wire/addr.js';
import { maskOf } from '../wire/addr.js';

export const Verdict = { NONE: 0, ALLOW: 1, BLOCK: 2 } as const;

/** Prefixes grouped by length; longest prefix wins, and on the very same prefix BLOCK wins. */
export class RuleTable {
  /** Prefix lengths present, longest first, with their masks and a map from `network | 0` to verdict. */
  private lengths: number[] = [];
  private masks: number[] = [];
  private tables: Array<Map<number, number>> = [];

  /** Adds a rule; a second rule for the same prefix keeps BLOCK if either is BLOCK. */
  add(cidr: Cidr, verdict: number): void {
    let i = this.lengths.indexOf(cidr.prefix);
    if (i < 0) {
      this.lengths.push(cidr.prefix);
      const order = this.lengths.map((len, j) => [len, j]).sort((a, b) => b[0] - a[0]);
      const tables = this.tables;
      this.lengths = order.map(([len]) => len);
      this.tables = order.map(([, j]) => tables[j] ?? new Map());
      this.masks = this.lengths.map(maskOf);
      i = this.lengths.indexOf(cidr.prefix);
    }
    const key = (cidr.addr & this.masks[i]) | 0;
    const table = this.tables[i];
    table.set(key, table.get(key) === Verdict.BLOCK ? Verdict.BLOCK : verdict);
  }

  /** The verdict of the longest prefix holding `addr`, or Verdict.NONE. */
  lookup(addr: number): number {
    const lengths = this.lengths.length;
    for (let i = 0; i < lengths; i++) {
      const v = this.tables[i].get((addr & this.masks[i]) | 0);
      if (v !== undefined) return v;
    }
    return Verdict.NONE;
  }
}
