// The user's --allow and --block rules: one list per flag, each entry an IPv4 CIDR, an IPv6 CIDR or `@host`
// (the gateway, in both families). Checking a rule's text and building the rule tables from checked rules.

import {
  type Cidr,
  type Cidr6,
  formatIpv4,
  formatIpv6,
  parseCidr,
  parseCidr6,
  parseIpv6,
} from '../wire/addr.js';
import { RuleTable, Verdict } from './rules.js';
import { RuleTable6 } from './rules6.js';

/** The gateway's link-local address on every VM's link. */
const LINK_LOCAL_GATEWAY = parseIpv6('fe80::1')!;

/** A rule as text in its canonical form (host bits kept, as given), or null when it is not a rule. */
export function canonicalRule(text: string): string | null {
  if (text === '@host') return text;
  const c4 = parseCidr(text);
  if (c4) return `${formatIpv4(c4.addr)}/${c4.prefix}`;
  const c6 = parseCidr6(text);
  return c6 ? `${formatIpv6(c6.addr)}/${c6.prefix}` : null;
}

/** The user's rules as one table per family. */
export interface UserRules {
  v4: RuleTable;
  v6: RuleTable6;
}

/**
 * Builds the tables of checked rules (see canonicalRule). `@host` is `gateway4`/32, fe80::1/128 and
 * `gateway6`/128 when the network has IPv6 (null: it has none).
 */
export function buildRules(
  allow: readonly string[],
  block: readonly string[],
  gateway4: number,
  gateway6: ArrayLike<number> | null,
): UserRules {
  const rules: UserRules = { v4: new RuleTable(), v6: new RuleTable6() };
  const add = (text: string, verdict: number) => {
    if (text === '@host') {
      rules.v4.add(host4(gateway4), verdict);
      rules.v6.add(host6(LINK_LOCAL_GATEWAY), verdict);
      if (gateway6) rules.v6.add(host6(gateway6), verdict);
      return;
    }
    const c4 = parseCidr(text);
    if (c4) return rules.v4.add(c4, verdict);
    const c6 = parseCidr6(text);
    if (!c6) throw new Error(`unchecked destination rule '${text}'`);
    rules.v6.add(c6, verdict);
  };
  for (const r of allow) add(r, Verdict.ALLOW);
  for (const r of block) add(r, Verdict.BLOCK);
  return rules;
}

function host4(addr: number): Cidr {
  return { addr, prefix: 32, mask: 0xffffffff };
}

function host6(words: ArrayLike<number>): Cidr6 {
  return { addr: Uint32Array.from({ length: 4 }, (_, i) => words[i] >>> 0), prefix: 128 };
}
