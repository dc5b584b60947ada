// A real guest: `vmtool run --net-softnet` boots Debian's kernel under QEMU with an initramfs of
// busybox-static (test/lib/guest.ts) whose /init gets a lease from softnet, fetches the world's file through
// NAT and hashes it, looks up a name through the gateway, tries a private address that softnet's policy
// blocks, and says so on the serial console, which is vmtool's stdout. vmtool runs in the world's host
// namespace (test/lib/world.ts), so softnet's uplink is the test's veth. The last guest also takes an IPv6
// address by its kernel's SLAAC from softnet's router advertisement and fetches the file over NAT66.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  buildGuest,
  type GuestImage,
  type GuestReport,
  type GuestTask,
  guestAppend,
  parseConsole,
} from '../lib/guest.js';
import { inPrefix, same6, testUla, vm64 } from '../lib/ipv6.js';
import { countersValue } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import {
  asUser,
  installSudoers,
  makeUser,
  privateMounts,
  removeSudoers,
  removeUser,
  type TestUser,
} from '../lib/users.js';
import {
  GATEWAY,
  HOST_IP,
  HOST_IP6,
  OUTSIDE,
  PORTS,
  SERVER,
  UPLINK,
  WORLD_NAME,
  WORLD_NET,
  WORLD_NET6,
  World,
} from '../lib/world.js';

const run = promisify(execFile);
const VMTOOL = fileURLToPath(new URL('../../src/cli/vmtool.js', import.meta.url));
/** The launchers a user runs, and the sudoers drop-in as shipped (its command rewritten to SOFTNET_BIN). */
const VMTOOL_BIN = fileURLToPath(new URL('../../../bin/vmtool', import.meta.url));
const SOFTNET_BIN = fileURLToPath(new URL('../../../bin/softnet', import.meta.url));
const DROP_IN = readFileSync(
  fileURLToPath(new URL('../../../packaging/sudoers/softnet', import.meta.url)),
  'utf8',
);
/** How long one guest may take from QEMU's start to its exit (about 10 s under TCG here). */
const GUEST_MS = 150_000;
/** How long until the guest's /init says it runs (about 4 s under TCG here). */
const BOOT_MS = 60_000;
/** The served file: big enough to take many TCP windows, small enough for an emulated CPU to hash quickly. */
const FILE_MB = 4;

interface VmRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Why the test stopped the guest, or null when it ended by itself. */
  timedOut: string | null;
  /** The serial console (vmtool's stdout). */
  console: string;
  /** vmtool's stderr: softnet's log lines and QEMU's complaints. */
  log: string;
  report: GuestReport;
  ms: number;
  mac: string;
}

const randomMac = () =>
  `52:54:00:${[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;

/**
 * Runs `vmtool run --net-softnet ... ARGS` in `ns` until QEMU exits, or kills it after GUEST_MS; as root
 * with a state directory of the test's, or as `user` through the installed launcher (bin/vmtool), with
 * softnet's own state (under sudo it takes no other) in a private /run and /var/lib. `more` adds to the
 * guest's task (an IPv6 fetch).
 */
async function runVm(
  topo: Topology,
  ns: string,
  image: GuestImage,
  args: string[],
  user: TestUser | null = null,
  more: Partial<GuestTask> = {},
): Promise<VmRun> {
  const mac = randomMac();
  const append = guestAppend({
    fetch: `http://${SERVER}:${PORTS.http}/random.bin`,
    blocked: `${OUTSIDE}:${PORTS.http}`,
    lookup: WORLD_NAME,
    ...more,
  });
  const started = Date.now();
  const vmArgs = [
    'run',
    '--net-softnet',
    '--mac',
    mac,
    ...args,
    ...(user
      ? []
      : [
          '--net-softnet-arg',
          '--state-dir',
          '--net-softnet-arg',
          `${topo.dir}/state-${mac.replace(/:/g, '')}`,
        ]),
    '--kernel',
    image.kernel,
    '--initrd',
    image.initrd,
    '--append',
    append,
  ];
  const argv = user
    ? privateMounts(['/run', '/var/lib'], [...asUser(user.uid, user.gid), VMTOOL_BIN, ...vmArgs])
    : [process.execPath, VMTOOL, ...vmArgs];
  const child = topo.spawn(ns, argv[0], argv.slice(1));
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString('latin1');
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  let timedOut: string | null = null;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  const stop = (why: string) => {
    if (timedOut !== null || child.exitCode !== null || child.signalCode !== null) return;
    timedOut = why;
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  };
  const timers = [
    setTimeout(() => stop(`the guest did not power off within ${GUEST_MS} ms`), GUEST_MS),
    setTimeout(() => {
      if (!out.includes('GUEST BOOT'))
        stop(
          `the guest's /init did not start within ${BOOT_MS} ms (under TCG it does in a few seconds; ` +
            'a /dev/kvm that cannot run this kernel hangs it too)',
        );
    }, BOOT_MS),
  ];
  const { code, signal } = await exited;
  for (const t of timers) clearTimeout(t);
  return {
    code,
    signal,
    timedOut,
    console: out,
    log: err,
    report: parseConsole(out),
    ms: Date.now() - started,
    mac,
  };
}

