// Destination policy: the rule table (longest prefix wins, block wins a tie), Softnet's semantics for
// --allow/--block, the special-purpose defaults, and random rule sets against a naive reference.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DestinationPolicy } from '../../src/policy/destinations.js';
import { RuleTable, Verdict } from '../../src/policy/rules.js';
import { specialPurposeTable } from '../../src/policy/special.js';
import { type Cidr, formatIpv4, maskOf, parseCidr, parseIpv4 } from '../../src/wire/addr.js';
import { prng } from '../lib/prng.js';

const ip = (s: string) => {
  const a = parseIpv4(s);
  assert.notEqual(a, null, s);
  return a!;
};
const cidr = (s: string) => {
  const c = parseCidr(s);
  assert.notEqual(c, null, s);
  return c!;
};

/** A table from `--allow`/`--block` lists, added in the order given. */
function table(rules: Array<['allow' | 'block', string]>): RuleTable {
  const t = new RuleTable();
  for (const [v, c] of rules) t.add(cidr(c), v === 'allow' ? Verdict.ALLOW : Verdict.BLOCK);
  return t;
}

const GATEWAY = ip('192.168.64.1');

/** Whether the policy allows `s`, asked both ways the hot path may pass an address (unsigned and `| 0`). */
function allows(p: DestinationPolicy, s: string): boolean {
  const a = ip(s);
  const unsigned = p.allows(a);
  assert.equal(p.allows(a | 0), unsigned, `${s}: signed and unsigned lookups disagree`);
  return unsigned;
}

describe('RuleTable', () => {
  test('an empty table has no verdict', () => {
    const t = new RuleTable();
    assert.equal(t.lookup(ip('1.2.3.4')), Verdict.NONE);
    assert.equal(t.lookup(0), Verdict.NONE);
    assert.equal(t.lookup(0xffffffff), Verdict.NONE);
  });

  test('the longest prefix wins, whatever the order rules were added in', () => {
    const rules: Array<['allow' | 'block', string]> = [
      ['block', '10.0.0.0/8'],
      ['allow', '10.1.0.0/16'],
      ['block', '10.1.2.0/24'],
      ['allow', '10.1.2.3/32'],
    ];
    for (const order of [rules, [...rules].reverse(), [rules[2], rules[0], rules[3], rules[1]]]) {
      const t = table(order);
      assert.equal(t.lookup(ip('10.9.9.9')), Verdict.BLOCK);
      assert.equal(t.lookup(ip('10.1.9.9')), Verdict.ALLOW);
      assert.equal(t.lookup(ip('10.1.2.4')), Verdict.BLOCK);
      assert.equal(t.lookup(ip('10.1.2.3')), Verdict.ALLOW);
      assert.equal(t.lookup(ip('11.0.0.0')), Verdict.NONE);
      assert.equal(t.lookup(ip('9.255.255.255')), Verdict.NONE);
    }
  });

  test('on the identical prefix BLOCK wins, in either insertion order', () => {
    for (const rules of [
      [
        ['allow', '10.0.0.0/8'],
        ['block', '10.0.0.0/8'],
      ],
      [
        ['block', '10.0.0.0/8'],
        ['allow', '10.0.0.0/8'],
      ],
      [
        ['allow', '0.0.0.0/0'],
        ['block', '0.0.0.0/0'],
        ['allow', '0.0.0.0/0'],
      ],
    ] as Array<Array<['allow' | 'block', string]>>) {
      const t = table(rules);
      assert.equal(t.lookup(ip(rules[0][1].split('/')[0])), Verdict.BLOCK, JSON.stringify(rules));
    }
  });

  test('a prefix written with host bits set is the same prefix (10.1.2.3/8 is 10.0.0.0/8)', () => {
    const t = table([
      ['allow', '10.0.0.0/8'],
      ['block', '10.1.2.3/8'],
    ]);
    assert.equal(t.lookup(ip('10.200.0.1')), Verdict.BLOCK);
  });

  test('/0 matches every address and /32 exactly one, addresses above 2^31 included', () => {
    const t = table([
      ['allow', '0.0.0.0/0'],
      ['block', '255.255.255.255/32'],
      ['block', '128.0.0.0/32'],
    ]);
    assert.equal(t.lookup(0), Verdict.ALLOW);
    assert.equal(t.lookup(ip('255.255.255.254')), Verdict.ALLOW);
    assert.equal(t.lookup(ip('255.255.255.255')), Verdict.BLOCK);
    assert.equal(t.lookup(ip('255.255.255.255') | 0), Verdict.BLOCK);
    assert.equal(t.lookup(ip('128.0.0.0')), Verdict.BLOCK);
    assert.equal(t.lookup(ip('128.0.0.0') | 0), Verdict.BLOCK);
    assert.equal(t.lookup(ip('128.0.0.1')), Verdict.ALLOW);
  });
});

