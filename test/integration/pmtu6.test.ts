// Path MTU discovery through NAT66 (issue 14): the router reaches one world address by a route of MTU 1400
// (test/lib/pmtu6.ts), so a full-size packet towards it gets a Packet Too Big from 2001:db8:1::1, addressed
// to the host's uplink address that NAT66 sends from. First a control by the kernel's own path (the host
// namespace learns MTU 1400 and its upload arrives whole), so the topology is known to send the message;
// then a VM namespace behind softnet uploads 8 MiB there: softnet must translate the message back to the
// VM, whose kernel then lowers its path MTU and the upload completes. tcpdump watches the uplink and the VM.

import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { same6, type Ula, vm64 } from '../lib/ipv6.js';
import { NIC, slaacVm } from '../lib/ipv6-flows.js';
import { captureLines } from '../lib/nat64.js';
import { learnedMtu6, MTU_SERVER6, PATH_MTU6, startSmallMtuSink6, upload6 } from '../lib/pmtu6.js';
import type { Softnet } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import { HOST_IP6, ROUTER_HOST_SIDE6, UPLINK, WORLD_NET6, World } from '../lib/world.js';

/** tcpdump's filter for ICMPv6 Packet Too Big (type 2, right after a header with no extension). */
const PTB_FILTER = 'icmp6 and ip6[40] == 2';

/** A ULA /48 of fd00:78::/32 with a random third group (never with a leading zero, so it prints as built). */
function pmtuUla(): Ula {
  const base = `fd00:78:${randomInt(0x1000, 0x10000).toString(16)}`;
  return { cidr: `${base}::/48`, base, gateway: `${base}::1` };
}

/** The source, destination and MTU of each Packet Too Big in `tcpdump -n` lines. */
function packetsTooBig(lines: string[]): Array<{ from: string; to: string; mtu: number }> {
  const out: Array<{ from: string; to: string; mtu: number }> = [];
  for (const l of lines) {
    const m = l.match(/ IP6 (\S+) > (\S+): ICMP6, packet too big, mtu (\d+),/);
    if (m) out.push({ from: m[1], to: m[2], mtu: Number(m[3]) });
  }
  return out;
}

/**
 * Drop reasons the kernels' own link chatter can raise at any moment (the VM's late MLD reports and DAD, the
 * host link's multicast): not about the upload, so not counted against it.
 */
const CHATTER = new Set(['mld-report', 'nd-duplicate-address-detection', 'host-broadcast-or-multicast']);

/** softnet's drop counters by reason. */
async function drops(s: Softnet): Promise<Record<string, number>> {
  return (await s.counters()).drops ?? {};
}

/** The reasons whose drop counter grew between two readings, with how much, `except` some. */
function grown(
  before: Record<string, number>,
  after: Record<string, number>,
  except = new Set<string>(),
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [reason, n] of Object.entries(after)) {
    const d = n - (before[reason] ?? 0);
    if (d > 0 && !except.has(reason)) out[reason] = d;
  }
  return out;
}

/** A random file of `bytes` in the topology's directory; its path and sha256. */
function randomFile(topo: Topology, name: string, bytes: number): { path: string; sha256: string } {
  const data = randomBytes(bytes);
  const path = join(topo.dir, name);
  writeFileSync(path, data);
  return { path, sha256: createHash('sha256').update(data).digest('hex') };
}

