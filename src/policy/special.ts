// The IANA IPv4 Special-Purpose Address Registry (RFC 6890 and its updates): what is not a global
// destination. softnet blocks these unless a rule allows them; the registry's globally reachable entries
// are allowed by a longer prefix.

import { parseCidr } from '../wire/addr.js';
import { RuleTable, Verdict } from './rules.js';

const NOT_GLOBAL = [
  '0.0.0.0/8', // this network
  '10.0.0.0/8', // private
  '100.64.0.0/10', // shared address space (CGN)
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link local, cloud metadata (169.254.169.254)
  '172.16.0.0/12', // private
  '192.0.0.0/24', // IETF protocol assignments
  '192.0.2.0/24', // documentation TEST-NET-1
  '192.88.99.0/24', // deprecated 6to4 relay anycast
  '192.168.0.0/16', // private
  '198.18.0.0/15', // benchmarking
  '198.51.100.0/24', // documentation TEST-NET-2
  '203.0.113.0/24', // documentation TEST-NET-3
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, and the limited broadcast 255.255.255.255
];

const GLOBAL_EXCEPTIONS = [
  '192.0.0.9/32', // port control protocol anycast
  '192.0.0.10/32', // traversal using relays around NAT anycast
  '192.31.196.0/24', // AS112-v4
  '192.52.193.0/24', // automatic multicast tunneling
  '192.175.48.0/24', // direct delegation AS112 service
];

/** A table that blocks every non-global destination and allows the registry's global exceptions. */
export function specialPurposeTable(): RuleTable {
  const t = new RuleTable();
  for (const c of NOT_GLOBAL) t.add(parseCidr(c)!, Verdict.BLOCK);
  for (const c of GLOBAL_EXCEPTIONS) t.add(parseCidr(c)!, Verdict.ALLOW);
  return t;
}