/** The end of the console and of the log, for assertion messages. */
function context(r: VmRun): string {
  const tail = (s: string, n: number) => s.split('\n').slice(-n).join('\n');
  return `\n--- serial console (last 60 lines) ---\n${tail(r.console, 60)}\n--- vmtool's stderr (last 40 lines) ---\n${tail(r.log, 40)}`;
}

/** What the guest said, its "GUEST ..." lines. */
const guestLines = (r: VmRun) =>
  r.console
    .split(/\r?\n/)
    .filter((l) => l.includes('GUEST '))
    .map((l) => l.slice(l.indexOf('GUEST ') + 6).trim());

/** The drops softnet counted, from the counters it logs at exit. */
function drops(r: VmRun): string {
  const m = r.log.match(/counters counters=(.*)$/m);
  if (!m) return '(no counters logged)';
  try {
    return JSON.stringify(countersValue(m[1]).drops);
  } catch {
    return m[1];
  }
}

/** Pids of processes whose command line contains `needle`. */
function processesWith(needle: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${name}/cmdline`, 'latin1').replace(/\0/g, ' ').includes(needle))
        found.push(Number(name));
    } catch {}
  }
  return found;
}

/** Asserts that softnet (and QEMU) of run `r` are gone and that softnet removed its host link. */
async function assertGone(topo: Topology, ns: string, r: VmRun): Promise<void> {
  assert.deepEqual(processesWith(r.mac), [], `processes still running with ${r.mac}${context(r)}`);
  const pids = (await run('ip', ['netns', 'pids', ns])).stdout.trim();
  assert.equal(pids, '', `processes left in the host namespace: ${pids}`);
  const link = await topo.status(ns, 'ip', ['link', 'show', 'softnet0']);
  assert.notEqual(link.code, 0, `softnet's host link is still there:\n${link.stdout}`);
  const tables = (await topo.exec(ns, 'nft', ['list', 'tables'])).stdout;
  assert.doesNotMatch(tables, /softnet/, `softnet's nftables table is still there:\n${tables}`);
}

const inSubnet = (ip: string | undefined) => !!ip && /^192\.168\.64\.\d+\/\d+$/.test(ip);

