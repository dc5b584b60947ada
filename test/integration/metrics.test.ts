// --metrics: the endpoint answers inside softnet's namespace (curl there), in Prometheus text format, and
// its series move with traffic: a VM's frames, its lease, a spoofed frame's drop reason, a capture coming
// and going. The per-VM form serves it only while it runs the engine; a port in use is one line, exit 2.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { VERSION } from '../../src/version.js';
import { Udhcpc } from '../lib/clients.js';
import { parseExposition } from '../lib/prometheus.js';
import { sendFrames, udpFrame } from '../lib/raw.js';
import { SOFTNET, Softnet, softnetForVm, startSoftnet } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';

const MAC = '52:54:00:d1:00:01';
const MAC_B = '52:54:00:d1:00:02';
const GATEWAY = '192.168.64.1';

/** Scrapes http://ADDR/metrics from inside `ns`, checks the format, and returns the samples. */
async function scrape(topo: Topology, ns: string, addr: string): Promise<Map<string, number>> {
  const r = await topo.exec(ns, 'curl', ['-sf', '--max-time', '5', `http://${addr}/metrics`]);
  return parseExposition(r.stdout);
}

/** The series of one VM: `name{vm=...,network=...,mac=...,external_mac=...}`. */
function vmSeries(name: string, vm: string, mac: string, extMac: string): string {
  return `${name}{vm="${vm}",network="default",mac="${mac}",external_mac="${extMac}"}`;
}

