// The faults the soak injects, one kind each, as issue 13 lists them. Each leaves the host as it found it
// (default route via up0, the uplink at its first address, the service running), marks the end of the fault
// (or of each phase: a move there and a move back) with ctx.ended(), which measures the VMs' recovery, and
// checks that softnet logged what it should have. Faults are injected with `ip`, files and signals inside
// the soak's own namespaces and tmpfs.

import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SERVER } from '../../test/lib/world.js';
import type { Fleet } from './fleet.js';
import { HOST_IP, ROUTER_HOST_SIDE, ROUTER_IP2, type SoakLab, UPLINK, UPLINK2 } from './lab.js';

/** The uplink's address while a readdress fault holds it. */
const HOST_IP_NEW = '198.51.100.9';
/** How long softnet has to log what a fault should make it log. */
const LOG_MS = 10_000;
/** A state write that failed is retried after 1, 2, 4 ... s: after a few seconds full, up to ~16 s later. */
const PERSIST_AGAIN_MS = 70_000;

/** What a fault may do to the run. */
export interface FaultContext {
  lab: SoakLab;
  fleet: Fleet;
  /** The fault (or a phase of it) has ended now: waits for the VMs to reach the world (or names) again. */
  ended(what?: 'world' | 'dns'): Promise<void>;
  /** Something softnet should have done and did not: one line with the evidence. */
  fail(text: string): void;
}

/** One kind of fault. */
export interface Fault {
  kind: string;
  run(ctx: FaultContext): Promise<void>;
}

/** A kind the soak cannot inject here, and why. */
export interface Skipped {
  kind: string;
  why: string;
}

function ip(lab: SoakLab, ...args: string[]): Promise<unknown> {
  return lab.topo.exec(lab.host, 'ip', args);
}

/** Fails the fault with softnet's last lines unless the service logs `re` (since line `from`) within `ms`. */
async function expectLog(ctx: FaultContext, re: RegExp, from: number, ms = LOG_MS): Promise<void> {
  if (await ctx.lab.logged(re, from, ms)) return;
  ctx.fail(
    `softnet did not log ${re} within ${ms} ms; its last lines:\n  ${ctx.lab.service.lines.slice(-8).join('\n  ')}`,
  );
}

const uplinkFlap: Fault = {
  kind: 'uplink-flap',
  async run(ctx) {
    const { lab } = ctx;
    const from = lab.service.lines.length;
    await ip(lab, 'link', 'set', UPLINK, 'down');
    await expectLog(ctx, /uplink unavailable: NAT on hold /, from);
    await sleep(2000);
    await ip(lab, 'link', 'set', UPLINK, 'up');
    // The kernel flushed the routes through the link as it went down; the host's network manager puts the
    // default route back, as this does.
    await ip(lab, 'route', 'replace', 'default', 'via', ROUTER_HOST_SIDE, 'dev', UPLINK);
    await ctx.ended();
    await expectLog(ctx, /uplink usable: NAT resumed uplink=up0 /, from);
  },
};

const readdress: Fault = {
  kind: 'readdress',
  async run(ctx) {
    // As a DHCP client renumbering the link does it: the new address first, then the old one goes (the new
    // one is promoted to primary), then back the same way.
    for (const [from, to] of [
      [HOST_IP, HOST_IP_NEW],
      [HOST_IP_NEW, HOST_IP],
    ]) {
      const { lab } = ctx;
      const line = lab.service.lines.length;
      lab.addresses.add(UPLINK, to);
      await ip(lab, 'addr', 'add', `${to}/24`, 'dev', UPLINK);
      await ip(lab, 'addr', 'del', `${from}/24`, 'dev', UPLINK);
      lab.addresses.remove(UPLINK, from);
      await ip(lab, 'route', 'replace', 'default', 'via', ROUTER_HOST_SIDE, 'dev', UPLINK);
      await ctx.ended();
      await expectLog(
        ctx,
        new RegExp(`uplink address changed: its mappings end uplink=up0 from=${from} to=${to} `),
        line,
      );
    }
  },
};

const routeMove: Fault = {
  kind: 'route-move',
  async run(ctx) {
    for (const [via, dev, was] of [
      [ROUTER_IP2, UPLINK2, UPLINK],
      [ROUTER_HOST_SIDE, UPLINK, UPLINK2],
    ]) {
      const line = ctx.lab.service.lines.length;
      ctx.lab.addresses.routeMoved();
      await ip(ctx.lab, 'route', 'replace', 'default', 'via', via, 'dev', dev);
      ctx.lab.addresses.routeMoved();
      await ctx.ended();
      await expectLog(ctx, new RegExp(`uplink moved from=${was} to=${dev}`), line);
    }
  },
};

const hostLinkDeleted: Fault = {
  kind: 'host-link-deleted',
  async run(ctx) {
    const { lab, fleet } = ctx;
    const from = lab.service.lines.length;
    await ip(lab, 'link', 'del', 'softnet0');
    await ctx.ended();
    await expectLog(ctx, /host link repaired network=\S+ host_link=softnet0 found=deleted/, from);
    // And the host reaches a VM through the link again (one that reaches the world: the others are counted).
    const vm = [...fleet.vms].find((v) => v.down === null);
    if (!vm) return;
    for (let i = 0; i < 20; i++) {
      const r = await lab.topo.status(lab.host, 'ping', ['-n', '-c', '1', '-W', '1', vm.ip], 5000);
      if (r.code === 0) return;
      if (!fleet.vms.has(vm)) return;
    }
    ctx.fail(`the host does not reach ${vm.ns} at ${vm.ip} after its link was put back`);
  },
};

