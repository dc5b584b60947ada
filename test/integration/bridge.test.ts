// The bridge network type with real namespaces: VMs bridged by softnet to a LAN where dnsmasq serves DHCP
// and a LAN host answers. The VM gets its lease from dnsmasq with busybox udhcpc, under its external MAC;
// the LAN host and the VM reach each other; forged frames from the VM never appear on the LAN (tcpdump on
// the LAN host); the interface going down and up is survived; two clones with one internal MAC get two
// leases and reach each other; a restart after SIGKILL keeps the snooped address; a VM that goes away has its
// lease released to dnsmasq; a release ends it; a bad --bridge-interface is one line and exit 2.
//
// Not provable here: that PACKET_MR_UNICAST makes a real NIC accept the external MACs. A veth delivers
// every frame to its peer whatever its MAC filter, so these tests pass with or without the membership.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { BRIDGE_IFACE, BridgedLan, inPool, LAN_LEASE_S, LAN_PEER, LAN_SERVER } from '../lib/bridged-lan.js';
import { Udhcpc } from '../lib/clients.js';
import { scapySend, sniff } from '../lib/lan.js';
import { SOFTNET, type Softnet, softnetForVm, withControl } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import { until } from '../lib/world.js';

const VM_MAC = '52:54:00:b7:00:01';
/** A MAC no interface here has: the forged source of the scapy frames. */
const FORGED_MAC = '52:54:00:66:66:66';
const BRIDGE = ['--vm-net-type', 'bridge', '--bridge-interface', BRIDGE_IFACE];
const esc = (s: string) => s.replace(/\./g, '\\.');

