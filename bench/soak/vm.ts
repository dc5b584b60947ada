// One VM of the soak: a namespace whose NIC a per-VM `softnet --vm-netns` made and handed to the service, a
// udhcpc that keeps its lease (renewals included), a UDP echo probe and a curl loop. It leaves either as a
// VM that goes away (its namespace deleted: softnet frees the lease) or as a VM tool stopping its softnet
// (SIGTERM: the lease is kept for the MAC's next VM).

import { type ChildProcess, execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SOFTNET, Softnet } from '../../test/lib/softnet.js';
import { until, WORLD_NET } from '../../test/lib/world.js';
import { PROBE_PORT, SERVER, SMALL_URL, type SoakLab } from './lab.js';
import { type FetchCount, type ProbeLog, startFetches, startProbe } from './probe.js';

const run = promisify(execFile);

/** How a VM leaves. */
export type Leaving = 'vm-deleted' | 'process-stopped';

/** A DHCP client event as the VM's udhcpc script wrote it. */
interface DhcpEvent {
  at: number;
  event: string;
  ip: string;
}

/** Time a VM has to attach and bind a lease; the service may be busy with a fault meanwhile. */
const ATTACH_MS = 60_000;
/** Time a per-VM process has to exit once its VM left. */
const EXIT_MS = 15_000;

/** A soak VM, from attach to detach. */
export class SoakVm {
  /** The address of its first lease; it must keep it until it leaves. */
  ip = '';
  /** Why it lost its address while attached, if it did. */
  lost: string | null = null;
  leaving = false;
  /** The fault after which it did not reach the world again, if one did that. */
  down: string | null = null;
  /** Samples in a row in which the service listed this VM with no address. */
  unleased = 0;
  private children: ChildProcess[] = [];
  probe!: ProbeLog;
  fetches: FetchCount = { ok: 0, fail: 0 };

  private constructor(
    private readonly lab: SoakLab,
    readonly ns: string,
    readonly mac: string,
    readonly softnet: Softnet,
    private readonly eventsFile: string,
  ) {}

  /** Makes VM `name` with `mac`, hands it to the service, binds a lease, and starts its traffic for `seconds`. */
  static async attach(lab: SoakLab, name: string, mac: string, seconds: number): Promise<SoakVm> {
    const topo = lab.topo;
    const ns = await topo.netns(name);
    const softnet = new Softnet(
      topo.spawn(lab.host, process.execPath, [
        SOFTNET,
        '--vm-netns',
        `/run/netns/${ns}`,
        '--vm-mac-address',
        mac,
        '--control-socket',
        lab.controlSocket,
        '--state-dir',
        lab.stateDir,
        '--allow',
        WORLD_NET,
      ]),
    );
    const eventsFile = join(topo.dir, `${name}.dhcp`);
    const vm = new SoakVm(lab, ns, mac, softnet, eventsFile);
    try {
      await softnet.waitFor(/softnet: started /, ATTACH_MS);
      vm.children.push(vm.dhcpClient());
      const bound = await until(
        `${name} binds a lease`,
        async () => vm.events().find((e) => e.event === 'bound'),
        ATTACH_MS,
        100,
      );
      vm.ip = bound.ip;
    } catch (e) {
      await vm.detach('vm-deleted').catch(() => {});
      throw e;
    }
    const probe = startProbe(topo, ns, SERVER, PROBE_PORT, seconds);
    const fetch = startFetches(topo, ns, SMALL_URL, seconds);
    vm.probe = probe.log;
    vm.fetches = fetch.count;
    vm.children.push(probe.child, fetch.child);
    return vm;
  }

  /** Starts udhcpc in the foreground; its script keeps the address across renewals and logs each event. */
  private dhcpClient(): ChildProcess {
    const script = `${this.eventsFile}.sh`;
    writeFileSync(
      script,
      `#!/bin/sh
case "$1" in
  bound|renew)
    ip -4 addr show dev "$interface" | grep -q " $ip/" || { ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface"; }
    ip route replace default via "\${router%% *}" dev "$interface" ;;
  deconfig) ip addr flush dev "$interface" ;;
esac
echo "$(date +%s%3N) $1 $ip" >> ${this.eventsFile}
exit 0
`,
      { mode: 0o755 },
    );
    // -A 3: after a failed round, try again in 3 s (not 20), so a VM that attached during a fault binds soon.
    return this.lab.topo.spawn(this.ns, 'busybox', [
      'udhcpc',
      '-i',
      'eth0',
      '-f',
      '-t',
      '5',
      '-T',
      '2',
      '-A',
      '3',
      '-s',
      script,
    ]);
  }

  /** What its DHCP client has done, oldest first. */
  events(): DhcpEvent[] {
    let text = '';
    try {
      text = readFileSync(this.eventsFile, 'utf8');
    } catch {}
    return text
      .split('\n')
      .filter(Boolean)
      .map((l) => {
        const [at, event, ip] = l.split(' ');
        return { at: Number(at), event, ip: ip ?? '' };
      });
  }

  /** The VM's IPv4 addresses on its NIC now, by its own `ip addr`. */
  async addresses(): Promise<string[]> {
    // `ip -n` rather than `ip netns exec`: no mount namespace to make, for a check that runs all the time.
    const r = await run('ip', ['-n', this.ns, '-4', '-o', 'addr', 'show', 'dev', 'eth0'], {
      timeout: 10_000,
    });
    return [...r.stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]);
  }

  /**
   * Records a lost lease if the VM, still attached, no longer has its first address: by its DHCP client's
   * events (deconfigured, or bound to another) or by `addrs`, its NIC's addresses sampled just now.
   */
  checkLease(addrs: string[] | null): void {
    if (this.leaving || this.lost !== null) return;
    const events = this.events();
    const first = events.findIndex((e) => e.event === 'bound');
    const bad = events
      .slice(first + 1)
      .find(
        (e) =>
          e.event === 'deconfig' ||
          e.event === 'nak' ||
          e.event === 'leasefail' ||
          ((e.event === 'bound' || e.event === 'renew') && e.ip !== this.ip),
      );
    if (bad) this.lost = `dhcp client: ${bad.event} ${bad.ip} at ${new Date(bad.at).toISOString()}`;
    else if (addrs !== null && !addrs.includes(this.ip))
      this.lost = `its NIC holds ${addrs.join(',') || 'nothing'}, not ${this.ip}, at ${new Date().toISOString()}`;
  }

  /**
   * The VM leaves; resolves with what went wrong, if anything: its per-VM process not exiting 0 in time.
   */
  async detach(how: Leaving): Promise<string | null> {
    this.leaving = true;
    const topo = this.lab.topo;
    if (how === 'process-stopped') this.softnet.child.kill('SIGTERM');
    await Promise.all(this.children.map((c) => stop(c)));
    await topo.removeNetns(this.ns);
    const exit = await Promise.race([
      this.softnet.exited,
      new Promise<null>((r) => setTimeout(() => r(null), EXIT_MS).unref()),
    ]);
    if (exit === null) {
      this.softnet.child.kill('SIGKILL');
      return `${this.ns} (${how}): its per-VM softnet still ran ${EXIT_MS / 1000} s after its VM left`;
    }
    if (exit.code !== 0) return `${this.ns} (${how}): its per-VM softnet exited ${exit.code ?? exit.signal}`;
    return null;
  }
}

/** Kills `c` and waits for it to be gone. */
async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise((r) => c.once('exit', r));
  c.kill('SIGKILL');
  await gone;
}