describe('a real guest under QEMU through vmtool', { timeout: 600_000 }, () => {
  const world = new World(new Topology());
  const topo = world.topo;
  let image: GuestImage;
  after(() => world.cleanup());

  before(
    async () => {
      const [img] = await Promise.all([buildGuest(), world.start({ fileMb: FILE_MB })]);
      image = img;
    },
    { timeout: 300_000 },
  );

  test('--net-softnet (datagram socketpair): lease, the file through NAT, a name, a blocked address', {
    timeout: GUEST_MS + 30_000,
  }, async (t) => {
    t.diagnostic(
      `guest: ${image.kernelPackage} ${image.kernelVersion}, modules ${image.modules.join(' ')}; ` +
        `${image.cached ? 'from the cache' : 'built'} in ${image.ms} ms`,
    );
    const r = await runVm(topo, world.host, image, [
      '--net-softnet-allow',
      WORLD_NET,
      '--net-softnet-arg',
      '--uplink',
      '--net-softnet-arg',
      UPLINK,
    ]);
    t.diagnostic(`QEMU ran ${r.ms} ms; the guest said: ${guestLines(r).join(' | ')}`);
    t.diagnostic(`softnet's drops at exit: ${drops(r)}`);
    assert.equal(r.timedOut, null, `${r.timedOut}${context(r)}`);
    assert.deepEqual(r.report.failures, [], `the guest reported failures${context(r)}`);
    assert.equal(r.report.release, image.release, `the guest booted${context(r)}`);
    assert.ok(inSubnet(r.report.lease), `a lease in 192.168.64.0/24, got ${r.report.lease}${context(r)}`);
    assert.equal(r.report.router, GATEWAY, context(r));
    assert.match(r.report.http ?? '', /^HTTP\/1\.[01] 200 /, `the HTTP status${context(r)}`);
    assert.equal(r.report.bytes, world.file.bytes, `the body's length${context(r)}`);
    assert.equal(r.report.sha256, world.file.sha256, `the body's sha256${context(r)}`);
    assert.equal(r.report.dns, SERVER, `${WORLD_NAME} through the gateway's DNS${context(r)}`);
    assert.equal(r.report.blocked, 'ok', `${OUTSIDE} must be out of reach${context(r)}`);
    assert.ok(r.report.done, context(r));
    assert.equal(r.code, 0, `vmtool's exit status${context(r)}`);
    // The world saw the guest's request from the host's uplink address (through NAT).
    assert.ok(
      world.httpLog().some((l) => l.startsWith(`${HOST_IP} `) && l.includes('GET /random.bin')),
      `the HTTP server's log:\n${world.httpLog().join('\n')}`,
    );
    await assertGone(topo, world.host, r);
  });

  test('--net-softnet-socket (QEMU -netdev stream): the same guest gets a lease and the file', {
    timeout: GUEST_MS + 30_000,
  }, async (t) => {
    const r = await runVm(topo, world.host, image, [
      '--net-softnet-socket',
      '--net-softnet-allow',
      WORLD_NET,
      '--net-softnet-arg',
      '--uplink',
      '--net-softnet-arg',
      UPLINK,
    ]);
    t.diagnostic(`QEMU ran ${r.ms} ms; the guest said: ${guestLines(r).join(' | ')}`);
    t.diagnostic(`softnet's drops at exit: ${drops(r)}`);
    assert.equal(r.timedOut, null, `${r.timedOut}${context(r)}`);
    assert.ok(inSubnet(r.report.lease), `a lease in 192.168.64.0/24, got ${r.report.lease}${context(r)}`);
    assert.equal(r.report.sha256, world.file.sha256, `the body's sha256${context(r)}`);
    assert.equal(r.report.blocked, 'ok', context(r));
    assert.deepEqual(r.report.failures, [], `the guest reported failures${context(r)}`);
    assert.equal(r.code, 0, `vmtool's exit status${context(r)}`);
    await assertGone(topo, world.host, r);
  });

  test("a user in the drop-in's group runs vmtool: only softnet gets root, through sudo; the guest gets a lease and the file", {
    timeout: GUEST_MS + 30_000,
  }, async () => {
    const user = makeUser();
    const dropIn = installSudoers(
      DROP_IN.replace('/usr/local/bin/softnet', SOFTNET_BIN).replace('%softnet', `%${user.group}`),
    );
    try {
      const r = await runVm(
        topo,
        world.host,
        image,
        ['--net-softnet-allow', WORLD_NET, '--net-softnet-arg', '--uplink', '--net-softnet-arg', UPLINK],
        user,
      );
      assert.equal(r.timedOut, null, `${r.timedOut}${context(r)}`);
      assert.ok(inSubnet(r.report.lease), `a lease in 192.168.64.0/24, got ${r.report.lease}${context(r)}`);
      assert.equal(r.report.sha256, world.file.sha256, `the body's sha256${context(r)}`);
      assert.deepEqual(r.report.failures, [], `the guest reported failures${context(r)}`);
      assert.equal(r.code, 0, `vmtool's exit status${context(r)}`);
      // softnet ran itself again through sudo, and its engine dropped back to the user.
      assert.match(r.log, new RegExp(`privileges dropped user=${user.uid} group=${user.gid} `), context(r));
      await assertGone(topo, world.host, r);
    } finally {
      removeSudoers(dropIn);
      removeUser(user);
    }
  });
});

