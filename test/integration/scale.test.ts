// A hundred VMs on one service: each a namespace whose NIC its own per-VM softnet made and handed to the
// service, each with a real DHCP client. All get distinct leases and reach the world. The service's CPU
// while they sit idle is printed for the record (bench/ measures speed; tests never assert a time).

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { type Softnet, softnetCommand, softnetForVm, startSoftnet } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import { SERVER, UPLINK, vmOnline, WORLD_NET, World } from '../lib/world.js';

const VMS = 100;
/** VMs brought up at once: enough to overlap, few enough for two cores. */
const WAVE = 10;

/** CPU ticks (user + system) a process has used. */
function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

describe('a hundred VMs on one service', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  after(() => world.cleanup());

  test('all get distinct leases and reach the world; the idle service is measured', {
    timeout: 600_000,
  }, async (t) => {
    await world.start({ fileMb: 1 });
    const service = startSoftnet(topo, world.host, [
      'serve',
      '--state-dir',
      `${topo.dir}/state`,
      '--uplink',
      UPLINK,
    ]);
    await service.waitFor(/softnet: serving /);
    const vms: Array<{ ns: string; softnet: Softnet; ip: string }> = [];
    for (let wave = 0; wave < VMS / WAVE; wave++) {
      const batch = await Promise.all(
        Array.from({ length: WAVE }, async (_, i) => {
          const n = wave * WAVE + i;
          const ns = await topo.netns(`s${n}`);
          const mac = `52:54:00:5c:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;
          const softnet = await softnetForVm(topo, world.host, ns, mac, ['--allow', WORLD_NET], 60_000);
          const lease = await vmOnline(topo, ns);
          const ping = await topo.status(ns, 'ping', ['-n', '-c', '1', '-W', '5', SERVER], 30_000);
          assert.match(
            ping.stdout,
            /1 received/,
            `VM ${n} (${lease.ip}) -> world:\n${ping.stdout}${ping.stderr}`,
          );
          return { ns, softnet, ip: lease.ip };
        }),
      );
      vms.push(...batch);
    }
    assert.equal(new Set(vms.map((v) => v.ip)).size, VMS, 'distinct leases');
    const r = await softnetCommand(topo, world.host, ['network', 'list-attached', 'default', '--json']);
    assert.equal((JSON.parse(r.stdout) as unknown[]).length, VMS);

    const hz = 100;
    const pids = vms.map((v) => v.softnet.child.pid!);
    const before = {
      service: cpuTicks(service.child.pid!),
      perVm: pids.reduce((s, p) => s + cpuTicks(p), 0),
    };
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    const used = {
      service: cpuTicks(service.child.pid!) - before.service,
      perVm: pids.reduce((s, p) => s + cpuTicks(p), 0) - before.perVm,
    };
    t.diagnostic(
      `idle for 10 s with ${VMS} VMs attached: the service used ${((used.service / hz / 10) * 100).toFixed(2)} % ` +
        `of a core, the ${VMS} per-VM processes ${((used.perVm / hz / 10) * 100).toFixed(2)} % together`,
    );
    for (const v of vms) assert.equal(v.softnet.child.exitCode, null);
  });
});
