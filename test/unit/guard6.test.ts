// The NAT66 guard (nat/guard6.ts) with the IPv4 one (nat/guard.ts), for real, in network namespaces of the
// test's own: the `ip6` table and its rules, moving it to a new address, the reservation both families
// share, a dead owner's tables of both families removed by the next start, conflicts per family, and what
// it is for: a TCP connection from the world to a guarded port of the uplink's IPv6 address is no longer
// refused by the host's stack (no RST), while other ports still are. Needs root; skipped without it.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Topology } from '../lib/topology.js';

const root = process.getuid?.() === 0;
const topo = new Topology();
after(() => topo.cleanup());

const guardJs = new URL('../../src/nat/guard.js', import.meta.url).href;
const guard6Js = new URL('../../src/nat/guard6.js', import.meta.url).href;
const addon = fileURLToPath(new URL('../../../native/build/Release/softnet.node', import.meta.url));

/** What every child script starts with: the guards, and readers of the namespace's tables and reservation. */
const PRELUDE = `
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { GuardConflict, NatGuard, withGuardLock } from '${guardJs}';
import { NatGuard6 } from '${guard6Js}';
const native = createRequire(import.meta.url)(${JSON.stringify(addon)});
const tables = () => execFileSync('nft', ['list', 'tables'], { encoding: 'utf8' }).trim().split('\\n').filter(Boolean).sort();
const ruleset = () => execFileSync('nft', ['list', 'ruleset'], { encoding: 'utf8' });
const reserved = () => readFileSync('/proc/sys/net/ipv4/ip_local_reserved_ports', 'utf8').trim();
const out = (v) => console.log(JSON.stringify(v));
const ADDR = Uint32Array.of(0x20010db8, 0, 0, 2);
const NEXT = Uint32Array.of(0x20010db8, 0, 0, 3);
`;

/** Runs ES module `code` (after PRELUDE) with node inside `ns`; returns what it printed last, as JSON. */
async function inNs<T = unknown>(ns: string, code: string): Promise<T> {
  const r = await topo.exec(ns, process.execPath, ['--input-type=module', '-e', PRELUDE + code]);
  const lines = r.stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]) as T;
}

/** The namespace's softnet tables and reserved ports at one moment. */
interface State {
  tables: string[];
  reserved: string;
}

/** Connects from `ns` to [addr]:port over TCP: 'refused', 'open' or 'timeout' (nothing came back). */
async function connect(ns: string, addr: string, port: number): Promise<string> {
  const code = `
const s = (await import('node:net')).connect({ host: '${addr}', port: ${port} });
s.setTimeout(1500, () => { console.log('timeout'); process.exit(0); });
s.on('connect', () => { console.log('open'); process.exit(0); });
s.on('error', (e) => { console.log(e.code === 'ECONNREFUSED' ? 'refused' : e.code); process.exit(0); });
`;
  return (await topo.exec(ns, process.execPath, ['--input-type=module', '-e', code])).stdout.trim();
}