describe("Softnet's semantics (cirruslabs/softnet)", () => {
  test('--allow 0.0.0.0/0 allows everything, private ranges and link-local included', () => {
    const p = new DestinationPolicy(table([['allow', '0.0.0.0/0']]), GATEWAY);
    p.addHostAddress(ip('10.0.0.5'));
    for (const a of [
      '1.1.1.1',
      '10.0.0.1',
      '10.0.0.5',
      '172.16.0.1',
      '192.168.1.1',
      '169.254.169.254',
      '100.64.0.1',
      '127.0.0.1',
      '224.0.0.1',
      '255.255.255.255',
      '192.168.64.1',
    ]) {
      assert.equal(allows(p, a), true, a);
    }
  });

  test('--block 0.0.0.0/0 --allow <gateway>/32 leaves only the gateway', () => {
    for (const rules of [
      [
        ['block', '0.0.0.0/0'],
        ['allow', '192.168.64.1/32'],
      ],
      [
        ['allow', '192.168.64.1/32'],
        ['block', '0.0.0.0/0'],
      ],
    ] as Array<Array<['allow' | 'block', string]>>) {
      const p = new DestinationPolicy(table(rules), GATEWAY);
      assert.equal(allows(p, '192.168.64.1'), true);
      for (const a of ['1.1.1.1', '8.8.8.8', '192.168.64.2', '192.168.64.0', '10.0.0.1', '192.0.0.9']) {
        assert.equal(allows(p, a), false, a);
      }
    }
  });

  test('--allow 10.0.0.0/8 opens exactly that, and not 172.16/12 or 192.168/16', () => {
    const p = new DestinationPolicy(table([['allow', '10.0.0.0/8']]), GATEWAY);
    for (const a of ['10.0.0.0', '10.0.0.1', '10.1.2.3', '10.255.255.255'])
      assert.equal(allows(p, a), true, a);
    for (const a of ['9.255.255.255', '11.0.0.0']) assert.equal(allows(p, a), true, `${a} is global`);
    for (const a of ['172.16.0.1', '172.31.255.254', '192.168.0.1', '192.168.1.1', '169.254.169.254']) {
      assert.equal(allows(p, a), false, a);
    }
  });
});

