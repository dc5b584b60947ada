// Privileges with real users: an engine that drops to --user/--group keeps exactly its capabilities and
// opens a second network, NAT guard included, for a VM that comes after the drop; a user without root
// gets the per-VM form through the shipped sudoers drop-in, with its inherited --vm-fd, or one line when
// sudo would not; softnet serve runs as its systemd unit runs it (a service user with ambient
// capabilities), and a member of the control group, not root, uses its control socket.

import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AMBIENT_CAPS, KEPT_CAPS } from '../../src/engine/privileges.js';
import { native, PortMode } from '../../src/native.js';
import { parseMac } from '../../src/wire/addr.js';
import { FramePeer } from '../lib/frame-peer.js';
import { DhcpOption, DhcpType, dhcpFrame, dhcpReply } from '../lib/frames.js';
import { SOFTNET, Softnet, startSoftnet, withControl } from '../lib/softnet.js';
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
import { HOST_IP, PORTS, reservedPorts, SERVER, UPLINK, vmOnline, WORLD_NET, World } from '../lib/world.js';

/** The command as a user runs it (the sudoers drop-in names it), and the drop-in as shipped. */
const BIN = fileURLToPath(new URL('../../../bin/softnet', import.meta.url));
const DROP_IN = readFileSync(
  fileURLToPath(new URL('../../../packaging/sudoers/softnet', import.meta.url)),
  'utf8',
);

/** A capability mask as /proc/PID/status prints it. */
const hex = (mask: number) => mask.toString(16).padStart(16, '0');

/** What /proc says a thread of `pid` is and may do. */
function creds(pid: number, tid = pid): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8').split('\n')) {
    const m = /^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):\s*(.*?)\s*$/.exec(line);
    if (m) out[m[1]] = m[2].replace(/\s+/g, ' ');
  }
  return out;
}

/** Checks that `pid` runs as `user` with exactly the kept capabilities, and that no thread of it has more. */
function assertDropped(pid: number, user: TestUser): void {
  const c = creds(pid);
  const ids = (id: number) => `${id} ${id} ${id} ${id}`;
  assert.equal(c.Uid, ids(user.uid));
  assert.equal(c.Gid, ids(user.gid));
  assert.equal(c.Groups, `${user.gid}`);
  assert.equal(c.CapPrm, hex(KEPT_CAPS));
  assert.equal(c.CapEff, hex(KEPT_CAPS));
  assert.equal(c.CapInh, hex(AMBIENT_CAPS));
  assert.equal(c.CapAmb, hex(AMBIENT_CAPS));
  assert.equal(c.NoNewPrivs, '1');
  // Node's helper threads that existed at the drop lost every capability with root; none has more.
  for (const tid of readdirSync(`/proc/${pid}/task`).map(Number)) {
    const t = creds(pid, tid);
    assert.equal(t.Uid, c.Uid, `thread ${tid}`);
    for (const set of ['CapPrm', 'CapEff'])
      assert.ok([hex(KEPT_CAPS), hex(0)].includes(t[set]), `thread ${tid}: ${set} ${t[set]}`);
  }
}

/** "<address> <port>" as the world's peer server saw a connection from `ns`. */
async function peerSeen(topo: Topology, ns: string): Promise<{ ip: string; port: number }> {
  const r = await topo.exec(ns, 'curl', ['-sS', '-m', '5', `http://${SERVER}:${PORTS.peer}/`], 15_000);
  const [ip, port] = r.stdout.trim().split(' ');
  return { ip, port: Number(port) };
}

/** softnet's nftables tables in `ns`. */
async function softnetTables(topo: Topology, ns: string): Promise<string[]> {
  const r = await topo.exec(ns, 'nft', ['list', 'tables']);
  return r.stdout.split('\n').filter((l) => /^table \S+ softnet/.test(l));
}

