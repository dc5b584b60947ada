// The IANA IPv6 Special-Purpose Address Registry (RFC 6890 and its updates; the registry as updated
// 2025-10-09, https://www.iana.org/assignments/iana-ipv6-special-registry/): what is not a global
// destination. softnet blocks these unless a rule allows them; the registry's globally reachable entries
// are allowed by a longer prefix.
//
// Only 2000::/3 is global unicast (RFC 4291 section 2.4, the IANA IPv6 address space registry), so
// everything else is blocked by one rule: that covers the registry's entries outside it, ::/128
// (unspecified), ::1/128 (loopback), ::ffff:0:0/96 (IPv4-mapped), 64:ff9b::/96 and 64:ff9b:1::/48 (NAT64),
// 100::/64 (discard-only), 100:0:0:1::/64 (dummy prefix), 5f00::/16 (SRv6 SIDs), fc00::/7 (unique local),
// fe80::/10 (link-local), as well as multicast (ff00::/8), the deprecated site-local fec0::/10 and all
// unassigned space. The registry marks 64:ff9b::/96 globally reachable, but traffic to it is softnet's own
// NAT64, to be judged by the IPv4 address it embeds (DestinationPolicy.allows), not as an IPv6 destination.

import { parseCidr6 } from '../wire/addr.js';
import { Verdict } from './rules.js';
import { RuleTable6 } from './rules6.js';

const NOT_GLOBAL = [
  '::/0', // outside 2000::/3, the longer prefix below: not global unicast
  '2001::/23', // IETF protocol assignments: Teredo 2001::/32, benchmarking 2001:2::/48, ORCHID 2001:10::/28
  '2001:db8::/32', // documentation
  '2002::/16', // 6to4
  '3fff::/20', // documentation
];

const GLOBAL = [
  '2000::/3', // global unicast
  '2001:1::1/128', // port control protocol anycast
  '2001:1::2/128', // traversal using relays around NAT anycast
  '2001:1::3/128', // DNS-SD service registration protocol anycast
  '2001:3::/32', // automatic multicast tunneling
  '2001:4:112::/48', // AS112-v6
  '2001:20::/28', // ORCHIDv2
  '2001:30::/28', // drone remote ID entity tags
];

/** A table that blocks every non-global IPv6 destination and allows the registry's global entries. */
export function specialPurposeTable6(): RuleTable6 {
  const t = new RuleTable6();
  for (const c of NOT_GLOBAL) t.add(parseCidr6(c)!, Verdict.BLOCK);
  for (const c of GLOBAL) t.add(parseCidr6(c)!, Verdict.ALLOW);
  return t;
}