describe('bridge network type', () => {
  const topo = new Topology();
  const lan = new BridgedLan(topo);
  const state = `${topo.dir}/state`;
  let vmNs: string;
  let softnet: Softnet;
  let extMac: string;
  let vmIp: string;

  before(() => lan.start());
  after(() => topo.cleanup());

  /** Starts softnet for a new VM namespace `name` with MAC `mac`, bridged to the LAN. */
  async function bridgedVm(
    name: string,
    mac: string,
    stateDir = state,
  ): Promise<{ ns: string; softnet: Softnet }> {
    const ns = await topo.netns(name);
    const s = await softnetForVm(topo, lan.host, ns, mac, [...BRIDGE, '--state-dir', stateDir]);
    return { ns, softnet: s };
  }

  const ping = (ns: string, to: string, from?: string) =>
    topo.status(ns, 'ping', ['-n', '-c', '1', '-W', '2', ...(from ? ['-I', from] : []), to]);

  test('bridge type gets its lease from dnsmasq on a LAN namespace', { timeout: 60_000 }, async () => {
    ({ ns: vmNs, softnet } = await bridgedVm('vm1', VM_MAC));
    extMac = await softnet.externalMac();
    assert.notEqual(extMac, VM_MAC);
    const lease = await new Udhcpc(topo, vmNs).once();
    vmIp = lease.ip;
    assert.ok(inPool(vmIp), vmIp);
    assert.equal(lease.router, LAN_SERVER);
    assert.equal(lease.lease, LAN_LEASE_S);
    await softnet.waitFor(
      new RegExp(
        `lease bound ip=${esc(vmIp)} mac=${VM_MAC} external_mac=${extMac} lease=${LAN_LEASE_S} server=${esc(LAN_SERVER)}`,
      ),
    );
    // dnsmasq leased to the external MAC, and knows the client by it (udhcpc sends a MAC client id).
    const leases = await until('dnsmasq wrote its lease', async () =>
      lan.leases().find((l) => l.ip === vmIp),
    );
    assert.equal(leases.mac, extMac);
    assert.equal(leases.clientId, `01:${extMac}`);
    assert.ok(!lan.log().includes(VM_MAC), 'the internal MAC reached dnsmasq');
  });

  test('the LAN host and the VM reach each other; the LAN knows the VM by its external MAC', async () => {
    assert.equal((await ping(vmNs, LAN_PEER)).code, 0);
    assert.equal((await ping(vmNs, LAN_SERVER)).code, 0);
    assert.equal((await ping(lan.peer, vmIp)).code, 0);
    const neigh = await topo.exec(lan.peer, 'ip', ['-4', 'neigh', 'show', vmIp]);
    assert.match(neigh.stdout, new RegExp(`lladdr ${extMac}`));
  });

  test('the bridged interface going down is logged, and the VM is back on the LAN when it comes up', async () => {
    await topo.exec(lan.host, 'ip', ['link', 'set', BRIDGE_IFACE, 'down']);
    await softnet.waitFor(/warn: bridge interface down port=lan0:lan-rx/);
    assert.notEqual((await ping(vmNs, LAN_PEER)).code, 0);
    await topo.exec(lan.host, 'ip', ['link', 'set', BRIDGE_IFACE, 'up']);
    await until('the VM reaches the LAN host again', async () => (await ping(vmNs, LAN_PEER)).code === 0);
    assert.equal(softnet.child.exitCode, null);
  });

  test('the bridged interface deleted and made again: the VM is cut off, then on the LAN again', {
    timeout: 60_000,
  }, async () => {
    const from = softnet.lines.length;
    const ip = (ns: string, ...args: string[]) => topo.exec(ns, 'ip', args);
    await ip(lan.host, 'link', 'del', BRIDGE_IFACE);
    await softnet.waitFor(
      /error: bridge interface unusable: its VMs are cut off from the LAN .*bridge_interface=lan0/,
      10_000,
      from,
    );
    assert.notEqual((await ping(vmNs, LAN_PEER)).code, 0);
    await ip(lan.host, 'link', 'add', BRIDGE_IFACE, 'type', 'veth', 'peer', 'name', 'up0', 'netns', lan.lan);
    await ip(lan.lan, 'link', 'set', 'up0', 'master', 'br0');
    await ip(lan.lan, 'link', 'set', 'up0', 'up');
    await ip(lan.host, 'link', 'set', BRIDGE_IFACE, 'up');
    await softnet.waitFor(
      /bridge interface back: its VMs are on the LAN again .*bridge_interface=lan0/,
      10_000,
      from,
    );
    await until('the VM reaches the LAN host again', async () => (await ping(vmNs, LAN_PEER)).code === 0);
    assert.equal((await ping(lan.peer, vmIp)).code, 0);
    assert.equal(softnet.child.exitCode, null);
  });

  test('forged sources, a rogue DHCP server and IPv6 from the VM never appear on the LAN', {
    timeout: 90_000,
  }, async () => {
    const eth = (src: string, dst: string) => `Ether(src='${src}', dst='${dst}')`;
    const udp = (src: string, dst: string, marker: string) =>
      `IP(src='${src}', dst='${dst}')/UDP(sport=40000, dport=7000)/Raw(b'${marker}')`;
    const peerMac = (await topo.exec(lan.peer, 'cat', ['/sys/class/net/eth0/address'])).stdout.trim();
    const BCAST = 'ff:ff:ff:ff:ff:ff';
    const forged = [
      `${eth(FORGED_MAC, peerMac)}/${udp(vmIp, LAN_PEER, 'sn-forged-mac')}`,
      `${eth(VM_MAC, peerMac)}/${udp('10.77.0.99', LAN_PEER, 'sn-forged-ip')}`,
      `${eth(VM_MAC, peerMac)}/${udp(LAN_SERVER, LAN_PEER, 'sn-forged-ip-of-server')}`,
      `${eth(FORGED_MAC, BCAST)}/${udp(vmIp, '255.255.255.255', 'sn-forged-mac-bcast')}`,
      // ARP: the server's address claimed, another MAC claimed, a reply from nobody.
      `${eth(VM_MAC, BCAST)}/ARP(op=2, hwsrc='${VM_MAC}', psrc='${LAN_SERVER}', hwdst='${BCAST}', pdst='${LAN_SERVER}')`,
      `${eth(VM_MAC, BCAST)}/ARP(op=1, hwsrc='${FORGED_MAC}', psrc='${vmIp}', pdst='${LAN_PEER}')`,
      `${eth(VM_MAC, peerMac)}/ARP(op=2, hwsrc='${VM_MAC}', psrc='0.0.0.0', hwdst='${peerMac}', pdst='${LAN_PEER}')`,
      // A rogue DHCP server offering the LAN host's address, the marker in sname.
      `${eth(VM_MAC, BCAST)}/IP(src='${vmIp}', dst='255.255.255.255')/UDP(sport=67, dport=68)/BOOTP(op=2, ` +
        `xid=0x50f7, yiaddr='${LAN_PEER}', chaddr=mac2str('${peerMac}'), sname=b'sn-rogue-dhcp')/` +
        `DHCP(options=[('message-type', 'offer'), ('server_id', '${vmIp}'), ('router', '${vmIp}'), 'end'])`,
      // DHCP from the VM claiming another client's hardware address.
      `${eth(VM_MAC, BCAST)}/IP(src='0.0.0.0', dst='255.255.255.255')/UDP(sport=68, dport=67)/BOOTP(op=1, ` +
        `xid=0x50f8, chaddr=mac2str('${FORGED_MAC}'), sname=b'sn-dhcp-chaddr')/DHCP(options=[('message-type', 'discover'), 'end'])`,
      // An IPv6 frame (all-nodes multicast), carrying a marker.
      `Ether(src='${VM_MAC}', dst='33:33:00:00:00:01', type=0x86dd)/Raw(b'sn-ipv6')`,
    ];
    const legit = `${eth(VM_MAC, peerMac)}/${udp(vmIp, LAN_PEER, 'sn-legit')}`;
    const cap = await sniff(topo, lan.peer, 'eth0', '');
    const d0 = (await softnet.counters()).drops;
    await scapySend(topo, vmNs, 'eth0', [...forged, legit]);
    await until(
      'the LAN host sees the frame that passes',
      async () => cap.seen().includes('sn-legit'),
      10_000,
      100,
    );
    const seen = await cap.stop();
    for (const marker of ['sn-forged-mac', 'sn-forged-ip', 'sn-rogue-dhcp', 'sn-dhcp-chaddr', 'sn-ipv6'])
      assert.ok(!seen.includes(marker), `${marker} reached the LAN:\n${seen}`);
    // Nothing the VM sent reached the LAN at its own MAC, or as anything but its leased address.
    assert.ok(!seen.includes(VM_MAC), `the internal MAC reached the LAN:\n${seen}`);
    assert.ok(!seen.includes(FORGED_MAC), `the forged MAC reached the LAN:\n${seen}`);
    for (const arp of [`Reply ${LAN_SERVER} is-at`, 'Reply 0.0.0.0 is-at'])
      assert.ok(!seen.includes(arp), `a forged ARP reached the LAN (${arp}):\n${seen}`);
    assert.match(seen, new RegExp(`${extMac} > ${peerMac}.*${esc(vmIp)}\\.40000 > ${esc(LAN_PEER)}\\.7000`));
    const d1 = (await softnet.counters()).drops;
    const grew = (k: string) => (d1[k] ?? 0) - (d0[k] ?? 0);
    assert.ok(grew('src-mac-spoofed') >= 2, JSON.stringify(d1));
    assert.ok(grew('ipv4-src-spoofed') >= 2, JSON.stringify(d1));
    assert.ok(grew('arp-sender-spoofed') >= 3, JSON.stringify(d1));
    assert.ok(grew('dhcp-server-message-from-vm') >= 1, JSON.stringify(d1));
    assert.ok(grew('dhcp-chaddr-spoofed') >= 1, JSON.stringify(d1));
    assert.ok(grew('ipv6-unsupported') >= 1, JSON.stringify(d1));
  });

  test('two bridged VMs with the same internal MAC get two leases and reach each other', {
    timeout: 60_000,
  }, async () => {
    const clone = await bridgedVm('vm2', VM_MAC);
    const cloneExt = await clone.softnet.externalMac();
    assert.notEqual(cloneExt, extMac);
    const lease = await new Udhcpc(topo, clone.ns).once();
    assert.ok(inPool(lease.ip), lease.ip);
    assert.notEqual(lease.ip, vmIp);
    const leases = await until('dnsmasq holds two leases', async () => {
      const l = lan.leases();
      return l.length >= 2 && l;
    });
    assert.deepEqual(
      leases.map((l) => `${l.mac} ${l.ip}`).sort(),
      [`${extMac} ${vmIp}`, `${cloneExt} ${lease.ip}`].sort(),
    );
    assert.equal((await ping(clone.ns, LAN_PEER)).code, 0);
    assert.equal((await ping(lan.peer, lease.ip)).code, 0);
    // VM to VM: switched by softnet, as a bridge would, not sent out and lost.
    assert.equal((await ping(clone.ns, vmIp)).code, 0);
    assert.equal((await ping(vmNs, lease.ip)).code, 0);
    await clone.softnet.stop();
  });

  test('a restart after SIGKILL keeps the snooped address: the VM works before any DHCP', {
    timeout: 60_000,
  }, async () => {
    const own = `${topo.dir}/state-restart`;
    const mac = '52:54:00:b7:00:02';
    let vm = await bridgedVm('vm3', mac, own);
    const lease = await new Udhcpc(topo, vm.ns).once();
    await vm.softnet.stop('SIGKILL');
    vm = {
      ns: vm.ns,
      softnet: await softnetForVm(topo, lan.host, vm.ns, mac, [...BRIDGE, '--state-dir', own]),
    };
    await vm.softnet.waitFor(new RegExp(`vm attached .* ip=${esc(lease.ip)}$`));
    // softnet made the VM's NIC again; the address the VM still holds works with no DHCP at all.
    await topo.exec(vm.ns, 'ip', ['addr', 'add', `${lease.ip}/24`, 'dev', 'eth0']);
    assert.equal((await ping(vm.ns, LAN_PEER)).code, 0);
    assert.equal((await ping(lan.peer, lease.ip)).code, 0);
    await vm.softnet.stop();
  });

  test("a VM that goes away has its lease released: dnsmasq's pool gets the address back", {
    timeout: 60_000,
  }, async () => {
    const mac = '52:54:00:b7:00:04';
    const vm = await bridgedVm('vm4', mac, `${topo.dir}/state-gone`);
    const ext = await vm.softnet.externalMac();
    const lease = await new Udhcpc(topo, vm.ns).once();
    await until('dnsmasq wrote the lease', async () => lan.leases().some((l) => l.mac === ext));
    // The VM's namespace goes, as a VM tool's does when its VM ends; udhcpc never released anything.
    await topo.removeNetns(vm.ns);
    await vm.softnet.waitFor(
      new RegExp(`lease released on the LAN ip=${esc(lease.ip)} server=${esc(LAN_SERVER)}`),
    );
    assert.equal((await vm.softnet.exited).code, 0);
    await until('dnsmasq freed the lease', async () => !lan.leases().some((l) => l.mac === ext));
    assert.match(lan.log(), new RegExp(`DHCPRELEASE\\(\\S+\\) ${esc(lease.ip)} ${ext}`));
  });

  test('a release ends the binding: the address is cut off', { timeout: 60_000 }, async () => {
    const client = new Udhcpc(topo, vmNs);
    const bound = () => client.events().filter((e) => e.event === 'bound').length;
    const before = bound();
    const daemon = client.daemon();
    await until('udhcpc bound', async () => bound() > before);
    const ip = client.last().ip;
    // udhcpc removes the address right after sending its RELEASE; a RELEASE still waiting for the
    // server's MAC then dies in the VM's kernel. Knowing the MAC beforehand makes it leave at once.
    await ping(vmNs, LAN_SERVER);
    daemon.kill('SIGUSR2');
    await softnet.waitFor(new RegExp(`lease released ip=${esc(ip)} .*reason=released`));
    daemon.kill('SIGTERM');
    await once(daemon, 'exit');
    await until('dnsmasq freed the lease', async () => !lan.leases().some((l) => l.ip === ip));
    await topo.exec(vmNs, 'ip', ['addr', 'replace', `${ip}/24`, 'dev', 'eth0']);
    assert.notEqual((await ping(vmNs, LAN_PEER)).code, 0);
    const d = (await softnet.counters()).drops;
    assert.ok((d['ipv4-before-lease'] ?? 0) + (d['arp-sender-spoofed'] ?? 0) > 0, JSON.stringify(d));
  });

  test('a --bridge-interface that cannot be bridged is one line naming the flag and exit 2', async () => {
    for (const [iface, why] of [
      ['nope0', /No such device/],
      ['lo', /not an Ethernet interface/],
    ] as const) {
      const vm = await topo.netns(`bad-${iface}`);
      const child = topo.spawn(lan.host, process.execPath, [
        SOFTNET,
        ...withControl(topo, [
          '--vm-netns',
          `/run/netns/${vm}`,
          '--vm-mac-address',
          '52:54:00:b7:00:09',
          '--vm-net-type',
          'bridge',
          '--bridge-interface',
          iface,
          '--state-dir',
          `${topo.dir}/state-bad-${iface}`,
        ]),
      ]);
      let err = '';
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
      });
      const [code] = await once(child, 'exit');
      assert.equal(code, 2, err);
      const lines = err.trim().split('\n');
      assert.equal(lines.length, 1, err);
      assert.match(lines[0], /^softnet: --bridge-interface: /);
      assert.match(lines[0], why);
    }
  });
});