describe('--user and --group: the engine keeps what opens networks', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  let user: TestUser | null = null;
  after(async () => {
    await world.cleanup();
    if (user) removeUser(user);
  });

  test('exact capabilities after the drop, and a second network with its own NAT guard for a later VM', async () => {
    await world.start({ fileMb: 1 });
    user = makeUser();
    // The dropped engine writes its leases under here.
    chmodSync(topo.dir, 0o711);
    const state = `${topo.dir}/state`;
    const nat = ['--uplink', UPLINK, '--allow', WORLD_NET];
    const vm1 = await topo.netns('v1');
    const argv = privateMounts(
      [],
      [
        process.execPath,
        SOFTNET,
        ...withControl(topo, [
          '--vm-netns',
          `/run/netns/${vm1}`,
          '--vm-mac-address',
          '52:54:00:70:00:01',
          '--state-dir',
          state,
          '--user',
          user.name,
          '--group',
          user.group,
          '--nat-ports',
          '61000-61999',
          ...nat,
        ]),
      ],
    );
    const engine = new Softnet(topo.spawn(world.host, argv[0], argv.slice(1)));
    await engine.waitFor(
      new RegExp(`privileges dropped user=${user.name} group=${user.group} capabilities=\\S+`),
    );
    await engine.waitFor(/ started .*engine=self/);
    const pid = engine.child.pid!;
    assertDropped(pid, user);
    assert.ok(!engine.lines.some((l) => l.includes('/dev/net/tun')), engine.lines.join('\n'));

    await vmOnline(topo, vm1);
    const first = await peerSeen(topo, vm1);
    assert.equal(first.ip, HOST_IP);
    assert.ok(first.port >= 61000 && first.port <= 61999, `port ${first.port}`);

    // A VM that comes now asks for another host link, subnet and port range: a new TAP, sysctls, raw and
    // packet sockets and an nftables guard, all opened by the dropped engine.
    const vm2 = await topo.netns('v2');
    const second = startSoftnet(topo, world.host, [
      '--vm-netns',
      `/run/netns/${vm2}`,
      '--vm-mac-address',
      '52:54:00:70:00:02',
      '--state-dir',
      state,
      '--host-link',
      'softnet1',
      '--subnet',
      '192.168.65.0/24',
      '--nat-ports',
      '62000-62999',
      ...nat,
    ]);
    await second.waitFor(new RegExp(` started .*host_link=softnet1 .*engine=${pid}$`));
    const lease = await vmOnline(topo, vm2);
    assert.match(lease.ip, /^192\.168\.65\./);
    const seen = await peerSeen(topo, vm2);
    assert.equal(seen.ip, HOST_IP);
    assert.ok(seen.port >= 62000 && seen.port <= 62999, `port ${seen.port}`);
    const tables = await softnetTables(topo, world.host);
    assert.ok(tables.includes(`table ip softnet_${UPLINK}_62000_62999_${pid}`), tables.join('\n'));
    assertDropped(pid, user);

    // The dropped engine also undoes all it made: guards, reserved ports, host links.
    await second.stop();
    assert.equal((await engine.stop()).code, 0);
    assert.deepEqual(await softnetTables(topo, world.host), []);
    const reserved = (await reservedPorts(topo, world.host)).filter(([a, b]) => a <= 62999 && b >= 61000);
    assert.deepEqual(reserved, []);
    const links = await topo.exec(world.host, 'ip', ['-o', 'link']);
    assert.doesNotMatch(links.stdout, /softnet[01]/);
  });
});

describe('sudo: a user without root', () => {
  const topo = new Topology();
  let user: TestUser | null = null;
  let dropIn: string | null = null;
  after(async () => {
    await topo.cleanup();
    if (dropIn) removeSudoers(dropIn);
    if (user) removeUser(user);
  });

  const mac = '52:54:00:70:01:01';
  // Softnet's own state and control socket (under sudo it takes no others) are private to this test.
  const asTheUser = (u: TestUser, args: string[]) =>
    privateMounts(['/run', '/var/lib'], [...asUser(u.uid, u.gid), ...args]);

  test('gets the per-VM form through the drop-in, keeping its --vm-fd, and the engine drops to it', async () => {
    user = makeUser();
    dropIn = installSudoers(
      DROP_IN.replace('/usr/local/bin/softnet', BIN).replace('%softnet', `%${user.group}`),
    );
    const host = await topo.netns('host');
    const [vmEnd, softnetEnd] = native.socketpair('dgram');
    const argv = asTheUser(user, [BIN, '--vm-fd', '3', '--vm-mac-address', mac, '--lease-time', '120']);
    const s = new Softnet(topo.spawn(host, argv[0], argv.slice(1), [softnetEnd]));
    native.closeFd(softnetEnd);
    await s.waitFor(new RegExp(`privileges dropped user=${user.uid} group=${user.gid} `));
    await s.waitFor(/ started .*engine=self/);
    // The process started is sudo now; softnet is its child.
    const sudoPid = s.child.pid!;
    const cmdline = readFileSync(`/proc/${sudoPid}/cmdline`, 'utf8').split('\0');
    assert.deepEqual(cmdline.slice(0, 6), ['sudo', '-n', '-C', '4', '--', BIN]);
    const pid = Number(readFileSync(`/proc/${sudoPid}/task/${sudoPid}/children`, 'utf8').trim());
    assertDropped(pid, user);

    const vm = new FramePeer(vmEnd, PortMode.DGRAM);
    const hw = parseMac(mac)!;
    vm.send(dhcpFrame(hw, 0x51, DhcpType.DISCOVER));
    const offer = dhcpReply(await vm.receive((f) => dhcpReply(f)?.msg.type === DhcpType.OFFER))!;
    const u32 = (v: number) => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
    vm.send(dhcpFrame(hw, 0x52, DhcpType.REQUEST, [[DhcpOption.REQUESTED_IP, u32(offer.msg.yiaddr)]]));
    await vm.receive((f) => dhcpReply(f)?.msg.type === DhcpType.ACK);
    await s.waitFor(/lease bound ip=192\.168\.64\.\d+ /);
    // sudo passes SIGTERM on to softnet, which detaches its VM and exits 0.
    assert.equal((await s.stop()).code, 0);
    vm.close();
  });

  test('is refused, in one line, the flags with which root would use a path or device it names', async () => {
    const host = await topo.netns('refuse');
    const u = user!;
    const base = ['--vm-fd', '3', '--vm-mac-address', mac];
    // Before sudo, and when the user runs sudo itself: softnet under sudo checks again.
    for (const [args, flag] of [
      [[BIN, ...base, '--state-dir', '/etc'], '--state-dir'],
      [['sudo', '-n', BIN, ...base, '--control-socket', '/etc/passwd'], '--control-socket'],
      [['sudo', '-n', BIN, '--vm-netns', '/proc/1/ns/net', '--vm-mac-address', mac], '--vm-netns'],
      [['sudo', '-n', BIN, ...base, '--user', 'root', '--group', 'root'], '--user'],
    ] as const) {
      const argv = asTheUser(u, [...args]);
      const r = await topo.status(host, argv[0], argv.slice(1));
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, new RegExp(`^softnet: ${flag}: is not taken through sudo: [^\\n]+\\n$`));
    }
  });

  test('without the drop-in: one line saying what to install, exit 2', async () => {
    removeSudoers(dropIn!);
    dropIn = null;
    const host = await topo.netns('nodropin');
    const argv = asTheUser(user!, [BIN, '--vm-fd', '3', '--vm-mac-address', mac]);
    const r = await topo.status(host, argv[0], argv.slice(1));
    assert.equal(r.code, 2);
    assert.match(
      r.stderr,
      /^softnet: needs root, and sudo -n may not run \S+bin\/softnet \(sudo: [^)]+\): install the sudoers drop-in packaging\/sudoers\/softnet[^\n]*docs\/privileges\.md\n$/,
    );
  });
});