describe('DestinationPolicy defaults (no user rules)', () => {
  const p = new DestinationPolicy(new RuleTable(), GATEWAY);

  test('global unicast is allowed', () => {
    for (const a of ['1.1.1.1', '8.8.8.8', '93.184.216.34', '9.255.255.255', '11.0.0.0', '223.255.255.254']) {
      assert.equal(allows(p, a), true, a);
    }
    // Just outside the special ranges.
    for (const a of ['172.15.255.255', '172.32.0.0', '100.63.255.255', '100.128.0.0', '169.253.255.255']) {
      assert.equal(allows(p, a), true, a);
    }
    for (const a of ['192.167.255.255', '192.169.0.0', '198.17.255.255', '198.20.0.0', '192.0.1.0']) {
      assert.equal(allows(p, a), true, a);
    }
  });

  test('private, shared, loopback, link-local, multicast, reserved and broadcast are blocked', () => {
    for (const a of [
      '10.0.0.0',
      '10.1.2.3',
      '10.255.255.255',
      '172.16.0.0',
      '172.20.1.1',
      '172.31.255.255',
      '192.168.0.0',
      '192.168.64.2',
      '192.168.255.255',
      '100.64.0.0',
      '100.127.255.255',
      '127.0.0.1',
      '127.255.255.255',
      '169.254.0.1',
      '169.254.169.254',
      '169.254.255.255',
      '224.0.0.1',
      '239.255.255.250',
      '233.252.0.1',
      '240.0.0.1',
      '254.1.2.3',
      '255.255.255.254',
      '255.255.255.255',
      '0.0.0.0',
      '0.1.2.3',
      '0.255.255.255',
    ]) {
      assert.equal(allows(p, a), false, a);
    }
  });

  test('the documentation, benchmarking, 6to4 relay and IETF protocol ranges are blocked', () => {
    for (const a of [
      '192.0.2.1',
      '198.51.100.1',
      '203.0.113.1',
      '198.18.0.1',
      '198.19.255.255',
      '192.88.99.1',
      '192.0.0.0',
      '192.0.0.8',
      '192.0.0.11',
      '192.0.0.170',
      '192.0.0.255',
    ]) {
      assert.equal(allows(p, a), false, a);
    }
  });

  test("the registry's globally reachable exceptions are allowed", () => {
    for (const a of [
      '192.0.0.9',
      '192.0.0.10',
      '192.31.196.0',
      '192.31.196.1',
      '192.31.196.255',
      '192.52.193.1',
      '192.52.193.255',
      '192.175.48.0',
      '192.175.48.6',
      '192.175.48.255',
    ]) {
      assert.equal(allows(p, a), true, a);
    }
  });

  test('the gateway is allowed without any rule, though it lies in 192.168/16', () => {
    assert.equal(allows(p, '192.168.64.1'), true);
    assert.equal(allows(p, '192.168.64.3'), false);
  });

  test('a host address is blocked, even a global one, unless a user rule allows it', () => {
    const q = new DestinationPolicy(new RuleTable(), GATEWAY);
    q.addHostAddress(ip('203.0.113.7'));
    q.addHostAddress(ip('93.184.216.34'));
    q.addHostAddress(ip('10.0.0.5'));
    assert.equal(allows(q, '93.184.216.34'), false);
    assert.equal(allows(q, '93.184.216.35'), true);
    assert.equal(allows(q, '10.0.0.5'), false);
    const r = new DestinationPolicy(
      table([
        ['allow', '93.184.216.34/32'],
        ['allow', '10.0.0.0/8'],
      ]),
      GATEWAY,
    );
    r.addHostAddress(ip('93.184.216.34'));
    r.addHostAddress(ip('10.0.0.5'));
    assert.equal(allows(r, '93.184.216.34'), true);
    assert.equal(allows(r, '10.0.0.5'), true);
  });

  test('a user block overrides a default allow, and a user allow a default block', () => {
    const q = new DestinationPolicy(
      table([
        ['block', '8.8.8.8/32'],
        ['allow', '169.254.169.254/32'],
        ['block', '192.168.64.1/32'],
      ]),
      GATEWAY,
    );
    assert.equal(allows(q, '8.8.8.8'), false);
    assert.equal(allows(q, '8.8.4.4'), true);
    assert.equal(allows(q, '169.254.169.254'), true);
    assert.equal(allows(q, '169.254.169.253'), false);
    assert.equal(allows(q, '192.168.64.1'), false);
  });

  test('reject mode is off unless asked for', () => {
    assert.equal(p.reject, false);
    assert.equal(new DestinationPolicy(new RuleTable(), GATEWAY, true).reject, true);
  });
});

// ---- Random rule sets against a naive reference ----

interface Rule {
  net: number;
  prefix: number;
  verdict: number;
}

