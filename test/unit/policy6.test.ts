// IPv6 destination policy: the v6 rule table (longest prefix wins, block wins a tie), --allow/--block with
// IPv6 CIDRs and @host in both families, the IANA special-purpose defaults, the gateway and host addresses,
// allowsVm6/allowsOnLan6, random rule sets against a BigInt reference, and no allocation in allows6.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { checkVmSpec } from '../../src/engine/vm-spec.js';
import { FieldError } from '../../src/net/network-spec.js';
import { DestinationPolicy } from '../../src/policy/destinations.js';
import { RuleTable, Verdict } from '../../src/policy/rules.js';
import { RuleTable6 } from '../../src/policy/rules6.js';
import { specialPurposeTable6 } from '../../src/policy/special6.js';
import { buildRules, canonicalRule } from '../../src/policy/user-rules.js';
import { type Cidr6, formatIpv6, parseCidr6, parseIpv4, parseIpv6 } from '../../src/wire/addr.js';
import { prng } from '../lib/prng.js';

const ip6 = (s: string) => {
  const w = parseIpv6(s);
  assert.notEqual(w, null, s);
  return w!;
};
const cidr6 = (s: string) => {
  const c = parseCidr6(s);
  assert.notEqual(c, null, s);
  return c!;
};

/** A table from `--allow`/`--block` lists, added in the order given. */
function table6(rules: Array<['allow' | 'block', string]>): RuleTable6 {
  const t = new RuleTable6();
  for (const [v, c] of rules) t.add(cidr6(c), v === 'allow' ? Verdict.ALLOW : Verdict.BLOCK);
  return t;
}

/** The table's verdict for `s`, asked both with unsigned words and with `| 0` words as the hot path has. */
function lookup(t: RuleTable6, s: string): number {
  const w = ip6(s);
  const v = t.lookup(w[0], w[1], w[2], w[3]);
  assert.equal(t.lookup(w[0] | 0, w[1] | 0, w[2] | 0, w[3] | 0), v, `${s}: signed and unsigned disagree`);
  return v;
}

/** Whether the policy allows `s`, asked unsigned and signed, then again (the cached verdict). */
function allows6(p: DestinationPolicy, s: string): boolean {
  const w = ip6(s);
  const v = p.allows6(w[0], w[1], w[2], w[3]);
  assert.equal(p.allows6(w[0] | 0, w[1] | 0, w[2] | 0, w[3] | 0), v, `${s}: signed and unsigned disagree`);
  return v;
}

const GATEWAY4 = parseIpv4('192.168.64.1')!;
const ULA_GATEWAY = 'fd12:3456:789a::1';

/** A policy as the engine builds it: user rules in both families, the IPv6 gateway named. */
function policy(allow: string[] = [], block: string[] = []): DestinationPolicy {
  const rules = buildRules(allow, block, GATEWAY4, ip6(ULA_GATEWAY));
  const p = new DestinationPolicy(rules.v4, GATEWAY4, false, rules.v6);
  p.setGateway6(ip6(ULA_GATEWAY));
  return p;
}