describe('a real guest under QEMU through vmtool, with IPv6', { timeout: 600_000 }, () => {
  const world = new World(new Topology());
  const topo = world.topo;
  const ula = testUla();
  let image: GuestImage;
  after(() => world.cleanup());

  before(
    async () => {
      const [img] = await Promise.all([buildGuest(), world.start({ fileMb: FILE_MB, ipv6: true })]);
      image = img;
    },
    { timeout: 300_000 },
  );

  test("the guest's kernel takes an address in its /64 by SLAAC and fetches the file over NAT66", {
    timeout: GUEST_MS + 30_000,
  }, async (t) => {
    const r = await runVm(
      topo,
      world.host,
      image,
      [
        '--net-softnet-allow',
        `${WORLD_NET},${WORLD_NET6}`,
        '--net-softnet-arg',
        '--uplink',
        '--net-softnet-arg',
        UPLINK,
        '--net-softnet-arg',
        '--ipv6-prefix',
        '--net-softnet-arg',
        ula.cidr,
      ],
      null,
      { fetch6: world.file.url6 },
    );
    t.diagnostic(`QEMU ran ${r.ms} ms; the guest said: ${guestLines(r).join(' | ')}`);
    t.diagnostic(`softnet's drops at exit: ${drops(r)}`);
    assert.equal(r.timedOut, null, `${r.timedOut}${context(r)}`);
    assert.deepEqual(r.report.failures, [], `the guest reported failures${context(r)}`);
    assert.ok(inSubnet(r.report.lease), `a lease in 192.168.64.0/24, got ${r.report.lease}${context(r)}`);
    assert.equal(r.report.sha256, world.file.sha256, `the IPv4 body's sha256${context(r)}`);
    const [addr, len] = (r.report.address6 ?? '/').split('/');
    assert.ok(
      addr !== '' && inPrefix(addr, vm64(ula, 1)) && len === '64',
      `a SLAAC address in ${vm64(ula, 1)}, got ${r.report.address6}${context(r)}`,
    );
    assert.ok(
      r.report.router6 !== undefined &&
        /^[0-9a-f:]+$/.test(r.report.router6) &&
        same6(r.report.router6, 'fe80::1'),
      `the default router fe80::1, got ${r.report.router6}${context(r)}`,
    );
    assert.match(r.report.http6 ?? '', /^HTTP\/1\.[01] 200 /, `the IPv6 HTTP status${context(r)}`);
    assert.equal(r.report.bytes6, world.file.bytes, `the IPv6 body's length${context(r)}`);
    assert.equal(r.report.sha256v6, world.file.sha256, `the IPv6 body's sha256${context(r)}`);
    assert.ok(r.report.done, context(r));
    assert.equal(r.code, 0, `vmtool's exit status${context(r)}`);
    // The world saw the IPv6 request from the host's uplink address (through NAT66), the IPv4 one from its
    // IPv4 address.
    const log = world.httpLog();
    assert.ok(
      log.some((l) => l.startsWith(`${HOST_IP6} `) && l.includes('GET /random.bin')),
      `the HTTP servers' log:\n${log.join('\n')}`,
    );
    assert.ok(
      log.some((l) => l.startsWith(`${HOST_IP} `) && l.includes('GET /random.bin')),
      `the HTTP servers' log:\n${log.join('\n')}`,
    );
    await assertGone(topo, world.host, r);
  });
});
