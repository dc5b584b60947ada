// The per-VM command line: defaults, aliases, both value forms, and a UsageError naming the flag for
// every mistake.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UsageError, vmOptions } from '../../src/cli/args.js';
import { parseFlags } from '../../src/cli/flags.js';
import { SOFTNET } from '../../src/cli/grammar.js';

/** The per-VM form's options from its command line, as `softnet` parses it. */
const parseVmArgs = (argv: string[]) => vmOptions(parseFlags(argv, SOFTNET));

const BASE = ['--vm-fd', '3', '--vm-mac-address', '52:54:00:12:34:56'];

/** Asserts that parsing `argv` fails with a UsageError for `flag` (and a message matching `re`). */
function refuses(argv: string[], flag: string, re?: RegExp): void {
  assert.throws(
    () => parseVmArgs(argv),
    (e: unknown) => {
      assert.ok(e instanceof UsageError, `not a UsageError: ${e}`);
      assert.equal(e.flag, flag, `flag of "${e.message}" for ${JSON.stringify(argv)}`);
      assert.ok(e.message.startsWith(`${flag}: `), e.message);
      if (re) assert.match(e.message, re);
      return true;
    },
  );
}

test('defaults: shared network on 192.168.64.0/24, 600 s leases, softnet0, MTU 1500', () => {
  const o = parseVmArgs(BASE);
  assert.deepEqual(o.source, { kind: 'fd', fd: 3 });
  assert.equal(o.vm.mac, '52:54:00:12:34:56');
  assert.equal(o.vm.type, 'shared');
  assert.equal(o.vm.name, null);
  assert.equal(o.vm.externalMac, null);
  assert.deepEqual(o.vm.expose, []);
  assert.equal(o.vm.port, 'fd3');
  assert.equal(o.network.name, 'default');
  assert.equal(o.network.cidr, '192.168.64.0/24');
  assert.equal(o.network.leaseTime, 600);
  assert.equal(o.network.hostLink, 'softnet0');
  assert.equal(o.stateDir, '/var/lib/softnet');
  assert.equal(o.controlSocket, '/run/softnet/control.sock');
  assert.equal(o.user, null);
  assert.equal(o.group, null);
  assert.equal(o.network.mtu, 1500);
  assert.equal(o.network.domain, null);
  assert.deepEqual(o.network.routes, []);
  assert.deepEqual(o.given, []);
  assert.equal(o.logFormat, 'text');
});

test('every option given, in the --flag=value form and the two-word form', () => {
  const o = parseVmArgs([
    '--vm-tap=tap-vm1',
    '--vm-mac-address=02:AB:cd:00:00:01',
    '--vm-net-type',
    'host',
    '--subnet=10.20.0.0/16',
    '--lease-time',
    '120',
    '--host-link=br-softnet',
    '--state-dir',
    '/tmp/softnet state',
    '--user=nobody',
    '--group',
    'nogroup',
    '--mtu=1400',
    '--domain=vm.example.com',
    '--dhcp-route=10.0.0.0/8,172.16.0.0/12',
    '--log-format=json',
  ]);
  assert.deepEqual(o.source, { kind: 'tap', name: 'tap-vm1' });
  assert.equal(o.vm.mac, '02:ab:cd:00:00:01');
  assert.equal(o.vm.type, 'host');
  assert.equal(o.network.cidr, '10.20.0.0/16');
  assert.equal(o.network.leaseTime, 120);
  assert.equal(o.network.hostLink, 'br-softnet');
  assert.equal(o.stateDir, '/tmp/softnet state');
  assert.equal(o.user, 'nobody');
  assert.equal(o.group, 'nogroup');
  assert.equal(o.network.mtu, 1400);
  assert.equal(o.network.domain, 'vm.example.com');
  assert.deepEqual(o.network.routes, ['10.0.0.0/8', '172.16.0.0/12']);
  assert.deepEqual(o.given.sort(), ['cidr', 'domain', 'hostLink', 'leaseTime', 'mtu', 'routes']);
  assert.equal(o.logFormat, 'json');
});