describe('RuleTable6', () => {
  test('an empty table has no verdict', () => {
    const t = new RuleTable6();
    for (const s of ['::', '2001:db8::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'])
      assert.equal(lookup(t, s), Verdict.NONE, s);
  });

  test('the longest prefix wins, whatever the order rules were added in', () => {
    const rules: Array<['allow' | 'block', string]> = [
      ['block', '2001:db8::/32'],
      ['allow', '2001:db8:1::/48'],
      ['block', '2001:db8:1:2::/64'],
      ['allow', '2001:db8:1:2::3/128'],
      ['block', '2001:db8:1:2:8000::/65'],
    ];
    for (const order of [rules, [...rules].reverse(), [rules[2], rules[4], rules[0], rules[3], rules[1]]]) {
      const t = table6(order);
      assert.equal(lookup(t, '2001:db8:9::1'), Verdict.BLOCK);
      assert.equal(lookup(t, '2001:db8:1:9::1'), Verdict.ALLOW);
      assert.equal(lookup(t, '2001:db8:1:2::4'), Verdict.BLOCK);
      assert.equal(lookup(t, '2001:db8:1:2::3'), Verdict.ALLOW);
      assert.equal(lookup(t, '2001:db8:1:2:8000::3'), Verdict.BLOCK);
      assert.equal(lookup(t, '2001:db9::'), Verdict.NONE);
      assert.equal(lookup(t, '2001:db7:ffff:ffff:ffff:ffff:ffff:ffff'), Verdict.NONE);
    }
  });

  test('on the identical prefix BLOCK wins, in either order, host bits or not', () => {
    for (const rules of [
      [
        ['allow', '2001:db8::/32'],
        ['block', '2001:db8::/32'],
      ],
      [
        ['block', '2001:db8::/32'],
        ['allow', '2001:db8::/32'],
      ],
      [
        ['allow', '2001:db8::/32'],
        ['block', '2001:db8:ffff::1/32'],
      ],
      [
        ['allow', '::/0'],
        ['block', '::/0'],
        ['allow', '::/0'],
      ],
    ] as Array<Array<['allow' | 'block', string]>>) {
      const t = table6(rules);
      assert.equal(t.size, 1, JSON.stringify(rules));
      assert.equal(lookup(t, rules[0][1].split('/')[0]), Verdict.BLOCK, JSON.stringify(rules));
    }
  });

  test('/0 matches every address and /128 exactly one, words above 2^31 included', () => {
    const t = table6([
      ['allow', '::/0'],
      ['block', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128'],
      ['block', '8000::/128'],
    ]);
    assert.equal(lookup(t, '::'), Verdict.ALLOW);
    assert.equal(lookup(t, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe'), Verdict.ALLOW);
    assert.equal(lookup(t, 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), Verdict.BLOCK);
    assert.equal(lookup(t, '8000::'), Verdict.BLOCK);
    assert.equal(lookup(t, '8000::1'), Verdict.ALLOW);
  });
});

describe('--allow/--block with IPv6 CIDRs and @host', () => {
  test('canonicalRule takes IPv4 and IPv6 CIDRs and @host, and nothing else', () => {
    assert.equal(canonicalRule('10.0.0.0/8'), '10.0.0.0/8');
    assert.equal(canonicalRule('10.1.2.3'), '10.1.2.3/32');
    assert.equal(canonicalRule('@host'), '@host');
    assert.equal(canonicalRule('2001:DB8:0:0::/32'), '2001:db8::/32');
    assert.equal(canonicalRule('2001:db8::1'), '2001:db8::1/128');
    assert.equal(canonicalRule('::/0'), '::/0');
    assert.equal(canonicalRule('::ffff:10.0.0.0/104'), '::ffff:10.0.0.0/104');
    for (const bad of [
      '',
      '@gateway',
      '10.0.0.0/33',
      '2001:db8::/129',
      'fe80::1%eth0/64',
      '2001:db8::/',
      'host',
    ])
      assert.equal(canonicalRule(bad), null, bad);
  });

  test('checkVmSpec takes one list per flag of both families, and names the field of a bad entry', () => {
    const vm = checkVmSpec({
      mac: '52:54:00:00:00:01',
      allow: '10.0.0.0/8,2001:DB8:2::/64,@host',
      block: ['::/0', '0.0.0.0/0'],
    });
    assert.deepEqual(vm.allow, ['10.0.0.0/8', '2001:db8:2::/64', '@host']);
    assert.deepEqual(vm.block, ['::/0', '0.0.0.0/0']);
    for (const field of ['allow', 'block']) {
      for (const bad of ['2001:db8::/129', 'fe80::1%eth0', '10.0.0.0/33', '@gateway']) {
        assert.throws(
          () => checkVmSpec({ mac: '52:54:00:00:00:01', [field]: ['::/0', bad] }),
          (e: unknown) =>
            e instanceof FieldError &&
            e.field === field &&
            e.message === `'${bad}' is not an IPv4 CIDR, an IPv6 CIDR or @host`,
          `${field} ${bad}`,
        );
      }
    }
  });

  test('buildRules puts each family in its own table; longest prefix wins within a family', () => {
    const r = buildRules(['10.0.0.0/8', '2001:db8::/32'], ['10.1.0.0/16', '2001:db8:1::/48'], GATEWAY4, null);
    assert.equal(r.v4.lookup(parseIpv4('10.2.0.1')!), Verdict.ALLOW);
    assert.equal(r.v4.lookup(parseIpv4('10.1.0.1')!), Verdict.BLOCK);
    assert.equal(lookup(r.v6, '2001:db8:2::1'), Verdict.ALLOW);
    assert.equal(lookup(r.v6, '2001:db8:1::1'), Verdict.BLOCK);
    // An IPv4-mapped rule is an IPv6 rule: it says nothing of the IPv4 address.
    const mapped = buildRules(['::ffff:0:0/96'], [], GATEWAY4, null);
    assert.equal(mapped.v4.lookup(parseIpv4('10.0.0.1')!), Verdict.NONE);
    assert.equal(lookup(mapped.v6, '::ffff:10.0.0.1'), Verdict.ALLOW);
  });

  test('@host is the gateway in both families: its IPv4 address, fe80::1 and the ULA gateway', () => {
    const r = buildRules([], ['@host'], GATEWAY4, ip6(ULA_GATEWAY));
    assert.equal(r.v4.lookup(GATEWAY4), Verdict.BLOCK);
    assert.equal(r.v4.lookup(GATEWAY4 + 1), Verdict.NONE);
    assert.equal(lookup(r.v6, 'fe80::1'), Verdict.BLOCK);
    assert.equal(lookup(r.v6, ULA_GATEWAY), Verdict.BLOCK);
    assert.equal(lookup(r.v6, 'fe80::2'), Verdict.NONE);
    assert.equal(lookup(r.v6, 'fd12:3456:789a::2'), Verdict.NONE);
    const noV6 = buildRules(['@host'], [], GATEWAY4, null);
    assert.equal(lookup(noV6.v6, 'fe80::1'), Verdict.ALLOW);
    assert.equal(noV6.v6.size, 1);
  });

  test('--block ::/0 --allow @host leaves only the gateway; --allow ::/0,@host --block ::/0 too (block wins)', () => {
    for (const p of [policy(['@host'], ['::/0']), policy(['::/0', '@host'], ['::/0'])]) {
      assert.equal(allows6(p, 'fe80::1'), true);
      assert.equal(allows6(p, ULA_GATEWAY), true);
      for (const s of ['2606:4700::1111', 'fd12:3456:789a:1::5', 'fe80::2', '2001:db8::1'])
        assert.equal(allows6(p, s), false, s);
    }
  });

  test('--block @host shuts the gateway out in both families', () => {
    const p = policy([], ['@host']);
    assert.equal(p.allows(GATEWAY4 | 0), false);
    assert.equal(allows6(p, 'fe80::1'), false);
    assert.equal(allows6(p, ULA_GATEWAY), false);
    assert.equal(allows6(p, '2606:4700::1111'), true);
  });
});

describe('DestinationPolicy.allows6 defaults (no user rules)', () => {
  const p = policy();

  test('global unicast is allowed', () => {
    for (const s of ['2606:4700::1111', '2a00:1450:4001::200e', '2620:4f:8000::1', '2001:200::1', '3ffe::1'])
      assert.equal(allows6(p, s), true, s);
  });

  test('the registry and everything outside 2000::/3 are blocked', () => {
    for (const s of [
      '::',
      '::1',
      '::ffff:1.2.3.4',
      '::1.2.3.4',
      '64:ff9b::1.2.3.4',
      '64:ff9b:1::1',
      '100::1',
      '2001::1', // Teredo
      '2001:2::1', // benchmarking
      '2001:10::1', // ORCHID
      '2001:1::4',
      '2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff',
      '2001:db8::1',
      '2002:c000:201::1', // 6to4
      '3fff::1',
      '3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff',
      '5f00::1',
      'fc00::1',
      'fd12::1',
      'fe80::2',
      'febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      'fec0::1',
      'ff02::1',
      'ff05::1:3',
      '1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      '4000::1',
    ])
      assert.equal(allows6(p, s), false, s);
  });

  test("the registry's globally reachable entries inside 2001::/23 are allowed", () => {
    for (const s of [
      '2001:1::1',
      '2001:1::2',
      '2001:1::3',
      '2001:3::',
      '2001:3:ffff:ffff:ffff:ffff:ffff:ffff',
      '2001:4:112::1',
      '2001:4:112:ffff:ffff:ffff:ffff:ffff',
      '2001:20::1',
      '2001:2f:ffff:ffff:ffff:ffff:ffff:ffff',
      '2001:30::1',
      '2001:3f:ffff:ffff:ffff:ffff:ffff:ffff',
    ])
      assert.equal(allows6(p, s), true, s);
    assert.equal(allows6(p, '2001:4:113::1'), false);
    assert.equal(allows6(p, '2001:40::1'), false);
  });

  test('the gateway is allowed without any rule: fe80::1 always, the ULA one once named', () => {
    assert.equal(allows6(p, 'fe80::1'), true);
    assert.equal(allows6(p, ULA_GATEWAY), true);
    const unnamed = new DestinationPolicy(new RuleTable(), GATEWAY4);
    assert.equal(allows6(unnamed, 'fe80::1'), true);
    assert.equal(allows6(unnamed, ULA_GATEWAY), false);
    unnamed.setGateway6(ip6(ULA_GATEWAY));
    assert.equal(allows6(unnamed, ULA_GATEWAY), true, 'the cached verdict went with the new gateway');
  });

  test('a host address is blocked, even a global one, unless a user rule allows it', () => {
    const q = policy();
    assert.equal(allows6(q, '2001:470::5'), true);
    q.addHostAddress6(ip6('2001:470::5'));
    q.addHostAddress6(ip6('2001:470::6'));
    assert.equal(allows6(q, '2001:470::5'), false, 'the cached verdict went with the new host address');
    assert.equal(allows6(q, '2001:470::6'), false);
    assert.equal(allows6(q, '2001:470::7'), true);
    // The gateway stays allowed though the host link holds it.
    q.addHostAddress6(ip6(ULA_GATEWAY));
    assert.equal(allows6(q, ULA_GATEWAY), true);
    const r = policy(['2001:470::5/128']);
    r.addHostAddress6(ip6('2001:470::5'));
    assert.equal(allows6(r, '2001:470::5'), true);
  });

  test('a user allow opens a default block, and a user block closes a default allow', () => {
    const q = policy(['2001:db8:2::/64', 'fd00::/8'], ['2606:4700::/32']);
    assert.equal(allows6(q, '2001:db8:2::10'), true);
    assert.equal(allows6(q, '2001:db8:3::10'), false);
    assert.equal(allows6(q, 'fd12::1'), true);
    assert.equal(allows6(q, 'fc00::1'), false);
    assert.equal(allows6(q, '2606:4700::1111'), false);
    assert.equal(allows6(q, '2606:4701::1'), true);
  });

  test('IPv4 rules say nothing of IPv6, nor IPv6 rules of IPv4', () => {
    const q = policy(['0.0.0.0/0'], ['::/0']);
    assert.equal(q.allows(parseIpv4('10.0.0.1')!), true);
    assert.equal(allows6(q, '2606:4700::1111'), false);
    const r = policy(['::/0'], ['0.0.0.0/0']);
    assert.equal(r.allows(parseIpv4('1.1.1.1')!), false);
    assert.equal(allows6(r, 'fd12::1'), true);
  });
});

describe('allowsVm6 and allowsOnLan6', () => {
  test("only a user allow lets a VM reach another VM's prefix, defaults and gateway aside", () => {
    const p = policy();
    assert.equal(p.allowsVm6(...words('fd12:3456:789a:2::5')), false);
    assert.equal(p.allowsVm6(...words('2606:4700::1111')), false, 'even a global prefix');
    const q = policy(['fd12:3456:789a:2::/64'], ['fd12:3456:789a:2::9/128']);
    assert.equal(q.allowsVm6(...words('fd12:3456:789a:2::5')), true);
    assert.equal(q.allowsVm6(...words('fd12:3456:789a:2::9')), false);
    assert.equal(q.allowsVm6(...words('fd12:3456:789a:3::5')), false);
    assert.equal(policy(['::/0']).allowsVm6(...words('fd12:3456:789a:3::5')), true);
  });

  test('a bridged VM reaches its LAN unless a user rule blocks it', () => {
    const p = policy([], ['fd00:1::/32']);
    assert.equal(p.allowsOnLan6(...words('fe80::1234')), true);
    assert.equal(p.allowsOnLan6(...words('fd00:2::1')), true);
    assert.equal(p.allowsOnLan6(...words('fd00:1::1')), false);
  });
});

function words(s: string): [number, number, number, number] {
  const w = ip6(s);
  return [w[0] | 0, w[1] | 0, w[2] | 0, w[3] | 0];
}

// ---- Random rule sets against a BigInt reference ----

interface Rule6 {
  net: bigint;
  prefix: number;
  verdict: number;
}

const big = (w: ArrayLike<number>) =>
  (BigInt(w[0] >>> 0) << 96n) |
  (BigInt(w[1] >>> 0) << 64n) |
  (BigInt(w[2] >>> 0) << 32n) |
  BigInt(w[3] >>> 0);
const ALL = (1n << 128n) - 1n;
const mask128 = (prefix: number) => (ALL << BigInt(128 - prefix)) & ALL;
const toWords = (a: bigint) => Uint32Array.from([96n, 64n, 32n, 0n], (s) => Number((a >> s) & 0xffffffffn));

function naiveLookup6(rules: Rule6[], a: bigint): number {
  let best = -1;
  let verdict: number = Verdict.NONE;
  for (const r of rules) {
    const m = mask128(r.prefix);
    if ((a & m) !== (r.net & m)) continue;
    if (r.prefix > best) {
      best = r.prefix;
      verdict = r.verdict;
    } else if (r.prefix === best && r.verdict === Verdict.BLOCK) verdict = Verdict.BLOCK;
  }
  return verdict;
}

/** The registry written out again, as the reference policy's defaults. */
const NOT_GLOBAL6 = ['2001::/23', '2001:db8::/32', '2002::/16', '3fff::/20'].map(cidr6);
const GLOBAL6 = [
  '2001:1::1/128',
  '2001:1::2/128',
  '2001:1::3/128',
  '2001:3::/32',
  '2001:4:112::/48',
  '2001:20::/28',
  '2001:30::/28',
].map(cidr6);
const inCidr = (c: Cidr6, a: bigint) => (a & mask128(c.prefix)) === (big(c.addr) & mask128(c.prefix));

function naiveAllows6(rules: Rule6[], gateways: bigint[], hosts: bigint[], a: bigint): boolean {
  const v = naiveLookup6(rules, a);
  if (v !== Verdict.NONE) return v === Verdict.ALLOW;
  if (gateways.includes(a)) return true;
  if (hosts.includes(a)) return false;
  if (a >> 125n !== 1n) return false;
  if (GLOBAL6.some((c) => inCidr(c, a))) return true;
  return !NOT_GLOBAL6.some((c) => inCidr(c, a));
}

const randomBig = (rand: () => number) =>
  [0, 1, 2, 3].reduce((a) => (a << 32n) | BigInt(Math.floor(rand() * 2 ** 32)), 0n);

function randomRules6(rand: () => number): Rule6[] {
  const bases = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => randomBig(rand));
  const n = Math.floor(rand() * 40);
  const rules: Rule6[] = [];
  for (let i = 0; i < n; i++) {
    const base = bases[Math.floor(rand() * bases.length)];
    const prefix = rand() < 0.1 ? Math.floor(rand() * 4) : Math.floor(rand() * 129);
    let net = rand() < 0.7 ? base : base ^ randomBig(rand);
    if (rand() < 0.3 && prefix > 0) net ^= 1n << BigInt(127 - Math.floor(rand() * prefix));
    rules.push({ net, prefix, verdict: rand() < 0.5 ? Verdict.ALLOW : Verdict.BLOCK });
  }
  for (let i = 0; i < n / 4; i++) {
    const r = rules[Math.floor(rand() * rules.length)];
    rules.push({ ...r, verdict: r.verdict === Verdict.ALLOW ? Verdict.BLOCK : Verdict.ALLOW });
  }
  return rules;
}

function randomAddr6(rand: () => number, rules: Rule6[], specials: bigint[]): bigint {
  const r = rand();
  if (r < 0.2 || rules.length === 0) return randomBig(rand);
  if (r < 0.35 && specials.length > 0) return specials[Math.floor(rand() * specials.length)];
  const rule = rules[Math.floor(rand() * rules.length)];
  const low = Math.floor(rand() * 129);
  return rule.net ^ (randomBig(rand) & ((1n << BigInt(low)) - 1n));
}

function toTable6(rules: Rule6[]): RuleTable6 {
  const t = new RuleTable6();
  for (const r of rules) t.add({ addr: toWords(r.net), prefix: r.prefix }, r.verdict);
  return t;
}

test('RuleTable6.lookup agrees with a BigInt scan for 300 random rule sets x 300 addresses (seed 4291)', () => {
  const rand = prng(4291);
  let matched = 0;
  for (let n = 0; n < 300; n++) {
    const rules = randomRules6(rand);
    const t = toTable6(rules);
    for (let i = 0; i < 300; i++) {
      const a = randomAddr6(rand, rules, []);
      const w = toWords(a);
      const want = naiveLookup6(rules, a);
      if (want !== Verdict.NONE) matched++;
      assert.equal(t.lookup(w[0], w[1], w[2], w[3]), want, formatIpv6(w));
      assert.equal(t.lookup(w[0] | 0, w[1] | 0, w[2] | 0, w[3] | 0), want, formatIpv6(w));
    }
  }
  assert.ok(matched > 20000, `only ${matched} lookups hit a rule`);
});

test('DestinationPolicy.allows6 agrees with a reference policy for random rules, hosts and addresses (seed 5156)', () => {
  const rand = prng(5156);
  // Edges of every special range and of 2000::/3, so the defaults are exercised as much as the rules.
  const specials: bigint[] = [];
  for (const c of [...NOT_GLOBAL6, ...GLOBAL6, cidr6('2000::/3'), cidr6('fe80::/10')]) {
    const m = mask128(c.prefix);
    const first = big(c.addr) & m;
    const last = first | (~m & ALL);
    specials.push(first, last, (first - 1n) & ALL, (last + 1n) & ALL, first + (last - first) / 2n);
  }
  const gateways = [big(ip6('fe80::1')), big(ip6(ULA_GATEWAY))];
  specials.push(...gateways);
  for (let n = 0; n < 300; n++) {
    const rules = randomRules6(rand);
    const hosts = Array.from({ length: Math.floor(rand() * 4) }, () => randomAddr6(rand, rules, specials));
    const p = new DestinationPolicy(new RuleTable(), GATEWAY4, false, toTable6(rules));
    p.setGateway6(ip6(ULA_GATEWAY));
    for (const h of hosts) p.addHostAddress6(toWords(h));
    for (let i = 0; i < 300; i++) {
      const r = rand();
      const a = r < 0.05 && hosts.length > 0 ? hosts[0] : randomAddr6(rand, rules, specials);
      const w = toWords(a);
      const want = naiveAllows6(rules, gateways, hosts, a);
      assert.equal(p.allows6(w[0], w[1], w[2], w[3]), want, formatIpv6(w));
      assert.equal(p.allows6(w[0] | 0, w[1] | 0, w[2] | 0, w[3] | 0), want, formatIpv6(w));
    }
  }
});

test('specialPurposeTable6 never answers NONE: everything outside 2000::/3 is blocked by the table itself', () => {
  const t = specialPurposeTable6();
  assert.equal(lookup(t, '::'), Verdict.BLOCK);
  assert.equal(lookup(t, '1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), Verdict.BLOCK);
  assert.equal(lookup(t, '2000::'), Verdict.ALLOW);
  assert.equal(lookup(t, '3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'), Verdict.ALLOW);
  assert.equal(lookup(t, '4000::'), Verdict.BLOCK);
});

// ---- No allocation on the hot path ----

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/**
 * Runs `fn` a million times over 4096 addresses (many cache misses as well as hits) after a warm-up and a
 * full collection, and returns how many collections ran and how much the heap grew meanwhile. An
 * allocation of even 16 bytes a call is 16 MB: it shows as collections or as growth.
 */
async function heapCost(fn: (w0: number, w1: number, w2: number, w3: number) => unknown) {
  const addrs = new Int32Array(4 * 4096);
  const rand = prng(8200);
  for (let i = 0; i < addrs.length; i++) addrs[i] = Math.floor(rand() * 2 ** 32) | 0;
  // Some global, some ULA, some link-local.
  for (let i = 0; i < addrs.length; i += 12) addrs[i] = 0xfd123456 | 0;
  for (let i = 4; i < addrs.length; i += 12) addrs[i] = 0x26064700 | 0;
  const run = (n: number) => {
    for (let k = 0; k < n; k++) {
      const j = (k & 4095) * 4;
      fn(addrs[j], addrs[j + 1], addrs[j + 2], addrs[j + 3] ^ (k >> 12));
    }
  };
  run(200_000);
  gc();
  const { PerformanceObserver } = await import('node:perf_hooks');
  let collections = 0;
  const obs = new PerformanceObserver((list) => {
    collections += list.getEntries().length;
  });
  obs.observe({ entryTypes: ['gc'] });
  const before = process.memoryUsage().heapUsed;
  run(1_000_000);
  const grown = process.memoryUsage().heapUsed - before;
  await new Promise((r) => setTimeout(r, 50));
  obs.disconnect();
  return { collections, grown };
}

test('allows6 allocates nothing: a million calls, no collection and no heap growth', async () => {
  const p = policy(['2001:db8:2::/64', 'fd12:3456::/32'], ['2606:4700:1::/48', '@host']);
  p.addHostAddress6(ip6('2001:470::5'));
  const cost = await heapCost((w0, w1, w2, w3) => p.allows6(w0, w1, w2, w3));
  assert.equal(cost.collections, 0, `collections: ${JSON.stringify(cost)}`);
  assert.ok(cost.grown < 256 * 1024, `heap grew: ${JSON.stringify(cost)}`);
});

test('the allocation check can fail: a function that allocates is caught', async () => {
  const sink: unknown[] = [null];
  const cost = await heapCost((w0, w1) => {
    sink[0] = { w0, w1 };
  });
  assert.ok(cost.collections > 0 || cost.grown > 8 * 1024 * 1024, JSON.stringify(cost));
});