/** SIGKILLs the service, lets `meanwhile` act on its state directory, and starts it again. */
async function restartEngine(ctx: FaultContext, meanwhile: () => void): Promise<void> {
  const { lab, fleet } = ctx;
  await fleet.pause();
  const vmLines = new Map([...fleet.vms].map((vm) => [vm, vm.softnet.lines.length]));
  const old = lab.service;
  old.child.kill('SIGKILL');
  await old.exited;
  meanwhile();
  const service = lab.startService();
  // The fault ends as the new service is started; its own start-up is part of the recovery.
  const recovered = ctx.ended();
  try {
    await service;
  } catch (e) {
    ctx.fail(`the service did not start again: ${(e as Error).message}`);
  }
  await recovered;
  for (const [vm, line] of vmLines) {
    if (!fleet.vms.has(vm)) continue;
    const handed = vm.softnet.lines.slice(line).some((l) => / vm handed over /.test(l));
    if (!handed)
      ctx.fail(
        `${vm.ns}'s per-VM softnet did not log "vm handed over":\n  ${vm.softnet.lines.slice(line).join('\n  ')}`,
      );
  }
  fleet.paused = false;
}

const engineKill: Fault = {
  kind: 'engine-kill',
  run: (ctx) => restartEngine(ctx, () => {}),
};

/** SIGKILLs the service, writes garbage into its state file `name`, and starts it again: it must read it. */
function stateCorrupt(name: string, kind: string): Fault {
  return {
    kind,
    async run(ctx) {
      const file = join(ctx.lab.stateDir, name);
      await restartEngine(ctx, () =>
        writeFileSync(file, '{"version":1,"leases":[{"key":"vm:52:54\u0000\u0001garbage'),
      );
      // The new service's lines from its first.
      await expectLog(ctx, new RegExp(`state file unreadable, moved aside file=${file} `), 0);
      const aside = readdirSync(ctx.lab.stateDir).filter((f) => f.startsWith(`${name}.corrupt-`));
      if (aside.length === 0) ctx.fail(`no ${name}.corrupt-* in the state directory`);
    },
  };
}

const stateDirFull: Fault = {
  kind: 'state-dir-full',
  async run(ctx) {
    const { lab, fleet } = ctx;
    const from = lab.service.lines.length;
    const fill = join(lab.stateDir, 'fill');
    const dd = spawnSync('dd', ['if=/dev/zero', `of=${fill}`, 'bs=4k'], { encoding: 'utf8' });
    if (!/No space left on device/.test(dd.stderr))
      ctx.fail(`the state directory did not fill: ${dd.stderr}`);
    // A VM leaves and another attaches while the disk is full, so the service has state to write; NAT
    // snapshots and leases write on their own too.
    await fleet.churnOnce();
    await sleep(3000);
    rmSync(fill);
    await ctx.ended();
    await expectLog(ctx, /state not persisted/, from);
    await expectLog(ctx, /state persisted again/, from, PERSIST_AGAIN_MS);
  },
};

const resolvConf: Fault = {
  kind: 'resolv-conf',
  async run(ctx) {
    const { lab } = ctx;
    const from = lab.service.lines.length;
    lab.world.resolver(lab.host, []);
    await expectLog(ctx, /degraded state=dns-no-resolver /, from);
    await sleep(2000);
    lab.world.resolver(lab.host, [SERVER]);
    await ctx.ended('dns');
    await expectLog(ctx, /recovered state=dns-no-resolver /, from);
  },
};

/** Whether the softnet being run reads its resolv.conf from $SOFTNET_RESOLV_CONF (else the fault cannot aim at it). */
function followsResolvConfVariable(): boolean {
  try {
    return readFileSync(new URL('../../src/services/resolv-conf.js', import.meta.url), 'utf8').includes(
      'SOFTNET_RESOLV_CONF',
    );
  } catch {
    return false;
  }
}

/** The faults the soak injects, in the order it injects them, and those it cannot. */
export function faultKinds(): { faults: Fault[]; skipped: Skipped[] } {
  const faults = [
    uplinkFlap,
    readdress,
    routeMove,
    hostLinkDeleted,
    engineKill,
    stateDirFull,
    stateCorrupt('attachments.json', 'corrupt-attachments'),
  ];
  const skipped: Skipped[] = [
    {
      kind: 'clock-step',
      why:
        'CLOCK_REALTIME is not namespaced (a time namespace offsets only CLOCK_MONOTONIC and CLOCK_BOOTTIME), ' +
        "so stepping it would step the whole machine's clock",
    },
  ];
  if (followsResolvConfVariable()) faults.push(resolvConf);
  else skipped.push({ kind: 'resolv-conf', why: 'this softnet does not read SOFTNET_RESOLV_CONF' });
  // Last in a round: when the service cannot rebuild its leases, the VMs it knew lose the world until
  // their next renewal, and every fault after it would count that again.
  faults.push(stateCorrupt('softnet0.leases.json', 'corrupt-leases'));
  return { faults, skipped };
}