describe('softnet serve as its systemd unit runs it', () => {
  const topo = new Topology();
  let user: TestUser | null = null;
  after(async () => {
    await topo.cleanup();
    if (user) removeUser(user);
  });

  test('a service user with ambient capabilities serves, and a control group member uses it', async () => {
    user = makeUser();
    const u = user;
    chmodSync(topo.dir, 0o711);
    // What StateDirectory= and RuntimeDirectory= make: directories of the service user.
    const state = `${topo.dir}/lib`;
    const run = `${topo.dir}/run`;
    for (const d of [state, run]) {
      mkdirSync(d, { mode: d === run ? 0o755 : 0o700 });
      chownSync(d, u.uid, u.gid);
    }
    const socket = `${run}/control.sock`;
    const caps = '+net_admin,+net_raw,+net_bind_service';
    // User=, Group=, AmbientCapabilities=, CapabilityBoundingSet= and NoNewPrivileges= of the unit.
    const unit = [
      'setpriv',
      ...['--reuid', String(u.uid), '--regid', String(u.gid), '--init-groups'],
      ...['--inh-caps', `-all,${caps}`, '--ambient-caps', caps, '--bounding-set', `-all,${caps}`],
      ...['--no-new-privs', '--reset-env', '--'],
    ];
    const host = await topo.netns('host');
    const argv = privateMounts(
      [],
      [
        ...unit,
        process.execPath,
        SOFTNET,
        'serve',
        '--state-dir',
        state,
        '--control-socket',
        socket,
        '--control-group',
        u.group,
      ],
    );
    const serve = new Softnet(topo.spawn(host, argv[0], argv.slice(1)));
    await serve.waitFor(/ serving /);
    const c = creds(serve.child.pid!);
    assert.equal(c.Uid, `${u.uid} ${u.uid} ${u.uid} ${u.uid}`);
    assert.equal(c.CapEff, hex(KEPT_CAPS));
    assert.equal(c.CapBnd, hex(KEPT_CAPS));
    assert.equal(c.NoNewPrivs, '1');

    const nobody = 65534;
    const operator = (groups: number[], args: string[]) => {
      const [cmd, ...rest] = asUser(nobody, nobody, groups);
      return topo.status(host, cmd, [
        ...rest,
        process.execPath,
        SOFTNET,
        ...args,
        '--control-socket',
        socket,
      ]);
    };
    const ls = await operator([u.gid], ['network', 'ls']);
    assert.equal(ls.code, 0, ls.stderr);
    assert.match(ls.stdout, /^default\s+shared\s+192\.168\.64\.0\/24\s/m);
    // A network added at run time is opened by the service user, with its capabilities only.
    const add = await operator([u.gid], ['network', 'add', 'lab', '--cidr', '192.168.70.0/24']);
    assert.equal(add.code, 0, add.stderr);
    await serve.waitFor(/network up network=lab /);
    const links = await topo.exec(host, 'ip', ['-o', 'link']);
    assert.match(links.stdout, /sn-lab/);
    // Not in the group: the socket's mode (0660) keeps it out.
    const outsider = await operator([], ['network', 'ls']);
    assert.equal(outsider.code, 1);
    assert.match(
      outsider.stderr,
      /^softnet: cannot reach the softnet engine at \S+: .*permission denied\n$/i,
    );
    assert.equal((await serve.stop()).code, 0);
  });
});
