// The soak's world: test/lib/world.ts's host, router and world namespaces, plus a second host<->router link
// (up1, 192.0.2.0/24) for the default route to move to, a small tmpfs as the service's state directory (so
// it can be filled), a quiet UDP echo server for the probes, and one `softnet serve` in the host namespace
// with no --uplink (NAT follows the default route). Everything goes at cleanup(), also when a run fails.

import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SOFTNET, Softnet, softnetCommand } from '../../test/lib/softnet.js';
import { Topology } from '../../test/lib/topology.js';
import {
  HOST_IP,
  HOST_IP2,
  PORTS,
  ROUTER_HOST_SIDE,
  ROUTER_IF2,
  ROUTER_IP2,
  SERVER,
  UPLINK,
  UPLINK2,
  until,
  World,
} from '../../test/lib/world.js';
import { AddressBook } from './audit.js';
import { PYTHON } from './probe.js';

/** The router's end of the first uplink (world.ts names it so). */
export const ROUTER_IF = 'h0';
export { HOST_IP, HOST_IP2, ROUTER_HOST_SIDE, ROUTER_IF2, ROUTER_IP2, SERVER, UPLINK, UPLINK2 };
/** The port of the probes' echo server, in the world: the world's own echo server logs every datagram. */
export const PROBE_PORT = 7008;
/** The small file the VMs fetch over TCP. */
export const SMALL_URL = `http://${SERVER}:${PORTS.http}/small.txt`;
/** Size of the state directory's tmpfs: room for the state of a few dozen VMs, little enough to fill at once. */
const STATE_TMPFS = '2m';
/** Seconds a restarted service waits for the VMs an earlier one served before it frees what they held. */
const REATTACH_GRACE_S = 10;

// Echoes every datagram back and prints nothing: the probes send ten a second from every VM.
const QUIET_ECHO = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    d, a = s.recvfrom(2048)
    s.sendto(d, a)
`;

const mounts = new Set<string>();
/** Lazily, since a softnet that is still going may hold files there. */
function unmount(dir: string): void {
  try {
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
  } catch {}
  mounts.delete(dir);
}
// Before the topology's own exit handler, which removes the directory the mount is in.
process.prependListener('exit', () => {
  for (const d of [...mounts]) unmount(d);
});

/** The soak's namespaces, servers, state directory and service. */
export class SoakLab {
  readonly world = new World(new Topology());
  readonly topo = this.world.topo;
  readonly stateDir = join(this.topo.dir, 'state');
  /** Outside the state directory, so a full disk never stops a restarted service from binding it. */
  readonly controlSocket = join(this.topo.dir, 'control.sock');
  readonly metrics = '127.0.0.1:9464';
  readonly addresses = new AddressBook();
  /** The service's metrics as last scraped, for the logs of a failed run. */
  lastMetrics = '';
  /** Every service started, the current one last. */
  readonly services: Softnet[] = [];

  get host(): string {
    return this.world.host;
  }
  get router(): string {
    return this.world.router;
  }
  /** The service running now. */
  get service(): Softnet {
    return this.services[this.services.length - 1];
  }
  /** The resolv.conf the service follows: the host namespace's, as World.resolver writes it. */
  get resolvConf(): string {
    return `/etc/netns/${this.host}/resolv.conf`;
  }

  /** Builds the world and the second uplink, mounts the state directory and starts the service. */
  async start(): Promise<void> {
    await this.world.start({ fileMb: 1 });
    const { topo, host } = this;
    await this.world.addSecondLink();
    // A readdress adds the new address and deletes the old one, as a DHCP client does; the new one, added
    // second, must then become the primary rather than go with the old one.
    await topo.exec(host, 'sysctl', ['-qw', `net.ipv4.conf.${UPLINK}.promote_secondaries=1`]);
    this.addresses.add(UPLINK, HOST_IP);
    this.addresses.add(UPLINK2, HOST_IP2);
    topo
      .spawn(this.world.world, PYTHON, ['-u', '-c', QUIET_ECHO, SERVER, String(PROBE_PORT)])
      .stderr!.resume();
    // In this (the root) mount namespace before softnet starts, so the one `ip netns exec` gives softnet
    // holds it too, and filling and freeing it act on the file system softnet writes to.
    mkdirSync(this.stateDir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${STATE_TMPFS},mode=0700`, 'tmpfs', this.stateDir]);
    mounts.add(this.stateDir);
    await this.startService();
  }

  /** Starts `softnet serve` (again) and waits until it serves. */
  async startService(): Promise<Softnet> {
    const s = new Softnet(
      this.topo.spawn(this.host, 'env', [
        `SOFTNET_RESOLV_CONF=${this.resolvConf}`,
        process.execPath,
        SOFTNET,
        'serve',
        '--state-dir',
        this.stateDir,
        '--control-socket',
        this.controlSocket,
        '--reattach-grace',
        String(REATTACH_GRACE_S),
        '--metrics',
        this.metrics,
      ]),
    );
    this.services.push(s);
    await s.waitFor(/softnet: serving /, 30_000);
    return s;
  }

  /** The pid of the running engine (`ip netns exec` and `env` exec, so it is the spawned child's). */
  get enginePid(): number {
    return this.service.child.pid!;
  }

  /** Runs `softnet ARGS --json` against the service; its parsed output, or null when it did not answer. */
  async json<T>(args: string[]): Promise<T | null> {
    const r = await softnetCommand(this.topo, this.host, [
      ...args,
      '--json',
      '--control-socket',
      this.controlSocket,
    ]);
    if (r.code !== 0) return null;
    try {
      return JSON.parse(r.stdout) as T;
    } catch {
      return null;
    }
  }

  /** The service's metrics text, or '' when it does not answer. */
  async scrape(): Promise<string> {
    const r = await this.topo.status(
      this.host,
      'curl',
      ['-sf', '-m', '3', `http://${this.metrics}/metrics`],
      10_000,
    );
    return r.code === 0 ? r.stdout : '';
  }

  /** Waits until the service has logged a line matching `re` since line `from`; false after `ms`. */
  async logged(re: RegExp, from: number, ms: number, service = this.service): Promise<boolean> {
    try {
      await until(
        `softnet logs ${re}`,
        async () => service.lines.slice(from).some((l) => re.test(l)),
        ms,
        100,
      );
      return true;
    } catch {
      return false;
    }
  }

  /** Stops the service and removes everything: processes, namespaces, the tmpfs, the resolver files. */
  async cleanup(): Promise<void> {
    // First, so that removing the temp directory finds a plain directory where the mount was.
    unmount(this.stateDir);
    await this.world.cleanup();
  }
}
