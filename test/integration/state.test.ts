// The engine's own state files when the host lets them down: a file that cannot be read is moved aside and
// the engine starts without it; a full or read-only disk leaves forwarding and leasing going on in memory,
// with one log line when writes start failing and one when they work again, and the newest leases written
// once the disk takes them. A bad config file given by the operator is still a usage error.
//
// The disks are real. A full one: a 64 KiB tmpfs as the state directory, filled with dd (ENOSPC), mounted
// in this (the root) mount namespace before softnet starts, so the mount namespace `ip netns exec` gives
// softnet holds it too, and filling and freeing it act on the one file system both see. A read-only one
// (EROFS): Linux refuses to remount a file system read-only while a file on it is open for writing, and
// the engine holds its lock file so; so the state directory is bound onto itself in softnet's own mount
// namespace and that new mount, which nothing has open, is made read-only, then writable again. Files
// opened from then on, as every state write does, see it; it goes with softnet's mount namespace.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Udhcpc } from '../lib/clients.js';
import { type Softnet, softnetCommand, softnetForVm, startSoftnet } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';

const GATEWAY = '192.168.64.1';
const mounts: string[] = [];

/** Unmounts every tmpfs a test mounted (lazily: softnet may still hold files there). */
function unmountAll(): void {
  for (const dir of mounts.splice(0)) {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    } catch {}
  }
}
// Before the topology's own exit handler, which removes the directory the mounts are in.
process.prependListener('exit', unmountAll);

/** A fresh state directory on a tmpfs of 64 KiB, unmounted at cleanup. */
function smallDisk(dir: string): string {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', dir]);
  mounts.push(dir);
  return dir;
}

/** Fills the file system of `dir` with dd until it has no space left. */
function fill(dir: string): void {
  const dd = spawnSync('dd', ['if=/dev/zero', `of=${dir}/fill`, 'bs=4k'], { encoding: 'utf8' });
  assert.match(dd.stderr, /No space left on device/);
}

/** The leases in a lease file. */
function leasesIn(file: string): Array<{ key: string; ip: string; expires: string }> {
  return JSON.parse(readFileSync(file, 'utf8')).leases;
}

