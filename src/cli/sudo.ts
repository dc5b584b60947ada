// Started by a user rather than root: the per-VM form and `softnet serve` run themselves again as root
// through `sudo -n`, as Tart's Softnet does. They first probe with the very command they will run (-n never
// prompts), so a sudo that would refuse, or want a password, gets one line saying what to install instead.
//
// Run through sudo for a user, softnet takes from that user nothing with which root would touch a path or
// device of the user's choosing (the sudoers drop-in lets them run softnet with any arguments), and its
// engine drops to that user once set up.

import { spawnSync } from 'node:child_process';
import { NotPrivileged, UsageError } from '../engine/errors.js';
import { canOpenNetworks } from '../engine/privileges.js';
import { native } from '../native.js';
import type { EngineSettings } from './args.js';
import { PROBE_FLAG } from './grammar.js';

/** What a flag refused under sudo would have let the user do, and what to do instead. */
const REFUSED: Record<string, string> = {
  '--state-dir': 'root would write and chown where you say; softnet keeps its own',
  '--control-socket': 'root would unlink and bind where you say; softnet keeps its own',
  '--config': 'root would read what you say; give the service its config as root',
  '--control-group': 'its members would control the engine without sudo; the service sets it as root',
  '--vm-tap': 'root would take the device you name; pass its fd with --vm-fd',
  '--vm-netns': 'root would enter the namespace you name; pass the TAP fd with --vm-fd',
  '--vm-socket': 'root would unlink and bind where you say; pass the socket with --vm-fd',
  '--user': 'softnet drops to you',
  '--group': 'softnet drops to your group',
};

/** The user sudo runs this process for, when it runs as root for one other than root. */
function sudoCaller(): { uid: string; gid: string } | null {
  const { SUDO_UID: uid, SUDO_GID: gid } = process.env;
  if (process.geteuid!() !== 0 || !uid || !gid || !/^\d+$/.test(uid) || !/^\d+$/.test(gid)) return null;
  return uid === '0' ? null : { uid, gid };
}

/** Throws UsageError for the first flag that is not taken through sudo. */
function refuseUnderSudo(flags: ReadonlySet<string>): void {
  for (const [flag, why] of Object.entries(REFUSED))
    if (flags.has(flag)) throw new UsageError(flag, `is not taken through sudo: ${why}`);
}

/**
 * Makes sure this process may run an engine. When it can open networks it returns, having applied the
 * limits of the user sudo runs it for, if any (the engine then drops to that user). Otherwise it replaces
 * itself with `sudo -n` running `argv` again, keeping the fds up to `keepFd` (sudo closes those above 2
 * unless told with -C, which the drop-in allows), or throws NotPrivileged when the probe says sudo would not.
 */
export function ensurePrivileged(argv: string[], settings: EngineSettings, keepFd: number | null): void {
  if (canOpenNetworks()) {
    const caller = sudoCaller();
    if (caller === null) return;
    refuseUnderSudo(settings.flagsGiven);
    settings.user = caller.uid;
    settings.group = caller.gid;
    return;
  }
  refuseUnderSudo(settings.flagsGiven);
  const exe = process.argv[1];
  const keep = Math.max(3, (keepFd ?? 0) + 1);
  const sudo = ['-n', ...(keep > 3 ? ['-C', String(keep)] : []), '--', exe, ...argv];
  const probe = spawnSync('sudo', [...sudo, PROBE_FLAG], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (probe.status !== 0) {
    const why = probe.error?.message ?? (probe.stderr.trim().split('\n').pop() || `exit ${probe.status}`);
    throw new NotPrivileged(
      `needs root, and sudo -n may not run ${exe} (${why}): install the sudoers drop-in packaging/sudoers/softnet (make install) and join its group, see docs/privileges.md`,
    );
  }
  native.execvp('sudo', ['sudo', ...sudo], keep);
}
