// The uplink's IPv6 side as read from /proc (ports/uplink.ts): the default route's interface from
// ipv6_route, and the address NAT66 sends from out of if_inet6, over files written as the kernel writes
// them.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { defaultRouteInterface6, uplinkIpv6 } from '../../src/ports/uplink.js';

const dir = mkdtempSync(join(tmpdir(), 'softnet-uplink6-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

/** A file with `lines`, as /proc writes them; returns its path. */
function proc(lines: string[]): string {
  const path = join(dir, `proc-${files++}`);
  writeFileSync(path, lines.map((l) => `${l}\n`).join(''));
  return path;
}

const ZERO = '0'.repeat(32);

/** A line of /proc/net/ipv6_route: a route to dest/plen from src/splen. */
function route(
  dest: string,
  plen: string,
  dev: string,
  flags: string,
  metric = '00000400',
  splen = '00',
): string {
  return `${dest} ${plen} ${ZERO} ${splen} fe800000000000000000000000000001 ${metric} 00000001 00000000 ${flags} ${dev.padStart(8)}`;
}

describe('defaultRouteInterface6', () => {
  const connected = route('20010db8000000010000000000000000', '40', 'eth0', '00000001', '00000100');
  const local = route('00000000000000000000000000000001', '80', 'lo', '80200001', '00000000');

  test('the interface of ::/0', () => {
    const path = proc([connected, route(ZERO, '00', 'eth0', '00000003'), local]);
    assert.equal(defaultRouteInterface6(path), 'eth0');
  });

  test('one learned from a router advertisement (RTF_ADDRCONF | RTF_DEFAULT) counts', () => {
    assert.equal(defaultRouteInterface6(proc([route(ZERO, '00', 'wlan0', '00450003')])), 'wlan0');
  });

  test('the lowest metric of several', () => {
    const path = proc([
      route(ZERO, '00', 'eth0', '00000003', '00000400'),
      route(ZERO, '00', 'wwan0', '00000003', '00000064'),
      route(ZERO, '00', 'eth1', '00000003', '00000200'),
    ]);
    assert.equal(defaultRouteInterface6(path), 'wwan0');
  });

  test('none: no route, only other prefixes, an unreachable default, one through lo, one from a source prefix', () => {
    assert.equal(defaultRouteInterface6(proc([])), null);
    assert.equal(defaultRouteInterface6(proc([connected, local])), null);
    assert.equal(defaultRouteInterface6(proc([route(ZERO, '00', 'lo', '00200200', '00000001')])), null);
    assert.equal(defaultRouteInterface6(proc([route(ZERO, '00', 'eth0', '00000201')])), null, 'RTF_REJECT');
    assert.equal(defaultRouteInterface6(proc([route(ZERO, '00', 'lo', '00000003')])), null);
    assert.equal(
      defaultRouteInterface6(proc([route(ZERO, '00', 'eth0', '00000003', '00000400', '38')])),
      null,
    );
    assert.equal(defaultRouteInterface6(proc([route(ZERO, '00', 'eth0', '00000002')])), null, 'not RTF_UP');
  });

  test('a rejected default does not hide a usable one of a higher metric', () => {
    const path = proc([
      route(ZERO, '00', 'lo', '00200200', '00000001'),
      route(ZERO, '00', 'eth0', '00000003', '00000400'),
    ]);
    assert.equal(defaultRouteInterface6(path), 'eth0');
  });

  test("this namespace's file reads without error", () => {
    const got = defaultRouteInterface6();
    assert.ok(got === null || (typeof got === 'string' && got !== 'lo'));
  });
});

describe('uplinkIpv6', () => {
  /** A line of /proc/net/if_inet6. */
  const addr = (hex: string, dev: string, flags: string, scope = '00', plen = '40') =>
    `${hex} 02 ${plen} ${scope} ${flags} ${dev.padStart(8)}`;
  const words = (w: Uint32Array | null) => (w === null ? null : Array.from(w, (x) => x.toString(16)));

  const LINK = addr('fe800000000000000000000000000001', 'eth0', '80', '20');
  const SLAAC = addr('20010db8000000010211223344556677', 'eth0', '00');
  const STATIC = addr('20010db80000000100000000000000aa', 'eth0', '80');
  const TEMP = addr('20010db8000000015566778899aabbcc', 'eth0', '01');
  const ULA = addr('fd000000000000010000000000000002', 'eth0', '80');

  test('a permanent non-ULA address before a SLAAC one, a temporary one and a ULA', () => {
    const path = proc([LINK, ULA, TEMP, SLAAC, STATIC]);
    assert.deepEqual(words(uplinkIpv6('eth0', path)), ['20010db8', '1', '0', 'aa']);
  });

  test('a stable SLAAC address before a temporary one', () => {
    assert.deepEqual(words(uplinkIpv6('eth0', proc([TEMP, SLAAC, ULA]))), [
      '20010db8',
      '1',
      '2112233',
      '44556677',
    ]);
  });

  test('a temporary one before a ULA', () => {
    assert.deepEqual(words(uplinkIpv6('eth0', proc([ULA, TEMP]))), ['20010db8', '1', '55667788', '99aabbcc']);
  });

  test('a ULA when there is nothing else (fc00::/7: fc and fd)', () => {
    assert.deepEqual(words(uplinkIpv6('eth0', proc([LINK, ULA]))), ['fd000000', '1', '0', '2']);
    const fc = addr('fc000000000000000000000000000009', 'eth0', '80');
    assert.deepEqual(words(uplinkIpv6('eth0', proc([fc]))), ['fc000000', '0', '0', '9']);
  });

  test('never tentative, optimistic (tentative too), dadfailed or deprecated; only global scope', () => {
    const path = proc([
      LINK,
      addr('20010db8000000010000000000000001', 'eth0', 'c0'),
      addr('20010db8000000010000000000000002', 'eth0', '44'),
      addr('20010db8000000010000000000000003', 'eth0', '88'),
      addr('20010db8000000010000000000000004', 'eth0', 'a0'),
      addr('fec00000000000000000000000000005', 'eth0', '80', '40'),
      addr('00000000000000000000000000000001', 'eth0', '80', '10'),
    ]);
    assert.equal(uplinkIpv6('eth0', path), null);
  });

  test("only the interface's own addresses", () => {
    const path = proc([addr('20010db8000000020000000000000001', 'eth1', '80'), ULA]);
    assert.deepEqual(words(uplinkIpv6('eth1', path)), ['20010db8', '2', '0', '1']);
    assert.equal(uplinkIpv6('eth2', path), null);
    assert.equal(uplinkIpv6('eth', path), null, 'a prefix of a name is another name');
  });

  test('the lowest of equals, whatever their order in the file', () => {
    const a = addr('20010db80000000100000000000000bb', 'eth0', '80');
    const b = addr('20010db80000000100000000000000aa', 'eth0', '80');
    assert.deepEqual(words(uplinkIpv6('eth0', proc([a, b]))), ['20010db8', '1', '0', 'aa']);
    assert.deepEqual(words(uplinkIpv6('eth0', proc([b, a]))), ['20010db8', '1', '0', 'aa']);
  });

  test('an address with the top bit set gives unsigned words', () => {
    const w = uplinkIpv6('eth0', proc([addr('ffffffff00000000000000008000000f', 'eth0', '80')]));
    assert.deepEqual(Array.from(w ?? []), [0xffffffff, 0, 0, 0x8000000f]);
  });
});
