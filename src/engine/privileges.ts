// Dropping root after set-up: the open fds keep working, and nothing after start needs privileges.

import { readFileSync } from 'node:fs';

function lookup(file: string, name: string): number {
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return Number(f[2]);
  }
  if (/^\d+$/.test(name)) return Number(name);
  throw new Error(`no such ${file === '/etc/passwd' ? 'user' : 'group'}: ${name}`);
}

/** Switches to `user`/`group` (names or numbers); `prepare` first gets their ids to hand over files. */
export function dropPrivileges(
  user: string,
  group: string,
  prepare: (uid: number, gid: number) => void,
): void {
  const uid = lookup('/etc/passwd', user);
  const gid = lookup('/etc/group', group);
  prepare(uid, gid);
  process.setgroups!([gid]);
  process.setgid!(gid);
  process.setuid!(uid);
}