test('a value may contain "=" and may look like a flag in the two-word form', () => {
  assert.deepEqual(parseVmArgs(['--vm-socket=/run/a=b.sock', BASE[2], BASE[3]]).source, {
    kind: 'socket',
    path: '/run/a=b.sock',
  });
  assert.equal(parseVmArgs([...BASE, '--state-dir', '--weird']).stateDir, '--weird');
});

test('VM port kinds: netns with its default and explicit interface, socket', () => {
  assert.deepEqual(parseVmArgs(['--vm-netns', '/run/netns/vm1', BASE[2], BASE[3]]).source, {
    kind: 'netns',
    path: '/run/netns/vm1',
    ifname: 'eth0',
  });
  assert.deepEqual(parseVmArgs(['--vm-netns=/run/netns/vm1', '--vm-ifname=ens3', BASE[2], BASE[3]]).source, {
    kind: 'netns',
    path: '/run/netns/vm1',
    ifname: 'ens3',
  });
  assert.deepEqual(parseVmArgs(['--vm-socket', '/tmp/q.sock', BASE[2], BASE[3]]).source, {
    kind: 'socket',
    path: '/tmp/q.sock',
  });
});

test('aliases: --bootpd-lease-time is --lease-time, --vm-net-type nat is shared', () => {
  assert.equal(parseVmArgs([...BASE, '--bootpd-lease-time', '90']).network.leaseTime, 90);
  assert.equal(parseVmArgs([...BASE, '--bootpd-lease-time=3600']).network.leaseTime, 3600);
  assert.equal(parseVmArgs([...BASE, '--vm-net-type', 'nat']).vm.type, 'shared');
  assert.equal(parseVmArgs([...BASE, '--vm-net-type=shared']).vm.type, 'shared');
});

test('an unknown flag, or a stray argument, is named', () => {
  refuses([...BASE, '--verbose'], '--verbose', /unknown flag/);
  refuses([...BASE, '--bogus=1'], '--bogus', /unknown flag/);
  refuses(['-v', ...BASE], '-v', /unknown flag/);
  refuses([...BASE, 'extra'], 'extra', /unexpected argument/);
  refuses(['--VM-FD', '3', BASE[2], BASE[3]], '--VM-FD'); // flags are case-sensitive
});

test('a flag without its value, or given twice (also through its alias)', () => {
  refuses([...BASE, '--lease-time'], '--lease-time', /needs a value/);
  refuses(['--vm-fd'], '--vm-fd', /needs a value/);
  refuses([...BASE, '--mtu', '1400', '--mtu=1500'], '--mtu', /given twice/);
  refuses([...BASE, '--lease-time', '60', '--bootpd-lease-time', '70'], '--bootpd-lease-time', /given twice/);
});

test('no VM port, or two of them', () => {
  refuses(['--vm-mac-address', '52:54:00:12:34:56'], '--vm-fd', /no VM port/);
  refuses([], '--vm-fd', /no VM port/);
  assert.throws(
    () => parseVmArgs([...BASE, '--vm-tap', 'tap0']),
    (e: unknown) => e instanceof UsageError && ['--vm-fd', '--vm-tap'].includes(e.flag),
  );
  refuses([...BASE, '--vm-socket', '/x'], '--vm-socket', /only one VM port/);
  refuses(['--vm-netns', '/n', '--vm-tap', 't', BASE[2], BASE[3]], '--vm-netns', /only one VM port/);
});

test('bad VM port values', () => {
  refuses(['--vm-fd', '-1', BASE[2], BASE[3]], '--vm-fd');
  refuses(['--vm-fd', 'three', BASE[2], BASE[3]], '--vm-fd');
  refuses(['--vm-fd', '3.0', BASE[2], BASE[3]], '--vm-fd');
  refuses(['--vm-fd', String(2 ** 20 + 1), BASE[2], BASE[3]], '--vm-fd');
  refuses(['--vm-tap', 'a-name-that-is-too-long', BASE[2], BASE[3]], '--vm-tap', /interface name/);
  refuses(['--vm-tap', 'tap/0', BASE[2], BASE[3]], '--vm-tap');
  refuses(['--vm-tap=', BASE[2], BASE[3]], '--vm-tap');
  refuses(['--vm-socket=', BASE[2], BASE[3]], '--vm-socket', /needs a path/);
  refuses(['--vm-netns', '', BASE[2], BASE[3]], '--vm-netns', /needs a path/);
  refuses(['--vm-netns', '/n', '--vm-ifname', 'bad name', BASE[2], BASE[3]], '--vm-ifname');
});

