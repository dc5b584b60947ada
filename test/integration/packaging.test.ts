// The files of packaging/, checked as far as this machine can: the sudoers drop-in by visudo, the systemd
// unit by systemd-analyze (offline: systemd is not this machine's init, so the unit is never run here) and
// its sysusers entry by systemd-sysusers into a scratch root, the launchd plist by Python's plistlib
// (syntax only: no macOS here). The unit and the engine must agree on
// the capabilities, and the drop-in must let sudo keep the VM's fd. `make install` into a DESTDIR puts both
// commands on PATH, with their man pages and the bash completion where man and bash-completion look.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KEPT_NAMES } from '../../src/engine/privileges.js';
import { VERSION } from '../../src/version.js';

const run = promisify(execFile);
const file = (path: string) => fileURLToPath(new URL(`../../../${path}`, import.meta.url));
const BIN = file('bin/softnet');

describe('packaging', () => {
  test('the sudoers drop-in parses, names only the softnet binary and allows -C', async () => {
    await run('visudo', ['-cqf', file('packaging/sudoers/softnet')]);
    const rules = readFileSync(file('packaging/sudoers/softnet'), 'utf8')
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'));
    assert.deepEqual(rules, [
      'Cmnd_Alias SOFTNET_CMD = /usr/local/bin/softnet',
      'Defaults!SOFTNET_CMD closefrom_override',
      '%softnet ALL = (root) NOPASSWD: SOFTNET_CMD',
    ]);
  });

  test('the systemd unit verifies, and keeps the capabilities the engine keeps', async () => {
    const unit = readFileSync(file('packaging/systemd/softnet.service'), 'utf8');
    const dir = mkdtempSync(join(tmpdir(), 'softnet-unit-'));
    try {
      // systemd-analyze checks that ExecStart= exists: point it at this tree's binary.
      writeFileSync(join(dir, 'softnet.service'), unit.replaceAll('/usr/local/bin/softnet', BIN));
      const r = await run('systemd-analyze', ['verify', join(dir, 'softnet.service')]);
      assert.equal(r.stderr, '');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const kept = KEPT_NAMES.toUpperCase().split(',').sort();
    for (const key of ['AmbientCapabilities', 'CapabilityBoundingSet']) {
      const line = new RegExp(`^${key}=(.*)$`, 'm').exec(unit);
      assert.deepEqual(line?.[1].split(' ').sort(), kept, key);
    }
  });

  test('the sysusers entry makes user and group softnet', async () => {
    const root = mkdtempSync(join(tmpdir(), 'softnet-sysusers-'));
    try {
      mkdirSync(join(root, 'etc'));
      await run('systemd-sysusers', [`--root=${root}`, file('packaging/systemd/softnet.sysusers')]);
      const entry = (f: string) =>
        readFileSync(join(root, 'etc', f), 'utf8')
          .split('\n')
          .find((l) => l.startsWith('softnet:'));
      assert.match(entry('passwd') ?? '', /^softnet:x:\d+:\d+:[^:]*:\/var\/lib\/softnet:\S*nologin$/);
      assert.match(entry('group') ?? '', /^softnet:x:\d+:$/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('the launchd plist parses', async () => {
    const script =
      'import plistlib, sys, json; print(json.dumps(plistlib.load(open(sys.argv[1], "rb"))["ProgramArguments"]))';
    const r = await run('/usr/bin/python3', [
      '-c',
      script,
      file('packaging/launchd/org.softnet.serve.plist'),
    ]);
    assert.deepEqual(JSON.parse(r.stdout), ['/usr/local/bin/softnet', 'serve', '--control-group', 'admin']);
  });

  test('make install into a DESTDIR: softnet and vmtool on PATH, their man pages, the bash completion', {
    timeout: 240_000,
  }, async () => {
    const dest = mkdtempSync(join(tmpdir(), 'softnet-install-'));
    try {
      // -o build: this tree is built already, and a rebuild of the addon would pull it from under the
      // tests running beside this one.
      await run('make', ['-o', 'build', 'install', `DESTDIR=${dest}`, 'PREFIX=/usr/local'], {
        cwd: file(''),
        timeout: 200_000,
      });
      const prefix = join(dest, 'usr/local');
      for (const cmd of ['softnet', 'vmtool']) {
        assert.equal(readlinkSync(join(prefix, 'bin', cmd)), `../lib/softnet/bin/${cmd}`);
        const r = await run(join(prefix, 'bin', cmd), ['--version']);
        assert.equal(r.stdout, `${cmd} ${VERSION}\n`);
        const help = await run(join(prefix, 'bin', cmd), ['--help']);
        assert.match(help.stdout, new RegExp(`^usage: ${cmd} `));
      }
      // man finds each page by name under the installed tree.
      for (const [name, section] of [
        ['softnet', '8'],
        ['softnet-serve', '8'],
        ['softnet-network', '8'],
        ['vmtool', '1'],
      ]) {
        const r = await run('man', ['-w', section, name], {
          env: { ...process.env, MANPATH: join(prefix, 'share/man') },
        });
        assert.equal(r.stdout.trim(), join(prefix, `share/man/man${section}/${name}.${section}`));
        assert.equal(
          readFileSync(r.stdout.trim(), 'utf8'),
          readFileSync(file(`man/${name}.${section}`), 'utf8'),
        );
      }
      const completions = join(prefix, 'share/bash-completion/completions');
      assert.equal(
        readFileSync(join(completions, 'softnet'), 'utf8'),
        readFileSync(file('completions/softnet.bash'), 'utf8'),
      );
      assert.equal(readlinkSync(join(completions, 'vmtool')), 'softnet');
    } finally {
      rmSync(dest, { recursive: true, force: true });
    }
  });
});
