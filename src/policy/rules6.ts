// An IPv6 destination rule table: prefixes with a verdict, looked up by longest prefix. Built once from the
// command line. A lookup scans the prefixes longest first and compares masked words: a rule set is tens of
// entries (the special-purpose defaults are 13), a scan costs about 5 ns an entry (64 entries that all
// miss: 0.3 us), the verdict cache in front of it makes the common case one probe, and nothing is
// allocated: no strings, no BigInt, only typed-array reads.

import type { Cidr6 } from '../wire/addr.js';
import { maskWord6 } from '../wire/addr.js';
import { Verdict } from './rules.js';

/** IPv6 prefixes; longest prefix wins, and on the very same prefix BLOCK wins. */
export class RuleTable6 {
  /** Per entry, longest prefix first: four mask words and four network words (masked), signed. */
  private masks: Int32Array = new Int32Array(0);
  private nets: Int32Array = new Int32Array(0);
  private verdicts: Uint8Array = new Uint8Array(0);
  private prefixes: number[] = [];

  /** Adds a rule; a second rule for the same prefix keeps BLOCK if either is BLOCK. */
  add(cidr: Cidr6, verdict: number): void {
    const mask = [0, 1, 2, 3].map((i) => maskWord6(cidr.prefix, i) | 0);
    const net = mask.map((m, i) => cidr.addr[i] & m);
    const n = this.prefixes.length;
    for (let e = 0; e < n; e++) {
      if (this.prefixes[e] !== cidr.prefix) continue;
      if (net.every((w, i) => this.nets[4 * e + i] === w)) {
        if (verdict === Verdict.BLOCK) this.verdicts[e] = Verdict.BLOCK;
        return;
      }
    }
    // Insert after every entry at least as long: the scan then meets the longest match first.
    let at = 0;
    while (at < n && this.prefixes[at] >= cidr.prefix) at++;
    this.prefixes.splice(at, 0, cidr.prefix);
    this.masks = spliced(this.masks, at, mask);
    this.nets = spliced(this.nets, at, net);
    const verdicts = new Uint8Array(n + 1);
    verdicts.set(this.verdicts.subarray(0, at));
    verdicts[at] = verdict;
    verdicts.set(this.verdicts.subarray(at), at + 1);
    this.verdicts = verdicts;
  }

  /** The verdict of the longest prefix holding w0..w3 (signed or unsigned words), or Verdict.NONE. */
  lookup(w0: number, w1: number, w2: number, w3: number): number {
    const masks = this.masks;
    const nets = this.nets;
    const n = this.verdicts.length;
    for (let e = 0, j = 0; e < n; e++, j += 4) {
      if (
        (w0 & masks[j]) === nets[j] &&
        (w1 & masks[j + 1]) === nets[j + 1] &&
        (w2 & masks[j + 2]) === nets[j + 2] &&
        (w3 & masks[j + 3]) === nets[j + 3]
      )
        return this.verdicts[e];
    }
    return Verdict.NONE;
  }

  /** How many distinct prefixes the table holds. */
  get size(): number {
    return this.prefixes.length;
  }
}

/** A copy of `words` (four per entry) with `entry` inserted as entry `at`. */
function spliced(words: Int32Array, at: number, entry: number[]): Int32Array {
  const out = new Int32Array(words.length + 4);
  out.set(words.subarray(0, 4 * at));
  out.set(entry, 4 * at);
  out.set(words.subarray(4 * at), 4 * at + 4);
  return out;
}