describe('--metrics', () => {
  const topo = new Topology();
  after(() => topo.cleanup());

  test('softnet serve: per-VM, per-reason, per-network and capture series move as traffic flows', async () => {
    const host = await topo.netns('host');
    const vm = await topo.netns('vm');
    const sock = join(topo.dir, 'svc.sock');
    const addr = '127.0.0.1:9464';
    const service = startSoftnet(topo, host, [
      'serve',
      '--state-dir',
      join(topo.dir, 'svc'),
      '--control-socket',
      sock,
      '--metrics',
      addr,
    ]);
    await service.waitFor(/softnet: metrics url=http:\/\/127\.0\.0\.1:9464\/metrics/);
    await service.waitFor(/softnet: serving /);
    const m0 = await scrape(topo, host, addr);
    assert.equal(
      m0.get(`softnet_engine_info{version="${VERSION}",pid="${service.child.pid}",kind="service"}`),
      1,
    );
    assert.equal(m0.get('softnet_network_vms{network="default"}'), 0);
    assert.equal(m0.get('softnet_network_leases{network="default"}'), 0);
    assert.equal(m0.get('softnet_network_pool_addresses{network="default"}'), 253);
    assert.equal(m0.get('softnet_drops_total{reason="src-mac-spoofed"}'), 0);

    const perVm = await softnetForVm(topo, host, vm, MAC, ['--control-socket', sock]);
    const extMac = await perVm.externalMac();
    const lease = await new Udhcpc(topo, vm).once();
    await topo.exec(vm, 'ping', ['-c', '3', '-i', '0.2', '-W', '2', GATEWAY]);
    const m1 = await scrape(topo, host, addr);
    const s = (name: string) => vmSeries(name, 'vm-525400d10001', MAC, extMac);
    assert.equal(m1.get('softnet_network_vms{network="default"}'), 1);
    assert.equal(m1.get('softnet_network_leases{network="default"}'), 1);
    assert.ok(m1.get(s('softnet_vm_rx_frames_total'))! >= 5, 'DISCOVER, REQUEST, ARP and three echoes');
    assert.ok(m1.get(s('softnet_vm_tx_frames_total'))! >= 5);
    assert.ok(m1.get(s('softnet_vm_rx_bytes_total'))! >= 3 * 98);
    assert.equal(m1.get(s('softnet_vm_tx_dropped_frames_total')), 0);

    // A frame from another MAC than the VM's.
    const forged = udpFrame(
      { srcMac: '52:54:00:66:66:66', dstMac: 'ff:ff:ff:ff:ff:ff', src: lease.ip, dst: GATEWAY },
      4000,
      5000,
      Buffer.from('forged'),
    );
    await sendFrames(topo, vm, 'eth0', [forged, forged]);
    let m2 = m1;
    for (let i = 0; i < 50 && m2.get('softnet_drops_total{reason="src-mac-spoofed"}') !== 2; i++) {
      await new Promise((r) => setTimeout(r, 100));
      m2 = await scrape(topo, host, addr);
    }
    assert.equal(m2.get('softnet_drops_total{reason="src-mac-spoofed"}'), 2);
    assert.ok(m2.get(s('softnet_vm_rx_frames_total'))! >= m1.get(s('softnet_vm_rx_frames_total'))! + 2);

    // A capture counts while it runs and ends when its client is killed.
    const cap = new Softnet(
      topo.spawn(host, process.execPath, [
        SOFTNET,
        'capture',
        MAC,
        '-w',
        join(topo.dir, 'm.pcap'),
        '--control-socket',
        sock,
      ]),
    );
    await cap.waitFor(/capturing /);
    assert.equal((await scrape(topo, host, addr)).get('softnet_captures'), 1);
    cap.child.kill('SIGKILL');
    let captures = 1;
    for (let i = 0; i < 50 && captures !== 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      captures = (await scrape(topo, host, addr)).get('softnet_captures')!;
    }
    assert.equal(captures, 0);
    await topo.exec(vm, 'ping', ['-c', '1', '-W', '2', GATEWAY]);

    const code = async (args: string[]) =>
      (await topo.exec(host, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', ...args])).stdout;
    assert.equal(await code([`http://${addr}/`]), '404');
    assert.equal(await code(['-X', 'POST', `http://${addr}/metrics`]), '405');
    const head = await topo.exec(host, 'curl', ['-sI', `http://${addr}/metrics`]);
    assert.match(head.stdout, /^Content-Type: text\/plain; version=0\.0\.4; charset=utf-8\r$/im);

    // Another engine asking for the same address: one line naming --metrics, exit 2.
    const other = await topo.status(host, process.execPath, [
      SOFTNET,
      'serve',
      '--state-dir',
      join(topo.dir, 'other'),
      '--control-socket',
      join(topo.dir, 'other.sock'),
      '--host-link',
      'sn-other',
      '--subnet',
      '10.77.0.0/24',
      '--metrics',
      addr,
    ]);
    assert.equal(other.code, 2);
    assert.match(
      other.stderr,
      /^softnet: --metrics: cannot listen on 127\.0\.0\.1 port 9464: [^\n]*EADDRINUSE[^\n]*\n$/,
    );
    const bogus = await topo.status(host, process.execPath, [
      SOFTNET,
      'serve',
      '--metrics',
      'localhost:9464',
    ]);
    assert.equal(bogus.code, 2);
    assert.match(bogus.stderr, /^softnet: --metrics: 'localhost:9464' is not ADDR:PORT[^\n]*\n$/);
    assert.equal(service.child.exitCode, null);
  });

  test('the per-VM form serves metrics only while it runs the engine', async () => {
    const host = await topo.netns('host2');
    const a = await topo.netns('a2');
    const b = await topo.netns('b2');
    const state = join(topo.dir, 'state2');
    const addr = '127.0.0.1:9465';
    const extra = ['--state-dir', state, '--control-socket', join(state, 'c.sock'), '--metrics', addr];
    const engine = await softnetForVm(topo, host, a, MAC, extra);
    await engine.waitFor(/softnet: metrics url=/);
    const second = await softnetForVm(topo, host, b, MAC_B, extra);
    await second.waitFor(/softnet: metrics not served here reason="another process runs the engine"/);
    await new Udhcpc(topo, b).once();
    const m = await scrape(topo, host, addr);
    assert.equal(
      m.get(`softnet_engine_info{version="${VERSION}",pid="${engine.child.pid}",kind="per-vm"}`),
      1,
    );
    assert.equal(m.get('softnet_network_vms{network="default"}'), 2);
    assert.equal(m.get('softnet_network_leases{network="default"}'), 1);
    const extB = await second.externalMac();
    assert.ok(m.get(vmSeries('softnet_vm_rx_frames_total', 'vm-525400d10002', MAC_B, extB))! >= 2);
  });
});