test('--vm-ifname without --vm-netns', () => {
  refuses([...BASE, '--vm-ifname', 'eth1'], '--vm-ifname', /only goes with --vm-netns/);
  refuses(['--vm-tap', 'tap0', '--vm-ifname=eth1', BASE[2], BASE[3]], '--vm-ifname');
});

test('a missing, malformed, multicast or all-zero MAC', () => {
  refuses(['--vm-fd', '3'], '--vm-mac-address', /required/);
  for (const mac of [
    '52:54:00:12:34',
    '52:54:00:12:34:56:78',
    '52:54:00:12:34:zz',
    '525400123456',
    '52:54:00:12:34:567',
    '',
  ]) {
    refuses(['--vm-fd', '3', '--vm-mac-address', mac], '--vm-mac-address', /not a unicast MAC/);
  }
  for (const mac of ['01:00:5e:00:00:fb', 'ff:ff:ff:ff:ff:ff', '33:33:00:00:00:01', '00:00:00:00:00:00']) {
    refuses(['--vm-fd', '3', '--vm-mac-address', mac], '--vm-mac-address', /not a unicast MAC/);
  }
  // Dashes and single hex digits are accepted.
  assert.equal(parseVmArgs(['--vm-fd', '3', '--vm-mac-address', '2-0-0-a-B-c']).vm.mac, '02:00:00:0a:0b:0c');
});

test('a bad network type, and bridge without its interface', () => {
  refuses([...BASE, '--vm-net-type', 'wifi'], '--vm-net-type', /shared/);
  refuses([...BASE, '--vm-net-type=NAT'], '--vm-net-type');
  refuses([...BASE, '--vm-net-type', 'bridge'], '--vm-net-type', /--bridge-interface/);
  refuses(
    [...BASE, '--bridge-interface', 'eth1'],
    '--bridge-interface',
    /only goes with --vm-net-type bridge/,
  );
  refuses([...BASE, '--vm-net-type', 'bridge', '--bridge-interface', 'bad name'], '--bridge-interface');
  const o = parseVmArgs([...BASE, '--vm-net-type', 'bridge', '--bridge-interface', 'eth1']);
  assert.equal(o.vm.type, 'bridge');
  assert.equal(o.network.type, 'bridge');
  assert.equal(o.network.bridgeInterface, 'eth1');
  assert.equal(parseVmArgs([...BASE, '--vm-net-type', 'disconnected']).vm.type, 'disconnected');
});

test('a bad subnet', () => {
  for (const subnet of [
    '192.168.64.0',
    '192.168.64.0/',
    '192.168.64.0/33',
    '192.168.64.0/024',
    '192.168.64/24',
    '192.168.256.0/24',
    '10.0.0.0/8/8',
    'fd00::/64',
    'subnet',
  ]) {
    refuses([...BASE, '--subnet', subnet], '--subnet', /CIDR/);
  }
  refuses([...BASE, '--subnet', '10.0.0.0/8'], '--subnet', /\/16 to \/29/);
  refuses([...BASE, '--subnet', '10.0.0.0/30'], '--subnet', /\/16 to \/29/);
  assert.equal(parseVmArgs([...BASE, '--subnet', '10.0.0.0/29']).network.cidr, '10.0.0.0/29');
  // Host bits are dropped: the subnet is its network address.
  assert.equal(parseVmArgs([...BASE, '--subnet', '10.0.0.77/24']).network.cidr, '10.0.0.0/24');
});

test('a bad lease time', () => {
  for (const t of ['0', '9', '-60', '60s', '1e3', '', '2147483648']) {
    refuses([...BASE, '--lease-time', t], '--lease-time', /whole number/);
  }
  assert.equal(parseVmArgs([...BASE, '--lease-time', '10']).network.leaseTime, 10);
  assert.equal(parseVmArgs([...BASE, '--lease-time', '2147483647']).network.leaseTime, 2147483647);
});

