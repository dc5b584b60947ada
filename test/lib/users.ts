// Throwaway users, groups and sudoers drop-ins for the privileges tests, and the commands that run
// something as such a user. Everything made here is removed when the test is done with it, and from an
// exit handler if the test process dies; what a killed test process left (its pid is in every name) is
// removed by the next one. A sudoers file must never stay behind: it would be a hole in the machine.

import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A system user made for one test, with a group of its own (its primary one). */
export interface TestUser {
  name: string;
  uid: number;
  /** Its group's name and id. */
  group: string;
  gid: number;
}

const SUDOERS_DIR = '/etc/sudoers.d';
const me = process.pid.toString(36);
const USER_RE = /^snt([0-9a-z]+)x\d+$/;
const SUDOERS_RE = /^softnet-test-([0-9a-z]+)-\d+$/;
let counter = 0;
const users = new Set<string>();
const sudoers = new Set<string>();

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const quiet = (cmd: string, args: string[]) => {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' });
  } catch {}
};

function removeUserSync(name: string): void {
  quiet('userdel', ['--force', name]);
  quiet('groupdel', [name]);
  users.delete(name);
}

function removeSudoersSync(path: string): void {
  rmSync(path, { force: true });
  sudoers.delete(path);
}

/** Removes the users, groups and sudoers files of test processes that are gone. */
function sweep(): void {
  const dead = (re: RegExp, name: string) => {
    const m = re.exec(name);
    return m !== null && m[1] !== me && !alive(Number.parseInt(m[1], 36));
  };
  for (const f of readdirSync(SUDOERS_DIR))
    if (dead(SUDOERS_RE, f)) rmSync(join(SUDOERS_DIR, f), { force: true });
  const names = new Set(
    ['/etc/passwd', '/etc/group'].flatMap((f) =>
      readFileSync(f, 'utf8')
        .split('\n')
        .map((l) => l.split(':')[0]),
    ),
  );
  for (const n of names) if (dead(USER_RE, n)) removeUserSync(n);
}

process.on('exit', () => {
  for (const p of [...sudoers]) removeSudoersSync(p);
  for (const u of [...users]) removeUserSync(u);
});
// An interrupted test run still runs the exit handler.
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  if (process.listenerCount(sig) === 0)
    process.once(sig, () => process.exit(128 + (sig === 'SIGINT' ? 2 : 15)));
}

/** Makes a system user with a group of the same name, no home and no login shell. */
export function makeUser(): TestUser {
  if (users.size === 0) sweep();
  const name = `snt${me}x${counter++}`;
  users.add(name);
  execFileSync('groupadd', ['--system', name]);
  execFileSync('useradd', [
    '--system',
    '--no-create-home',
    '--shell',
    '/usr/sbin/nologin',
    '--gid',
    name,
    name,
  ]);
  const id = (flag: string) => Number(execFileSync('id', [flag, name], { encoding: 'utf8' }).trim());
  return { name, uid: id('-u'), group: name, gid: id('-g') };
}

/** Removes a user made by makeUser, and its group. */
export function removeUser(user: TestUser): void {
  removeUserSync(user.name);
}

/** Installs `text` as a sudoers drop-in once visudo accepts it; returns its path, for removeSudoers. */
export function installSudoers(text: string): string {
  if (sudoers.size === 0) sweep();
  // No dot in the name: sudo skips such files in /etc/sudoers.d.
  const path = join(SUDOERS_DIR, `softnet-test-${me}-${counter++}`);
  const tmp = `${path}~`;
  sudoers.add(path);
  writeFileSync(tmp, text, { mode: 0o440 });
  try {
    execFileSync('visudo', ['-cqf', tmp]);
    renameSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
  return path;
}

/** Removes a sudoers drop-in made by installSudoers. */
export function removeSudoers(path: string): void {
  removeSudoersSync(path);
}

/** `setpriv` arguments that run a command as `uid`/`gid` with only `groups`, no capabilities, a plain environment. */
export function asUser(uid: number, gid: number, groups: number[] = [gid]): string[] {
  const g = groups.length > 0 ? ['--groups', groups.join(',')] : ['--clear-groups'];
  return ['setpriv', '--reuid', String(uid), '--regid', String(gid), ...g, '--reset-env', '--'];
}

/**
 * A command line that runs `argv` in a mount namespace of its own with `tmpfs` mounted on `dirs` and a
 * /dev/net/tun open to every user (mode 0666, as udev makes it; this machine's bare /dev has it 0600).
 */
export function privateMounts(dirs: string[], argv: string[]): string[] {
  const mounts = [...dirs, '/dev/net'].map((d) => `mount -t tmpfs -o mode=0755 tmpfs ${d}`).join(' && ');
  const script = `${mounts} && mknod -m 0666 /dev/net/tun c 10 200 && exec "$@"`;
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', script, 'sh', ...argv];
}