describe('path MTU through a smaller-MTU IPv6 router, by NAT66', () => {
  const world = new World(new Topology());
  const topo = world.topo;
  after(() => world.cleanup());
  before(
    async () => {
      await world.start({ fileMb: 1, ipv6: true });
      await startSmallMtuSink6(world);
    },
    { timeout: 60_000 },
  );

  test('control: the host itself uploads to the sink and learns MTU 1400 from the router', {
    timeout: 90_000,
  }, async () => {
    assert.equal(await learnedMtu6(topo, world.host, MTU_SERVER6), null, 'a path MTU before any traffic');
    const uplink = await captureLines(topo, world.host, UPLINK, PTB_FILTER, true);
    const file = randomFile(topo, 'control.bin', 1 << 20);
    const got = await upload6(topo, world.host, file.path);
    const seen = await uplink.stop();
    assert.equal(got.bytes, 1 << 20);
    assert.equal(got.sha256, file.sha256);
    assert.equal(await learnedMtu6(topo, world.host, MTU_SERVER6), PATH_MTU6);
    const ptbs = packetsTooBig(seen);
    assert.ok(
      ptbs.some((p) => same6(p.from, ROUTER_HOST_SIDE6) && same6(p.to, HOST_IP6) && p.mtu === PATH_MTU6),
      `no Packet Too Big from the router on the uplink:\n${seen.join('\n')}`,
    );
    // Forgotten again, so the VM's upload below starts from a host that has learned no path MTU either.
    await topo.exec(world.host, 'ip', ['-6', 'route', 'flush', 'cache']);
  });

  describe('from a VM namespace behind softnet', () => {
    const ula = pmtuUla();
    const MAC = '52:54:00:78:14:01';
    const args = ['--uplink', UPLINK, '--allow', WORLD_NET6, '--ipv6-prefix', ula.cidr];
    let vm: { ns: string; softnet: Softnet; addr: string };
    before(
      async () => {
        vm = await slaacVm(world, 'vm', MAC, vm64(ula, 1), args);
      },
      { timeout: 60_000 },
    );

    test("an 8 MiB upload arrives whole; the VM gets the router's Packet Too Big and learns MTU 1400", {
      timeout: 150_000,
    }, async (t) => {
      assert.equal(await learnedMtu6(topo, vm.ns, MTU_SERVER6), null, 'a path MTU before any traffic');
      const file = randomFile(topo, 'vm.bin', 8 << 20);
      const inVm = await captureLines(topo, vm.ns, NIC, PTB_FILTER, true);
      const onUplink = await captureLines(topo, world.host, UPLINK, PTB_FILTER, true);
      const d0 = await drops(vm.softnet);
      let got: { sha256: string; bytes: number } | undefined;
      let failure: Error | undefined;
      try {
        got = await upload6(topo, vm.ns, file.path, 60);
      } catch (e) {
        failure = e as Error;
      }
      const d1 = await drops(vm.softnet);
      const vmLines = await inVm.stop();
      const uplinkLines = await onUplink.stop();
      const ctx = [
        `Packet Too Big on the uplink (${uplinkLines.length}):\n${uplinkLines.slice(0, 10).join('\n')}`,
        `Packet Too Big in the VM (${vmLines.length}):\n${vmLines.slice(0, 10).join('\n')}`,
        `drops grown: ${JSON.stringify(grown(d0, d1))}`,
        `softnet's last lines:\n${vm.softnet.lines.slice(-30).join('\n')}`,
      ].join('\n');
      t.diagnostic(
        `uplink PTBs ${uplinkLines.length}, VM PTBs ${vmLines.length}, drops ${JSON.stringify(grown(d0, d1))}`,
      );
      if (failure) throw new Error(`the upload failed: ${failure.message}\n${ctx}`);
      assert.equal(got?.bytes, 8 << 20, ctx);
      assert.equal(got?.sha256, file.sha256, ctx);
      assert.ok(
        packetsTooBig(uplinkLines).some(
          (p) => same6(p.from, ROUTER_HOST_SIDE6) && same6(p.to, HOST_IP6) && p.mtu === PATH_MTU6,
        ),
        `the router sent no Packet Too Big to the uplink address\n${ctx}`,
      );
      assert.ok(
        packetsTooBig(vmLines).some(
          (p) => same6(p.from, ROUTER_HOST_SIDE6) && same6(p.to, vm.addr) && p.mtu === PATH_MTU6,
        ),
        `no Packet Too Big (mtu ${PATH_MTU6}, from ${ROUTER_HOST_SIDE6}) reached the VM at ${vm.addr}\n${ctx}`,
      );
      assert.equal(await learnedMtu6(topo, vm.ns, MTU_SERVER6), PATH_MTU6, ctx);
      assert.deepEqual(grown(d0, d1, CHATTER), {}, ctx);
    });
  });
});