test('a bad MTU, host link name, state dir or log format', () => {
  refuses([...BASE, '--mtu', '575'], '--mtu');
  refuses([...BASE, '--mtu', '2001'], '--mtu');
  refuses([...BASE, '--host-link', 'a-name-too-long-x'], '--host-link');
  refuses([...BASE, '--state-dir='], '--state-dir', /needs a path/);
  refuses([...BASE, '--log-format', 'xml'], '--log-format', /text or json/);
});

test('bad DHCP routes: not a network, or more than 32', () => {
  refuses([...BASE, '--dhcp-route', '10.0.0.1/8'], '--dhcp-route', /not a network/);
  refuses([...BASE, '--dhcp-route', '10.0.0.0/8,,'], '--dhcp-route');
  refuses([...BASE, '--dhcp-route', 'default'], '--dhcp-route');
  const many = Array.from({ length: 33 }, (_, i) => `10.${i}.0.0/16`).join(',');
  refuses([...BASE, '--dhcp-route', many], '--dhcp-route', /at most 32/);
  assert.equal(
    parseVmArgs([...BASE, '--dhcp-route', many.split(',').slice(0, 32).join(',')]).network.routes.length,
    32,
  );
  assert.deepEqual(parseVmArgs([...BASE, '--dhcp-route', '10.1.2.3']).network.routes, ['10.1.2.3/32']);
});

test('bad domains are refused', () => {
  for (const d of ['', '-lead', '.lead', 'has space', 'under_score', 'x'.repeat(254)]) {
    refuses([...BASE, '--domain', d], '--domain', /not a domain name/);
  }
  assert.equal(parseVmArgs([...BASE, '--domain', 'vm.example.com.']).network.domain, 'vm.example.com.');
});

// Regression: the old --domain pattern nested a quantifier over a group that could match nothing, so a name
// failing near its end backtracked exponentially (a 31-character one took 1.4 s, each character doubled it).
// This 71-character name would never finish under it.
test('a long bad domain is refused, not backtracked over', () => {
  refuses(
    [...BASE, '--domain', 'ci-runners.build-farm.internal-ci-runners.build-farm.internal.example_'],
    '--domain',
    /not a domain name/,
  );
});

// Regression: 64-character and empty labels passed the old pattern (RFC 1035 2.3.4: labels are 1 to 63 octets).
test('a domain with a label longer than 63 characters, or an empty label, is refused', () => {
  refuses([...BASE, '--domain', `${'a'.repeat(64)}.example`], '--domain', /not a domain name/);
  refuses([...BASE, '--domain', 'vm..example'], '--domain', /not a domain name/);
});

// Regression: errors through the alias used to name the canonical flag, one the user never typed.
test('a bad value given through an alias names the alias the user typed', () => {
  refuses([...BASE, '--bootpd-lease-time', '5'], '--bootpd-lease-time', /whole number/);
});

test('--user and --group go together', () => {
  refuses([...BASE, '--user', 'nobody'], '--user', /together/);
  refuses([...BASE, '--group=nogroup'], '--group', /together/);
});

test('the first bad flag is reported: parsing stops at an unknown flag before checking values', () => {
  refuses(['--vm-fd', 'x', '--nope', BASE[2], BASE[3]], '--nope');
});

test('VM identity and rules: name, external MAC, allow/block with @host, reject', () => {
  const o = parseVmArgs([
    ...BASE,
    '--vm-name=ci-7',
    '--vm-external-mac',
    '02:00:00:00:00:07',
    '--allow=10.0.0.0/8,@host',
    '--block',
    '0.0.0.0/0',
    '--reject',
  ]);
  assert.equal(o.vm.name, 'ci-7');
  assert.equal(o.vm.externalMac, '02:00:00:00:00:07');
  assert.deepEqual(o.vm.allow, ['10.0.0.0/8', '@host']);
  assert.deepEqual(o.vm.block, ['0.0.0.0/0']);
  assert.equal(o.vm.reject, true);
  refuses([...BASE, '--vm-name', 'has space'], '--vm-name', /not a VM name/);
  refuses([...BASE, '--vm-external-mac', '01:00:00:00:00:01'], '--vm-external-mac', /unicast/);
  refuses([...BASE, '--allow', '10.0.0.0/33'], '--allow', /CIDR or @host/);
  refuses([...BASE, '--block', '@gateway'], '--block', /CIDR or @host/);
});