describe('the NAT66 guard', { skip: root ? false : 'needs root (network namespaces, nftables)' }, () => {
  let host = '';
  let world = '';

  before(async () => {
    host = await topo.netns('g6host');
    world = await topo.netns('g6world');
    await topo.exec(host, 'ip', ['link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'w0', 'netns', world]);
    await topo.exec(host, 'ip', ['link', 'set', 'up0', 'up']);
    await topo.exec(world, 'ip', ['link', 'set', 'w0', 'up']);
    // The addon's ifAddr6 gives each side its address, without duplicate address detection: usable at once.
    await inNs(
      host,
      `native.ifAddr6('up0', Uint8Array.of(0x20,1,0xd,0xb8,0,0,0,0,0,0,0,0,0,0,0,2), 64);
native.ifAddr6('up0', Uint8Array.of(0x20,1,0xd,0xb8,0,0,0,0,0,0,0,0,0,0,0,2), 64); out(0);`,
    );
    await inNs(
      world,
      `native.ifAddr6('w0', Uint8Array.of(0x20,1,0xd,0xb8,0,0,0,0,0,0,0,0,0,0,0,1), 64); out(0);`,
    );
  });

  test('ifAddr6 added the address once, not tentative', async () => {
    const shown = (await topo.exec(host, 'ip', ['-6', 'addr', 'show', 'dev', 'up0'])).stdout;
    assert.equal(shown.match(/2001:db8::2\/64/g)?.length, 1, shown);
    assert.match(shown, /inet6 2001:db8::2\/64 scope global nodad/, shown);
    assert.doesNotMatch(
      shown
        .split('\n')
        .filter((l) => l.includes('2001:db8::2'))
        .join('\n'),
      /tentative/,
    );
  });

  test('an ip6 table beside the ip one, both holding one reservation; readdressed in place', async () => {
    const r = await inNs<{ first: State & { rules: string }; moved: string; v6gone: State; end: State }>(
      host,
      `withGuardLock(() => {
  const g4 = NatGuard.install('up0', 0xc6336402, 61000, 61999);
  const g6 = NatGuard6.install('up0', ADDR, 61000, 61999);
  g6.addForwards('tcp', [8080, 8443]);
  const first = { tables: tables(), rules: ruleset(), reserved: reserved() };
  g6.readdress(NEXT);
  const moved = ruleset();
  g6.remove();
  const v6gone = { tables: tables(), reserved: reserved() };
  g4.remove();
  out({ first, moved, v6gone, end: { tables: tables(), reserved: reserved() } });
});`,
    );
    const pid = '\\d+';
    assert.equal(r.first.tables.length, 2, r.first.tables.join('\n'));
    assert.match(r.first.tables[0], new RegExp(`^table ip softnet_up0_61000_61999_${pid}$`));
    assert.match(r.first.tables[1], new RegExp(`^table ip6 softnet6_up0_61000_61999_${pid}$`));
    assert.equal(r.first.reserved, '61000-61999');
    for (const rule of [
      'ip6 daddr 2001:db8::2 tcp dport 61000-61999 drop',
      'ip6 daddr 2001:db8::2 udp dport 61000-61999 drop',
      'ip6 daddr 2001:db8::2 icmpv6 type echo-reply icmpv6 id 61000-61999 drop',
      'iifname "up0" ip6 daddr 2001:db8::2 tcp dport @forward_tcp drop',
      'ip6 saddr 2001:db8::2 icmpv6 type echo-request icmpv6 id 61000-61999 notrack',
      'oifname "up0" ip6 saddr 2001:db8::2 udp sport @forward_udp notrack',
    ])
      assert.ok(r.first.rules.includes(rule), `no "${rule}" in\n${r.first.rules}`);
    assert.match(r.first.rules, /elements = \{ 8080, 8443 \}/);
    assert.ok(r.moved.includes('ip6 daddr 2001:db8::3 tcp dport 61000-61999 drop'), r.moved);
    assert.doesNotMatch(r.moved, /2001:db8::2/, 'the old address is gone from every rule');
    assert.match(r.moved, /elements = \{ 8080, 8443 \}/, 'the forwards stay');
    assert.equal(r.moved.match(/ip6 (s|d)addr 2001:db8::3/g)?.length, 10, r.moved);
    assert.equal(r.v6gone.tables.length, 1, r.v6gone.tables.join('\n'));
    assert.equal(r.v6gone.reserved, '61000-61999', 'the IPv4 guard still holds the range');
    assert.deepEqual(r.end, { tables: [], reserved: '' });
  });

  test('the IPv4 guard removed first leaves the range to the IPv6 one', async () => {
    const r = await inNs(
      host,
      `withGuardLock(() => {
  const g4 = NatGuard.install('up0', 0xc6336402, 62000, 62099);
  const g6 = NatGuard6.install('up0', ADDR, 62000, 62099);
  g4.remove();
  const mid = reserved();
  g6.remove();
  out({ mid, end: reserved(), tables: tables() });
});`,
    );
    assert.deepEqual(r, { mid: '62000-62099', end: '', tables: [] });
  });

  test('conflicts are per family: an overlapping IPv6 range is refused, the IPv4 one beside it is not', async () => {
    const r = await inNs<{ refused: string; n: number; end: string[]; reserved: string }>(
      host,
      `withGuardLock(() => {
  const g6 = NatGuard6.install('up0', ADDR, 61000, 61999);
  let refused = '';
  try { NatGuard6.install('up0', NEXT, 61500, 62500); } catch (e) { refused = (e instanceof GuardConflict) + ' ' + e.message; }
  const other = NatGuard6.install('up1', ADDR, 61000, 61999);
  const g4 = NatGuard.install('up0', 0xc6336402, 61000, 61999);
  const n = tables().length;
  for (const g of [g6, other, g4]) g.remove();
  out({ refused, n, end: tables(), reserved: reserved() });
});`,
    );
    assert.match(r.refused, /^true ports 61000-61999 on up0 are used by another network of this engine/);
    assert.equal(r.n, 3);
    assert.deepEqual([r.end, r.reserved], [[], '']);
  });

  test("a dead softnet's tables of both families and their reservation go at the next start", async () => {
    const left = await inNs<State>(
      host,
      `withGuardLock(() => {
  NatGuard.install('up0', 0xc6336402, 63000, 63099);
  NatGuard6.install('up0', ADDR, 63000, 63099);
  NatGuard6.install('up9', ADDR, 63100, 63199);
});
out({ tables: tables(), reserved: reserved() });`,
    );
    assert.equal(left.tables.length, 3, left.tables.join('\n'));
    assert.equal(left.reserved, '63000-63199');
    const next = await inNs<{ during: State; end: State }>(
      host,
      `withGuardLock(() => {
  const g = NatGuard6.install('up0', ADDR, 61000, 61099);
  const during = { tables: tables(), reserved: reserved() };
  g.remove();
  out({ during, end: { tables: tables(), reserved: reserved() } });
});`,
    );
    assert.equal(next.during.tables.length, 1, next.during.tables.join('\n'));
    assert.match(next.during.tables[0], /^table ip6 softnet6_up0_61000_61099_\d+$/);
    assert.equal(next.during.reserved, '61000-61099');
    assert.deepEqual(next.end, { tables: [], reserved: '' });
  });

  test("the host's stack answers no guarded port of the address, forwards included, and still the others", async () => {
    assert.equal(await connect(world, '2001:db8::2', 61500), 'refused', 'before: the stack refuses');
    assert.equal(await connect(world, '2001:db8::2', 8080), 'refused');
    // The child exits with its guard in place: it is a dead softnet's until the next start removes it.
    await inNs(
      host,
      `withGuardLock(() => NatGuard6.install('up0', ADDR, 61000, 61999).addForwards('tcp', [8080])); out(0);`,
    );
    try {
      assert.equal(await connect(world, '2001:db8::2', 61500), 'timeout', 'a port of the range');
      assert.equal(await connect(world, '2001:db8::2', 61000), 'timeout', 'lo');
      assert.equal(await connect(world, '2001:db8::2', 61999), 'timeout', 'hi');
      assert.equal(await connect(world, '2001:db8::2', 8080), 'timeout', 'a forwarded port');
      assert.equal(await connect(world, '2001:db8::2', 62000), 'refused', 'hi + 1');
      assert.equal(await connect(world, '2001:db8::2', 60999), 'refused', 'lo - 1');
    } finally {
      await inNs(host, `withGuardLock(() => NatGuard6.install('up0', ADDR, 1, 2).remove()); out(tables());`);
    }
    assert.equal(await connect(world, '2001:db8::2', 61500), 'refused', 'after: the stack refuses again');
  });
});