/** The reference: a linear scan, the longest matching prefix, BLOCK if any rule of that length blocks. */
function naiveLookup(rules: Rule[], addr: number): number {
  let best = -1;
  let verdict: number = Verdict.NONE;
  for (const r of rules) {
    const mask = maskOf(r.prefix);
    if ((addr & mask) >>> 0 !== (r.net & mask) >>> 0) continue;
    if (r.prefix > best) {
      best = r.prefix;
      verdict = r.verdict;
    } else if (r.prefix === best && r.verdict === Verdict.BLOCK) {
      verdict = Verdict.BLOCK;
    }
  }
  return verdict;
}

/** The registry, written out again as (first, last) ranges for the reference policy. */
const NOT_GLOBAL = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.2.0/24',
  '192.88.99.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/4',
  '240.0.0.0/4',
];
const GLOBAL = ['192.0.0.9/32', '192.0.0.10/32', '192.31.196.0/24', '192.52.193.0/24', '192.175.48.0/24'];

function range(c: Cidr): [number, number] {
  const first = (c.addr & c.mask) >>> 0;
  return [first, (first | ~c.mask) >>> 0];
}
const inRanges = (ranges: Array<[number, number]>, a: number) => ranges.some(([f, l]) => a >= f && a <= l);
const NOT_GLOBAL_RANGES = NOT_GLOBAL.map((s) => range(cidr(s)));
const GLOBAL_RANGES = GLOBAL.map((s) => range(cidr(s)));

function naiveAllows(rules: Rule[], gateway: number, hosts: number[], addr: number): boolean {
  const v = naiveLookup(rules, addr);
  if (v !== Verdict.NONE) return v === Verdict.ALLOW;
  if (addr === gateway) return true;
  if (hosts.includes(addr)) return false;
  if (inRanges(GLOBAL_RANGES, addr)) return true;
  return !inRanges(NOT_GLOBAL_RANGES, addr);
}

/** A random rule set whose prefixes share a few bases, so rules nest and collide. */
function randomRules(rand: () => number): Rule[] {
  const bases = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => Math.floor(rand() * 2 ** 32));
  const n = Math.floor(rand() * 40);
  const rules: Rule[] = [];
  for (let i = 0; i < n; i++) {
    const base = bases[Math.floor(rand() * bases.length)];
    const prefix = rand() < 0.1 ? Math.floor(rand() * 4) : Math.floor(rand() * 33);
    // Flip a few bits below the prefix and, sometimes, one inside it.
    let net = rand() < 0.7 ? base : (base ^ Math.floor(rand() * 2 ** 32)) >>> 0;
    if (rand() < 0.3 && prefix > 0) net = (net ^ (1 << (32 - 1 - Math.floor(rand() * prefix)))) >>> 0;
    rules.push({ net, prefix, verdict: rand() < 0.5 ? Verdict.ALLOW : Verdict.BLOCK });
  }
  // Some rules twice with the other verdict: the tie rule.
  for (let i = 0; i < n / 4; i++) {
    const r = rules[Math.floor(rand() * rules.length)];
    rules.push({ ...r, verdict: r.verdict === Verdict.ALLOW ? Verdict.BLOCK : Verdict.ALLOW });
  }
  return rules;
}

/** An address near the rules: a rule's network with some low bits changed, or anything at all. */
function randomAddr(rand: () => number, rules: Rule[], specials: number[]): number {
  const r = rand();
  if (r < 0.2 || rules.length === 0) return Math.floor(rand() * 2 ** 32);
  if (r < 0.35) return specials[Math.floor(rand() * specials.length)];
  const rule = rules[Math.floor(rand() * rules.length)];
  const low = Math.floor(rand() * 33);
  const flip = low === 0 ? 0 : Math.floor(rand() * 2 ** low);
  return (rule.net ^ flip) >>> 0;
}