test('port forwards: [BIND:]EXT:INT[/tcp|/udp]', () => {
  const o = parseVmArgs([...BASE, '--expose', '2222:22,127.0.0.1:8080:80/tcp,5353:53/udp']);
  assert.deepEqual(o.vm.expose, ['2222:22', '127.0.0.1:8080:80/tcp', '5353:53/udp']);
  for (const bad of ['22', '2222:', ':22', '70000:22', '2222:0', '1.2.3:22:22', '2222:22/sctp', 'a:b']) {
    refuses([...BASE, '--expose', bad], '--expose', /EXT:INT/);
  }
  refuses([...BASE, '--expose', '2222:22,2222:23'], '--expose', /given twice/);
  // What the VM sends from a forwarded port leaves from that forward's host port: one per VM port.
  refuses([...BASE, '--expose', '2222:22,2223:22'], '--expose', /VM port 22\/tcp is forwarded twice/);
  assert.equal(parseVmArgs([...BASE, '--expose', '2222:22,2222:22/udp']).vm.expose.length, 2);
  // The same host port for TCP and for UDP are two forwards.
  assert.equal(parseVmArgs([...BASE, '--expose', '53:53/tcp,53:53/udp']).vm.expose.length, 2);
});

test('a named network, a DHCP range, reservations and the control socket', () => {
  const o = parseVmArgs([
    ...BASE,
    '--network',
    'ci',
    '--subnet',
    '10.9.0.0/24',
    '--dhcp-range',
    '10.9.0.100-10.9.0.150',
    '--dhcp-host',
    '52:54:00:00:00:01=10.9.0.5,52:54:00:00:00:02=10.9.0.6',
    '--control-socket',
    '/tmp/ctl.sock',
  ]);
  assert.equal(o.network.name, 'ci');
  assert.equal(o.network.hostLink, 'sn-ci');
  assert.equal(o.network.dhcpRange, '10.9.0.100-10.9.0.150');
  assert.deepEqual(o.network.reservations, {
    '52:54:00:00:00:01': '10.9.0.5',
    '52:54:00:00:00:02': '10.9.0.6',
  });
  assert.deepEqual(o.given.sort(), ['cidr', 'dhcpRange', 'name', 'reservations']);
  assert.equal(o.controlSocket, '/tmp/ctl.sock');
  refuses([...BASE, '--dhcp-range', '192.168.64.1-192.168.64.9'], '--dhcp-range', /after its gateway/);
  refuses([...BASE, '--dhcp-range', '192.168.64.9-192.168.64.3'], '--dhcp-range');
  refuses([...BASE, '--dhcp-host', '52:54:00:00:00:01'], '--dhcp-host', /MAC=IP/);
  refuses([...BASE, '--dhcp-host', '52:54:00:00:00:01=10.0.0.5'], '--dhcp-host', /after its gateway/);
  refuses(
    [...BASE, '--dhcp-host', '52:54:00:00:00:01=192.168.64.5,52:54:00:00:00:02=192.168.64.5'],
    '--dhcp-host',
    /reserved for/,
  );
  refuses([...BASE, '--network', 'bad/name'], '--network', /network name/);
});

test('--metrics: ADDR:PORT, [IPv6]:PORT or :PORT; anything else is refused', () => {
  assert.equal(parseVmArgs(BASE).metrics, null);
  assert.deepEqual(parseVmArgs([...BASE, '--metrics', '127.0.0.1:9464']).metrics, {
    host: '127.0.0.1',
    port: 9464,
  });
  assert.deepEqual(parseVmArgs([...BASE, '--metrics=[::1]:9100']).metrics, { host: '::1', port: 9100 });
  assert.deepEqual(parseVmArgs([...BASE, '--metrics', ':9100']).metrics, { host: '0.0.0.0', port: 9100 });
  for (const bad of [
    '9100',
    'localhost:9100',
    '127.0.0.1',
    '127.0.0.1:0',
    '127.0.0.1:65536',
    '1.2.3:80',
    '[::g]:80',
    '',
  ])
    refuses([...BASE, '--metrics', bad], '--metrics');
});