/** `softnet show VM --json` against the engine of state directory `state`. */
async function show(topo: Topology, ns: string, state: string, vm: string): Promise<Record<string, unknown>> {
  const r = await softnetCommand(topo, ns, [
    'show',
    vm,
    '--json',
    '--control-socket',
    `${state}/control.sock`,
  ]);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** The lines of `s` that match `re`. */
function linesOf(s: Softnet, re: RegExp): string[] {
  return s.lines.filter((l) => re.test(l));
}

describe('state files', () => {
  const topo = new Topology();
  after(async () => {
    unmountAll();
    await topo.cleanup();
  });

  test('unreadable state files are moved aside, logged once each, and a returning VM keeps its address', async () => {
    const state = `${topo.dir}/s1`;
    mkdirSync(state);
    const leases = `${state}/softnet0.leases.json`;
    const attachments = `${state}/attachments.json`;
    const cut = '{"version":1,"leases":[{"key":"vm:52:54:00:00:11:01","mac":"52:54:00:00:11:01","ip":"192.1';
    const wrongVersion = JSON.stringify({ version: 7, vms: [] });
    writeFileSync(leases, cut);
    writeFileSync(attachments, wrongVersion);
    const host = await topo.netns('h1');
    const vm = await topo.netns('v1');
    const softnet = await softnetForVm(topo, host, vm, '52:54:00:00:11:01', ['--state-dir', state]);
    const aside = linesOf(softnet, /state file unreadable/);
    assert.equal(aside.length, 2, softnet.lines.join('\n'));
    for (const [file, content] of [
      [leases, cut],
      [attachments, wrongVersion],
    ]) {
      const line = aside.find((l) => l.includes(`file=${file} `));
      assert.ok(line, `a line names ${file}:\n${aside.join('\n')}`);
      assert.match(line, /^softnet: warn: state file unreadable, moved aside .*reason=/);
      const moved = line.match(/moved_to=(\S+)$/)![1];
      assert.match(moved, new RegExp(`^${file.replace(/\./g, '\\.')}\\.corrupt-`));
      assert.equal(readFileSync(moved, 'utf8'), content, 'moved aside as it was');
    }
    // The VM asks for the address it had; nobody else holds it, so it keeps it.
    const lease = await new Udhcpc(topo, vm).once(['-r', '192.168.64.9']);
    assert.equal(lease.ip, '192.168.64.9');
    await topo.exec(vm, 'ping', ['-c', '1', '-W', '2', GATEWAY]);
    assert.deepEqual(
      leasesIn(leases).map((l) => l.ip),
      ['192.168.64.9'],
    );
    assert.equal(softnet.child.exitCode, null);
  });

  test("a lease file lost while its VM is away: the address the VM's record keeps is bound again for it, never given to another", {
    timeout: 60_000,
  }, async () => {
    const state = `${topo.dir}/s-rebuild`;
    mkdirSync(state);
    const host = await topo.netns('h-rb');
    const a = await topo.netns('a-rb');
    let softnet = await softnetForVm(topo, host, a, '52:54:00:00:12:01', ['--state-dir', state]);
    const lease = await new Udhcpc(topo, a).once();
    const ip = lease.ip.replace(/\./g, '\\.');
    await softnet.stop('SIGKILL');
    writeFileSync(`${state}/softnet0.leases.json`, '{"version":1,"leases":[{"ke');
    softnet = await softnetForVm(topo, host, a, '52:54:00:00:12:01', ['--state-dir', state]);
    await softnet.waitFor(new RegExp(`lease rebuilt from the attachment record .*ip=${ip} `));
    await softnet.waitFor(new RegExp(`vm attached .* ip=${ip}$`));
    // The VM's NIC came back with softnet: the address it had works at once, before any DHCP.
    await topo.exec(a, 'ip', ['addr', 'add', `${lease.ip}/24`, 'dev', 'eth0']);
    await topo.exec(a, 'ping', ['-c', '1', '-W', '2', GATEWAY]);
    const b = await topo.netns('b-rb');
    await softnetForVm(topo, host, b, '52:54:00:00:12:02', ['--state-dir', state]);
    const other = await new Udhcpc(topo, b).once(['-r', lease.ip]);
    assert.notEqual(other.ip, lease.ip);
  });

  test('a bad --config file is still a usage error', async () => {
    const host = await topo.netns('h-cfg');
    const config = `${topo.dir}/bad-config.json`;
    writeFileSync(config, '{"networks": [');
    const serve = startSoftnet(topo, host, ['serve', '--config', config, '--state-dir', `${topo.dir}/s-cfg`]);
    const { code } = await serve.exited;
    assert.equal(code, 2);
    assert.match(serve.lines.join('\n'), /^softnet: --config: /m);
  });

  test('a full disk: leasing and forwarding go on, one line each way, no temp file, the newest leases land when freed', async () => {
    const state = smallDisk(`${topo.dir}/s2`);
    const leases = `${state}/softnet0.leases.json`;
    const host = await topo.netns('h2');
    const a = await topo.netns('a2');
    const b = await topo.netns('b2');
    const softnet = await softnetForVm(topo, host, a, '52:54:00:00:12:01', ['--state-dir', state]);
    const first = await new Udhcpc(topo, a).once();
    fill(state);
    // A second VM attaches and gets a lease: both the attachment file and the lease file fail to be written.
    await softnetForVm(topo, host, b, '52:54:00:00:12:02', ['--state-dir', state]);
    const second = await new Udhcpc(topo, b).once();
    assert.notEqual(second.ip, first.ip);
    const failing = await softnet.waitFor(/state not persisted.*$/);
    assert.match(failing[0], /^state not persisted.* file=\S+ error=ENOSPC$/);
    for (const vm of [a, b]) await topo.exec(vm, 'ping', ['-c', '1', '-W', '2', GATEWAY]);
    const degraded = await show(topo, host, state, second.ip);
    assert.equal(degraded.statePersisted, false);
    assert.match(String(degraded.stateError), /ENOSPC$/);
    assert.deepEqual(
      readdirSync(state).filter((f) => f.includes('.tmp-')),
      [],
    );
    assert.deepEqual(
      leasesIn(leases).map((l) => l.ip),
      [first.ip],
      'the second lease is not on disk yet',
    );
    rmSync(`${state}/fill`);
    await softnet.waitFor(/state persisted again/, 120_000);
    assert.deepEqual(
      leasesIn(leases)
        .map((l) => l.ip)
        .sort(),
      [first.ip, second.ip].sort(),
    );
    const attached = JSON.parse(readFileSync(`${state}/attachments.json`, 'utf8')).vms;
    assert.equal(attached.length, 2);
    assert.equal((await show(topo, host, state, second.ip)).statePersisted, true);
    assert.equal(linesOf(softnet, /state not persisted/).length, 1, softnet.lines.join('\n'));
    assert.equal(linesOf(softnet, /state persisted again/).length, 1, softnet.lines.join('\n'));
    assert.deepEqual(
      readdirSync(state).filter((f) => f.includes('.tmp-')),
      [],
    );
  });

  test('a read-only disk: a renewal goes on in memory, and lands on disk when the disk is writable again', async () => {
    const state = `${topo.dir}/s3`;
    const leases = `${state}/softnet0.leases.json`;
    const host = await topo.netns('h3');
    const vm = await topo.netns('v3');
    const softnet = await softnetForVm(topo, host, vm, '52:54:00:00:13:01', ['--state-dir', state]);
    const client = new Udhcpc(topo, vm);
    const daemon = client.daemon();
    const bound = await softnet.waitFor(/lease bound ip=(\S+)/);
    const before = leasesIn(leases)[0].expires;
    // The renewal's expiry must differ from the first one's, to tell the newest content from a stale one.
    await sleep(1100);
    const inSoftnet = ['-t', String(softnet.child.pid), '-m', 'mount'];
    execFileSync('nsenter', [...inSoftnet, '--bind', state, state]);
    execFileSync('nsenter', [...inSoftnet, '-o', 'remount,bind,ro', state]);
    const from = softnet.lines.length;
    daemon.kill('SIGUSR1');
    await softnet.waitFor(/lease renewed/, 20_000, from);
    const failing = await softnet.waitFor(/state not persisted.*$/, 20_000, from);
    assert.match(failing[0], /file=\S+softnet0\.leases\.json error=EROFS$/);
    // The client's script flushes and adds its address again after a renewal: the ping may fall in between.
    while (!client.events().some((e) => e.event === 'renew')) await sleep(50);
    let pinged = false;
    for (let i = 0; i < 10 && !pinged; i++)
      pinged = (await topo.status(vm, 'ping', ['-c', '1', '-W', '2', GATEWAY])).code === 0;
    assert.ok(pinged, 'the VM reaches its gateway');
    const degraded = await show(topo, host, state, bound[1]);
    assert.equal(degraded.statePersisted, false);
    const renewed = Date.parse(String(degraded.leaseExpires));
    assert.equal(leasesIn(leases)[0].expires, before, 'the file still has the first expiry');
    execFileSync('nsenter', [...inSoftnet, '-o', 'remount,bind,rw', state]);
    await softnet.waitFor(/state persisted again/, 120_000, from);
    const after = Date.parse(leasesIn(leases)[0].expires);
    assert.ok(after > Date.parse(before), 'the renewal, not the first binding, is on disk');
    // The file is written in wall time from the monotonic expiry: the same instant as `show` gives, to
    // the millisecond or so the two clocks are read apart.
    assert.ok(Math.abs(after - renewed) < 1000, `${after} vs ${renewed}`);
    assert.equal(linesOf(softnet, /state not persisted/).length, 1);
    assert.equal(linesOf(softnet, /state persisted again/).length, 1);
    assert.deepEqual(
      readdirSync(state).filter((f) => f.includes('.tmp-')),
      [],
    );
    daemon.kill('SIGTERM');
  });
});