function toTable(rules: Rule[]): RuleTable {
  const t = new RuleTable();
  for (const r of rules) t.add({ addr: r.net, prefix: r.prefix, mask: maskOf(r.prefix) }, r.verdict);
  return t;
}

test('RuleTable.lookup agrees with a linear scan for 300 random rule sets x 300 addresses (seed 4632)', () => {
  const rand = prng(4632);
  let matched = 0;
  for (let n = 0; n < 300; n++) {
    const rules = randomRules(rand);
    const t = toTable(rules);
    for (let i = 0; i < 300; i++) {
      const a = randomAddr(rand, rules, []);
      const want = naiveLookup(rules, a);
      if (want !== Verdict.NONE) matched++;
      const why = `${formatIpv4(a)} in ${JSON.stringify(rules.map((r) => [formatIpv4(r.net), r.prefix, r.verdict]))}`;
      assert.equal(t.lookup(a), want, why);
      assert.equal(t.lookup(a | 0), want, why);
    }
  }
  assert.ok(matched > 20000, `only ${matched} lookups hit a rule`);
});

test('DestinationPolicy.allows agrees with a reference policy for random rules, hosts and addresses (seed 6890)', () => {
  const rand = prng(6890);
  // Edges of every special range, and a few inside, so the defaults are exercised as much as the rules.
  const specials: number[] = [];
  for (const [f, l] of [...NOT_GLOBAL_RANGES, ...GLOBAL_RANGES]) {
    specials.push(f, l, (f - 1) >>> 0, (l + 1) >>> 0, f + Math.floor((l - f) / 2));
  }
  for (let n = 0; n < 300; n++) {
    const rules = randomRules(rand);
    const gateway = rand() < 0.5 ? GATEWAY : randomAddr(rand, rules, specials);
    const hosts = Array.from({ length: Math.floor(rand() * 4) }, () => randomAddr(rand, rules, specials));
    const p = new DestinationPolicy(toTable(rules), gateway);
    for (const h of hosts) p.addHostAddress(h);
    for (let i = 0; i < 300; i++) {
      const r = rand();
      const a =
        r < 0.05 ? gateway : r < 0.1 && hosts.length > 0 ? hosts[0] : randomAddr(rand, rules, specials);
      const want = naiveAllows(rules, gateway, hosts, a);
      assert.equal(p.allows(a), want, formatIpv4(a));
      assert.equal(p.allows(a | 0), want, formatIpv4(a));
    }
  }
});

test('specialPurposeTable blocks exactly the registry minus its global entries (edges of every range)', () => {
  const t = specialPurposeTable();
  for (const [f, l] of NOT_GLOBAL_RANGES) {
    for (const a of [f, l, f + 1, l - 1, (f - 1) >>> 0, (l + 1) >>> 0]) {
      if (a < 0 || a > 0xffffffff) continue;
      const blocked = inRanges(NOT_GLOBAL_RANGES, a) && !inRanges(GLOBAL_RANGES, a);
      assert.equal(t.lookup(a) === Verdict.BLOCK, blocked, formatIpv4(a));
    }
  }
  for (const [f, l] of GLOBAL_RANGES) {
    assert.equal(t.lookup(f), Verdict.ALLOW, formatIpv4(f));
    assert.equal(t.lookup(l), Verdict.ALLOW, formatIpv4(l));
  }
  assert.equal(t.lookup(ip('8.8.8.8')), Verdict.NONE);
});

test('DestinationPolicy: a host address added after a verdict was cached is blocked at once', () => {
  const policy = new DestinationPolicy(new RuleTable(), ip('192.168.64.1'));
  // Asked twice: the second answer is the cached one (the random test above asks every address twice).
  assert.equal(policy.allows(ip('1.1.1.1') | 0), true);
  assert.equal(policy.allows(ip('1.1.1.1') | 0), true);
  policy.addHostAddress(ip('1.1.1.1'));
  assert.equal(policy.allows(ip('1.1.1.1') | 0), false, 'the cached verdict went with the new host address');
});
