// Isolation (issue 4): a VM can only be itself, and reaches only what the policy allows. Real attack tools
// run inside a VM namespace (arpspoof from dsniff, arping -U, scapy, nmap, curl, ping); the host's and the
// other VM's neighbour tables, and tcpdump on the host link, the uplink and the other VM's NIC, show what got
// through. Two VMs are two softnet processes in one host namespace, each with its own host link and subnet;
// the LAN and the world's stand-in sit behind the host (test/lib/lan.ts has the map).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  HOST_PORT,
  HOST_UPLINK_IP,
  httpGet,
  LAN_HOSTS,
  LAN_PORTS,
  LAN_ROUTER,
  Lan,
  neighbourLines,
  neighbours,
  nmap,
  PAGE,
  scapySend,
  sniff,
  UPLINK,
  VM_A,
  VM_B,
  type Vm,
  WORLD,
  WORLD_NET,
} from '../lib/lan.js';
import { SOFTNET, type Softnet, withControl } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';
import { until } from '../lib/world.js';

/** A MAC that no interface here has: the forged source of the scapy frames. */
const FORGED_MAC = '02:00:00:5e:66:01';
/** An address of VM A's subnet that softnet leased to nobody. */
const UNLEASED = '192.168.64.99';

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** A packet from `addr` (any port) in `tcpdump -n -e` output, which prints no "IP " before the addresses. */
const from = (addr: string) => new RegExp(`: ${esc(addr)}(\\.\\d+)? > `);

/** The last lines softnet logged, for assertion messages. */
function tail(s: Softnet, n = 30): string {
  return `softnet's last lines:\n${s.lines.slice(-n).join('\n')}`;
}

/** softnet's drop counters by reason. */
async function drops(vm: Vm): Promise<Record<string, number>> {
  return (await vm.softnet.counters()).drops ?? {};
}

/** How much the drop counter `reason` grew between two readings. */
function grew(before: Record<string, number>, after: Record<string, number>, reason: string): number {
  return (after[reason] ?? 0) - (before[reason] ?? 0);
}

/** ping from `ns`, never failing: how many replies came and what ping printed. */
async function ping(
  topo: Topology,
  ns: string,
  dst: string,
  count = 1,
): Promise<{ received: number; out: string }> {
  const r = await topo.status(ns, 'ping', ['-n', '-c', String(count), '-i', '0.3', '-W', '1', dst], 20_000);
  const out = r.stdout + r.stderr;
  return { received: Number(out.match(/(\d+) received/)?.[1] ?? 0), out };
}

describe('a VM attacks the host and the VM next to it', () => {
  const lan = new Lan(new Topology());
  const topo = lan.topo;
  let a: Vm;
  let b: Vm;
  after(() => lan.cleanup());

  before(
    async () => {
      await lan.start();
      a = await lan.vm(VM_A, ['--uplink', UPLINK, '--allow', WORLD_NET]);
      // B goes without NAT: a second softnet on the same uplink removes the first one's NAT guard (the last
      // describe of this file), and B needs none here.
      b = await lan.vm(VM_B, ['--vm-net-type', 'host']);
      lan.httpd(b.ns, 80);
      // The entries an attacker would poison: the host's for each VM, each VM's for its gateway.
      await topo.exec(lan.host, 'ping', ['-n', '-c', '1', '-W', '2', a.ip]);
      await topo.exec(lan.host, 'ping', ['-n', '-c', '1', '-W', '2', b.ip]);
      await topo.exec(a.ns, 'ping', ['-n', '-c', '1', '-W', '2', VM_A.gateway]);
      await topo.exec(b.ns, 'ping', ['-n', '-c', '1', '-W', '2', VM_B.gateway]);
      await until('VM B serves HTTP to the host', async () => {
        const r = await httpGet(topo, lan.host, `http://${b.ip}/`, 2);
        return r.stdout === PAGE;
      });
    },
    { timeout: 120_000 },
  );

  /** The host's and VM B's neighbour tables (entries with a MAC), to compare before and after an attack. */
  async function tables(): Promise<{ host: string[]; vmB: string[] }> {
    return {
      host: neighbourLines(await neighbours(topo, lan.host)),
      vmB: neighbourLines(await neighbours(topo, b.ns)),
    };
  }

  /** Every entry has the right MAC, A's MAC is only at A's address, and nothing was added or changed. */
  async function assertUnpoisoned(before: { host: string[]; vmB: string[] }, what: string): Promise<void> {
    const host = await neighbours(topo, lan.host);
    const vmB = await neighbours(topo, b.ns);
    const now = { host: neighbourLines(host), vmB: neighbourLines(vmB) };
    const ctx = [
      `after ${what}`,
      `the host before:\n  ${before.host.join('\n  ')}`,
      `the host after:\n  ${now.host.join('\n  ')}`,
      `VM B before:\n  ${before.vmB.join('\n  ')}`,
      `VM B after:\n  ${now.vmB.join('\n  ')}`,
      tail(a.softnet, 10),
    ].join('\n');
    assert.ok(now.host.includes(`${a.ip} dev ${VM_A.hostLink} lladdr ${a.extMac}`), ctx);
    assert.ok(now.host.includes(`${b.ip} dev ${VM_B.hostLink} lladdr ${b.extMac}`), ctx);
    assert.ok(now.host.includes(`${LAN_ROUTER} dev ${UPLINK} lladdr ${lan.lanMac}`), ctx);
    assert.ok(now.vmB.includes(`${VM_B.gateway} dev eth0 lladdr ${b.gatewayMac}`), ctx);
    assert.deepEqual(
      host.filter((n) => n.lladdr === a.extMac).map((n) => `${n.dst} dev ${n.dev}`),
      [`${a.ip} dev ${VM_A.hostLink}`],
      ctx,
    );
    // The guests' own MACs never reach the host, and nothing of A reaches B's table.
    assert.deepEqual(
      host.filter((n) => n.lladdr === VM_A.mac || n.lladdr === VM_B.mac),
      [],
      ctx,
    );
    assert.deepEqual(
      vmB.filter((n) => n.lladdr === VM_A.mac || n.lladdr === a.extMac),
      [],
      ctx,
    );
    assert.deepEqual(
      now.host.filter((l) => !before.host.includes(l)),
      [],
      `new or changed entries in the host\n${ctx}`,
    );
    assert.deepEqual(
      now.vmB.filter((l) => !before.vmB.includes(l)),
      [],
      `new or changed entries in VM B\n${ctx}`,
    );
  }

  test('control: over a plain veth, the same arpspoof and arping -U do poison the host', {
    timeout: 60_000,
  }, async () => {
    // Proves the tools send and the host takes what they send: the tests below fail if softnet lets it by.
    const ctl = await topo.netns('ctl');
    await topo.exec(lan.host, 'ip', [
      'link',
      'add',
      'ctl0',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ctl,
    ]);
    try {
      await topo.exec(lan.host, 'ip', ['addr', 'add', '192.168.70.1/24', 'dev', 'ctl0']);
      await topo.exec(lan.host, 'ip', ['link', 'set', 'ctl0', 'up']);
      await topo.exec(ctl, 'ip', ['addr', 'add', '192.168.70.2/24', 'dev', 'eth0']);
      await topo.exec(ctl, 'ip', ['link', 'set', 'eth0', 'up']);
      const ctlMac = (await topo.exec(ctl, 'cat', ['/sys/class/net/eth0/address'])).stdout.trim();
      await topo.exec(ctl, 'ping', ['-n', '-c', '1', '-W', '2', '192.168.70.1']);
      const spoof = await topo.status(
        ctl,
        'timeout',
        ['-s', 'KILL', '3', 'arpspoof', '-i', 'eth0', '-t', '192.168.70.1', b.ip],
        20_000,
      );
      const garp = await topo.status(
        ctl,
        'timeout',
        ['-s', 'KILL', '10', 'arping', '-U', '-i', 'eth0', '-S', '192.168.70.77', '-c', '2', '192.168.70.77'],
        20_000,
      );
      const host = await neighbours(topo, lan.host);
      const lines = neighbourLines(host).join('\n');
      assert.ok(
        host.some((n) => n.dst === b.ip && n.dev === 'ctl0' && n.lladdr === ctlMac),
        `arpspoof over a veth did not poison the host:\n${lines}\n${spoof.stderr}`,
      );
      assert.ok(
        host.some((n) => n.dst === '192.168.70.77' && n.dev === 'ctl0' && n.lladdr === ctlMac),
        `arping -U over a veth did not reach the host's table:\n${lines}\n${garp.stdout}${garp.stderr}`,
      );
    } finally {
      // The link's neighbour entries go with it.
      await topo.exec(lan.host, 'ip', ['link', 'del', 'ctl0']);
    }
  });

  test("arpspoof from VM A, as the gateway, as VM B and as the host's next hop, poisons neither the host nor VM B", {
    timeout: 60_000,
  }, async () => {
    const before = await tables();
    const d0 = await drops(a);
    // [arpspoof's arguments, the address it claims is at A's MAC]
    const attacks: Array<[string[], string]> = [
      [['-t', VM_A.gateway, b.ip], b.ip], // to the host: B's address is at A
      [['-t', VM_A.gateway, LAN_ROUTER], LAN_ROUTER], // to the host: its uplink's next hop is at A
      [[VM_A.gateway], VM_A.gateway], // to everyone: A is the gateway
      [[VM_B.gateway], VM_B.gateway], // to everyone: A is B's gateway
    ];
    // Killed, not interrupted: an interrupted arpspoof "re-arps" the right MACs and would hide a poisoning.
    const runs = await Promise.all(
      attacks.map(([args]) =>
        topo.status(a.ns, 'timeout', ['-s', 'KILL', '4', 'arpspoof', '-i', 'eth0', ...args], 20_000),
      ),
    );
    attacks.forEach(([args, claimed], i) => {
      assert.match(
        runs[i].stderr,
        new RegExp(`arp reply ${esc(claimed)} is-at`),
        `arpspoof ${args.join(' ')} sent nothing:\n${runs[i].stdout}${runs[i].stderr}`,
      );
    });
    const d1 = await drops(a);
    assert.ok(
      grew(d0, d1, 'arp-sender-spoofed') >= attacks.length,
      `${JSON.stringify(d1)}\n${tail(a.softnet)}`,
    );
    await assertUnpoisoned(before, 'arpspoof');
  });

  test("arping -U from VM A for the gateway, VM B and B's gateway changes neither the host nor VM B", {
    timeout: 60_000,
  }, async () => {
    const before = await tables();
    const d0 = await drops(a);
    const claims = [VM_A.gateway, b.ip, VM_B.gateway];
    // Each claim as a gratuitous request and as a gratuitous reply (-P), two of each.
    const runs = await Promise.all(
      claims.flatMap((ip) =>
        [[], ['-P']].map(async (form) => ({
          what: `arping -U ${form.join(' ')} ${ip}`,
          r: await topo.status(
            a.ns,
            'timeout',
            ['-s', 'KILL', '10', 'arping', '-U', ...form, '-i', 'eth0', '-S', ip, '-c', '2', ip],
            20_000,
          ),
        })),
      ),
    );
    for (const { what, r } of runs) {
      assert.match(r.stdout, /2 packets transmitted/, `${what} did not send:\n${r.stdout}${r.stderr}`);
    }
    const d1 = await drops(a);
    assert.ok(
      grew(d0, d1, 'arp-sender-spoofed') >= runs.length * 2,
      `${JSON.stringify(d1)}\n${tail(a.softnet)}`,
    );
    await assertUnpoisoned(before, 'arping -U');
  });

  test('scapy frames with a forged MAC or address, gratuitous ARP for the gateway and a rogue DHCP server reach neither the host link, the uplink nor VM B', {
    timeout: 90_000,
  }, async () => {
    const gw = VM_A.gateway;
    const gwMac = a.gatewayMac;
    const BCAST = 'ff:ff:ff:ff:ff:ff';
    const eth = (src: string, dst: string) => `Ether(src='${src}', dst='${dst}')`;
    const udp = (src: string, dst: string, dport: number, marker: string) =>
      `IP(src='${src}', dst='${dst}')/UDP(sport=40000, dport=${dport})/Raw(b'${marker}')`;
    // A DHCP server's answer offering B's address with A as router and name server; the marker rides in sname.
    const dhcp = (type: 'offer' | 'ack', src: string, dst: string, marker: string) =>
      `IP(src='${src}', dst='${dst}')/UDP(sport=67, dport=68)/BOOTP(op=2, xid=0x50f7, yiaddr='${b.ip}', ` +
      `siaddr='${src}', chaddr=mac2str('${VM_B.mac}'), sname=b'${marker}')/DHCP(options=[('message-type', ` +
      `'${type}'), ('server_id', '${src}'), ('lease_time', 86400), ('subnet_mask', '255.255.255.0'), ` +
      `('router', '${a.ip}'), ('name_server', '${a.ip}'), 'end'])`;
    const arpFrame = (dst: string, op: number, hwsrc: string, psrc: string, hwdst: string, pdst: string) =>
      `${eth(VM_A.mac, dst)}/ARP(op=${op}, hwsrc='${hwsrc}', psrc='${psrc}', hwdst='${hwdst}', pdst='${pdst}')`;
    const forged = [
      `${eth(FORGED_MAC, gwMac)}/${udp(a.ip, WORLD, 7101, 'sn-forged-mac-world')}`,
      `${eth(FORGED_MAC, gwMac)}/${udp(a.ip, gw, 7102, 'sn-forged-mac-host')}`,
      `${eth(VM_B.mac, gwMac)}/${udp(a.ip, gw, 7103, 'sn-forged-mac-of-b-host')}`,
      `${eth(VM_A.mac, gwMac)}/${udp(UNLEASED, WORLD, 7104, 'sn-forged-ip-world')}`,
      `${eth(VM_A.mac, gwMac)}/${udp(UNLEASED, gw, 7105, 'sn-forged-ip-host')}`,
      `${eth(VM_A.mac, gwMac)}/${udp(b.ip, gw, 7106, 'sn-forged-ip-of-b-host')}`,
      `${eth(VM_A.mac, gwMac)}/${udp(HOST_UPLINK_IP, WORLD, 7107, 'sn-forged-ip-of-host-world')}`,
      `${eth(VM_A.mac, gwMac)}/${udp(gw, b.ip, 7108, 'sn-forged-ip-of-gateway-to-b')}`,
      // Gratuitous ARP for the gateway, request and reply; "B is at A" to the host; an announcement of A's
      // own address with a forged sender MAC.
      arpFrame(BCAST, 1, VM_A.mac, gw, '00:00:00:00:00:00', gw),
      arpFrame(BCAST, 2, VM_A.mac, gw, BCAST, gw),
      arpFrame(gwMac, 2, VM_A.mac, b.ip, gwMac, gw),
      arpFrame(BCAST, 1, FORGED_MAC, a.ip, '00:00:00:00:00:00', a.ip),
      // A rogue DHCP server on A: broadcast, to A's subnet's broadcast, as the gateway, and unicast to B.
      `${eth(VM_A.mac, BCAST)}/${dhcp('offer', a.ip, '255.255.255.255', 'sn-rogue-offer-bcast')}`,
      `${eth(VM_A.mac, BCAST)}/${dhcp('ack', a.ip, '255.255.255.255', 'sn-rogue-ack-bcast')}`,
      `${eth(VM_A.mac, BCAST)}/${dhcp('offer', gw, '255.255.255.255', 'sn-rogue-offer-as-gateway')}`,
      `${eth(VM_A.mac, BCAST)}/${dhcp('ack', a.ip, '192.168.64.255', 'sn-rogue-ack-subnet-bcast')}`,
      `${eth(VM_A.mac, gwMac)}/${dhcp('offer', a.ip, b.ip, 'sn-rogue-offer-to-b')}`,
    ];
    // Frames that pass, sent after the others, so each capture is known to be live when it has them.
    const legit = [
      `${eth(VM_A.mac, gwMac)}/${udp(a.ip, WORLD, 7190, 'sn-legit-world')}`,
      `${eth(VM_A.mac, gwMac)}/${udp(a.ip, gw, 7191, 'sn-legit-host')}`,
    ];

    const hostLink = await sniff(topo, lan.host, VM_A.hostLink);
    const uplink = await sniff(topo, lan.host, UPLINK);
    const nicB = await sniff(topo, b.ns, 'eth0');
    const d0 = await drops(a);
    await scapySend(topo, a.ns, 'eth0', [...forged, ...legit]);
    await topo.exec(lan.host, 'ping', ['-n', '-c', '1', '-W', '2', b.ip]);
    await until(
      'each capture shows the frame that passes',
      async () =>
        hostLink.seen().includes('sn-legit-host') &&
        uplink.seen().includes('sn-legit-world') &&
        nicB.seen().includes(`${VM_B.gateway} > ${b.ip}: ICMP echo request`),
      10_000,
      100,
    );
    const seen = {
      'the host link': await hostLink.stop(),
      'the uplink': await uplink.stop(),
      "VM B's NIC": await nicB.stop(),
    };
    const d1 = await drops(a);

    const everywhere: Array<string | RegExp> = [
      'sn-forged',
      'sn-rogue',
      FORGED_MAC,
      'BOOTP/DHCP',
      new RegExp(`who-has ${esc(gw)} (\\(\\S+\\) )?tell`),
      new RegExp(`Reply ${esc(gw)} is-at`),
      new RegExp(`Reply ${esc(b.ip)} is-at ${esc(VM_A.mac)}`),
      new RegExp(`Reply ${esc(b.ip)} is-at ${esc(a.extMac)}`),
    ];
    const banned: Record<keyof typeof seen, Array<string | RegExp>> = {
      // A's own frames reach the host link from its external MAC, never its own; its forged addresses never.
      'the host link': [...everywhere, VM_A.mac, from(UNLEASED), from(b.ip)],
      // Nothing of A's own, MAC or address, leaves untranslated.
      'the uplink': [...everywhere, VM_A.mac, from(a.ip), from(UNLEASED)],
      "VM B's NIC": [...everywhere, VM_A.mac, a.extMac, from(a.ip), from(HOST_UPLINK_IP), from(gw)],
    };
    for (const [where, text] of Object.entries(seen) as Array<[keyof typeof seen, string]>) {
      for (const pat of banned[where]) {
        const hit = typeof pat === 'string' ? text.includes(pat) : pat.test(text);
        assert.ok(!hit, `${pat} seen on ${where}:\n${text}\n${tail(a.softnet)}`);
      }
    }
    const counts = JSON.stringify(d1);
    assert.ok(grew(d0, d1, 'src-mac-spoofed') >= 3, counts);
    assert.ok(grew(d0, d1, 'ipv4-src-spoofed') >= 4, counts);
    assert.ok(grew(d0, d1, 'arp-sender-spoofed') >= 3, counts);
  });

  test('a rogue DHCP answer from VM A unicast to the gateway does not reach the host link', async () => {
    // A VM is never a DHCP server: its DHCP answers go nowhere, not even to the host at the gateway.
    const gw = VM_A.gateway;
    const frame =
      `Ether(src='${VM_A.mac}', dst='${a.gatewayMac}')/IP(src='${a.ip}', dst='${gw}')/UDP(sport=67, dport=68)/` +
      `BOOTP(op=2, xid=0x50f8, yiaddr='${a.ip}', siaddr='${a.ip}', chaddr=mac2str('${VM_A.mac}'), ` +
      `sname=b'sn-rogue-ack-to-host')/DHCP(options=[('message-type', 'ack'), ('server_id', '${a.ip}'), ` +
      `('router', '${a.ip}'), 'end'])`;
    const legit =
      `Ether(src='${VM_A.mac}', dst='${a.gatewayMac}')/IP(src='${a.ip}', dst='${gw}')/` +
      `UDP(sport=40000, dport=7192)/Raw(b'sn-legit-host-2')`;
    const hostLink = await sniff(topo, lan.host, VM_A.hostLink);
    await scapySend(topo, a.ns, 'eth0', [frame, legit]);
    await until(
      'the host link shows the frame that passes',
      async () => hostLink.seen().includes('sn-legit-host-2'),
      10_000,
      100,
    );
    const seen = await hostLink.stop();
    assert.ok(!seen.includes('sn-rogue-ack-to-host'), `the rogue DHCP ACK reached the host link:\n${seen}`);
    assert.ok(!seen.includes('BOOTP/DHCP'), seen);
  });

  test("VM A reaches neither VM B nor the host at B's gateway; B's NIC sees nothing of A's", {
    timeout: 60_000,
  }, async () => {
    const nicB = await sniff(topo, b.ns, 'eth0', 'ip');
    const d0 = await drops(a);
    const [pingB, curlB, curlHostAtB, curlHostAtA] = await Promise.all([
      ping(topo, a.ns, b.ip, 2),
      httpGet(topo, a.ns, `http://${b.ip}/`, 3),
      httpGet(topo, a.ns, `http://${VM_B.gateway}:${HOST_PORT}/`, 3),
      httpGet(topo, a.ns, `http://${VM_A.gateway}:${HOST_PORT}/`, 5),
    ]);
    // What does pass to B: the host's ping.
    await topo.exec(lan.host, 'ping', ['-n', '-c', '1', '-W', '2', b.ip]);
    await until(
      "B's NIC shows the host's ping",
      async () => nicB.seen().includes(`${VM_B.gateway} > ${b.ip}: ICMP echo request`),
      10_000,
      100,
    );
    const seen = await nicB.stop();
    const d1 = await drops(a);
    assert.equal(curlHostAtA.stdout, PAGE, `the host at A's own gateway: ${curlHostAtA.stderr}`);
    assert.equal(pingB.received, 0, pingB.out);
    assert.notEqual(curlB.code, 0, `curl reached VM B: ${curlB.stdout}`);
    assert.notEqual(curlHostAtB.code, 0, `curl reached the host at B's gateway: ${curlHostAtB.stdout}`);
    for (const addr of [a.ip, HOST_UPLINK_IP, VM_A.gateway]) {
      assert.doesNotMatch(seen, from(addr), `${addr} seen on VM B's NIC:\n${seen}`);
    }
    assert.ok(grew(d0, d1, 'dst-blocked-by-policy') >= 3, JSON.stringify(d1));
  });
});

describe('destination policy from a VM, seen by nmap and curl', () => {
  const lan = new Lan(new Topology());
  const topo = lan.topo;
  let v: Vm;
  after(() => lan.cleanup());

  before(
    async () => {
      await lan.start();
      v = await lan.vm(VM_A, ['--uplink', UPLINK, '--allow', WORLD_NET]);
    },
    { timeout: 90_000 },
  );

  /** host:port of every port nmap from the VM reports open. */
  async function openPorts(targets: readonly string[]): Promise<{ open: string[]; output: string }> {
    const { states, output } = await nmap(topo, v.ns, targets, LAN_PORTS);
    for (const t of targets) assert.ok(states.has(t), `nmap reported nothing for ${t}:\n${output}`);
    const open: string[] = [];
    for (const [host, ports] of states) {
      for (const p of ports) if (p.endsWith('/open')) open.push(`${host}:${p.split('/')[0]}`);
    }
    return { open: open.sort(), output };
  }

  const all = (hosts: readonly string[]) => hosts.flatMap((h) => LAN_PORTS.map((p) => `${h}:${p}`)).sort();

  test('nmap finds no open port on the LAN (the world, allowed, shows its three)', {
    timeout: 90_000,
  }, async () => {
    const { open, output } = await openPorts([...LAN_HOSTS, WORLD]);
    assert.deepEqual(open, all([WORLD]), `${output}\n${tail(v.softnet)}`);
  });

  test('with --allow 10.0.0.0/8, exactly 10.0.0.10 shows open', { timeout: 90_000 }, async () => {
    await lan.restart(v, ['--uplink', UPLINK, '--allow', '10.0.0.0/8']);
    const { open, output } = await openPorts([...LAN_HOSTS, WORLD]);
    assert.deepEqual(open, all(['10.0.0.10']), `${output}\n${tail(v.softnet)}`);
  });

  test('control: with --allow 0.0.0.0/0 the VM reaches the host, the world and every LAN host', {
    timeout: 60_000,
  }, async () => {
    await lan.restart(v, ['--uplink', UPLINK, '--allow', '0.0.0.0/0']);
    const urls = [
      `http://${VM_A.gateway}:${HOST_PORT}/`,
      ...[...LAN_HOSTS, WORLD].map((h) => `http://${h}:8080/`),
    ];
    const got = await Promise.all(urls.map((u) => httpGet(topo, v.ns, u, 5)));
    urls.forEach((u, i) => {
      assert.equal(got[i].stdout, PAGE, `${u}: exit ${got[i].code} ${got[i].stderr}\n${tail(v.softnet)}`);
    });
  });

  /** Only the host at the gateway answers; no packet of the VM's leaves on the uplink. */
  async function onlyTheHost(args: string[]): Promise<void> {
    await lan.restart(v, ['--uplink', UPLINK, ...args]);
    const uplink = await sniff(topo, lan.host, UPLINK, 'ip');
    const others = [...LAN_HOSTS, WORLD];
    const [host, gwPing, ...rest] = await Promise.all([
      httpGet(topo, v.ns, `http://${VM_A.gateway}:${HOST_PORT}/`, 5),
      ping(topo, v.ns, VM_A.gateway),
      ...others.map((h) => httpGet(topo, v.ns, `http://${h}:8080/`, 3)),
      httpGet(topo, v.ns, `http://${HOST_UPLINK_IP}:${HOST_PORT}/`, 3),
    ]);
    const pings = await Promise.all(others.map((h) => ping(topo, v.ns, h)));
    // The host's own request, which does go out, so the capture is known to be live.
    await httpGet(topo, lan.host, `http://${LAN_HOSTS[0]}:22/`, 5);
    await until(
      "the uplink shows the host's own request",
      async () => uplink.seen().includes(`> ${LAN_HOSTS[0]}.22:`),
      10_000,
      100,
    );
    const seen = await uplink.stop();
    assert.equal(
      host.stdout,
      PAGE,
      `the host at the gateway: exit ${host.code} ${host.stderr}\n${tail(v.softnet)}`,
    );
    assert.equal(gwPing.received, 1, gwPing.out);
    [...others, HOST_UPLINK_IP].forEach((h, i) => {
      assert.equal(rest[i].code, 28, `curl to ${h}: exit ${rest[i].code} ${rest[i].stdout}${rest[i].stderr}`);
    });
    for (const p of pings) assert.equal(p.received, 0, p.out);
    for (const h of others) {
      assert.ok(!seen.includes(`> ${h}.8080:`), `a connection to ${h} went out:\n${seen}`);
      assert.ok(!seen.includes(`> ${h}: ICMP echo request`), `a ping to ${h} went out:\n${seen}`);
    }
  }

  test('--block 0.0.0.0/0 --allow @host leaves only the host', { timeout: 90_000 }, async () => {
    await onlyTheHost(['--block', '0.0.0.0/0', '--allow', '@host']);
  });

  test('--allow 0.0.0.0/0,@host --block 0.0.0.0/0 also leaves only the host (block wins the tie)', {
    timeout: 90_000,
  }, async () => {
    await onlyTheHost(['--allow', '0.0.0.0/0,@host', '--block', '0.0.0.0/0']);
  });
});

describe('reject mode', () => {
  const lan = new Lan(new Topology());
  const topo = lan.topo;
  let v: Vm;
  after(() => lan.cleanup());

  before(
    async () => {
      await lan.start();
      v = await lan.vm(VM_A, ['--uplink', UPLINK, '--allow', WORLD_NET]);
    },
    { timeout: 90_000 },
  );

  test('without --reject a blocked connection times out and a blocked ping goes unanswered', {
    timeout: 60_000,
  }, async () => {
    const curl = await httpGet(topo, v.ns, `http://${LAN_HOSTS[0]}/`, 3);
    assert.equal(curl.code, 28, `curl: exit ${curl.code} ${curl.stderr}`);
    const p = await ping(topo, v.ns, LAN_HOSTS[0], 2);
    assert.equal(p.received, 0, p.out);
    assert.doesNotMatch(p.out, /Packet filtered|Prohibited|Unreachable/i, p.out);
  });

  test('with --reject: curl gets "Connection refused" (exit 7), ping "Packet filtered", both from the blocked address', {
    timeout: 60_000,
  }, async () => {
    await lan.restart(v, ['--uplink', UPLINK, '--allow', WORLD_NET, '--reject']);
    const nic = await sniff(topo, v.ns, 'eth0', 'icmp or tcp');
    const [curls, p, world] = await Promise.all([
      Promise.all(LAN_HOSTS.map((h, i) => httpGet(topo, v.ns, `http://${h}:${LAN_PORTS[i]}/`, 10, ['-v']))),
      ping(topo, v.ns, LAN_HOSTS[0], 2),
      httpGet(topo, v.ns, `http://${WORLD}:8080/`, 5),
    ]);
    await until('the VM saw the allowed page', async () => nic.seen().includes(PAGE.trim()), 10_000, 100);
    const seen = await nic.stop();
    LAN_HOSTS.forEach((h, i) => {
      const c = curls[i];
      assert.equal(c.code, 7, `curl to ${h}: exit ${c.code}\n${c.stderr}\n${tail(v.softnet)}`);
      assert.match(c.stderr, /Connection refused/, c.stderr);
      // The RST comes from the address the VM tried, its port to the VM's.
      assert.match(
        seen,
        new RegExp(`: ${esc(h)}\\.${LAN_PORTS[i]} > ${esc(v.ip)}\\.\\d+: Flags \\[R\\.?\\]`),
        `no RST from ${h}:\n${seen}`,
      );
    });
    assert.equal(p.received, 0, p.out);
    assert.match(
      p.out,
      new RegExp(`From ${esc(LAN_HOSTS[0])} icmp_seq=\\d+ (Packet filtered|Destination .*Prohibited)`),
      p.out,
    );
    assert.match(
      seen,
      new RegExp(
        `: ${esc(LAN_HOSTS[0])} > ${esc(v.ip)}: ICMP host ${esc(LAN_HOSTS[0])} unreachable - admin prohibited`,
      ),
      seen,
    );
    assert.equal(world.stdout, PAGE, `allowed traffic under --reject: exit ${world.code} ${world.stderr}`);
  });

  test('with --reject, a blocked broadcast or multicast datagram gets no answer (RFC 1122 3.2.2)', {
    timeout: 60_000,
  }, async () => {
    // Reject mode is on since the test above. An ICMP error about a broadcast or multicast datagram must not
    // be sent, least of all from the broadcast or group address itself.
    const nic = await sniff(topo, v.ns, 'eth0', 'icmp');
    await topo.exec(v.ns, '/usr/bin/python3', [
      '-c',
      `import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
for dst in ('255.255.255.255', '224.0.0.251', '239.1.2.3', '${LAN_HOSTS[2]}'):
    s.sendto(b'sn-reject-probe', (dst, 5353))`,
    ]);
    // The last one, to a blocked unicast address, is answered: the capture is live once it shows.
    await until(
      'the answer to the unicast datagram',
      async () => nic.seen().includes(`: ${LAN_HOSTS[2]} > ${v.ip}: ICMP`),
      10_000,
      100,
    );
    const seen = await nic.stop();
    for (const addr of ['255.255.255.255', '224.0.0.251', '239.1.2.3']) {
      assert.doesNotMatch(seen, from(addr), `an ICMP error from ${addr}:\n${seen}`);
    }
  });

  test('with --reject, a blocked ICMP error or later fragment gets no answer (RFC 1812 4.3.2.7)', {
    timeout: 60_000,
  }, async () => {
    const [ten, sixteen, one92] = LAN_HOSTS;
    const head = `Ether(src='${VM_A.mac}', dst='${v.gatewayMac}')`;
    const nic = await sniff(topo, v.ns, 'eth0', 'icmp');
    await scapySend(topo, v.ns, 'eth0', [
      // A port unreachable to 10.0.0.10, as the VM's stack would send it.
      `${head}/IP(src='${v.ip}', dst='${ten}')/ICMP(type=3, code=3)/IP(src='${ten}', dst='${v.ip}')/UDP(sport=53, dport=40000)`,
      // The second fragment of a datagram to 172.16.0.10 (offset 1480 bytes).
      `${head}/IP(src='${v.ip}', dst='${sixteen}', id=4242, frag=185, proto=17)/Raw(b'x' * 64)`,
      // What is answered: a datagram to 192.168.1.10, so the capture is known to be live.
      `${head}/IP(src='${v.ip}', dst='${one92}')/UDP(sport=40000, dport=9)/Raw(b'sn-reject-probe')`,
    ]);
    await until(
      'the answer to the datagram',
      async () => nic.seen().includes(`: ${one92} > ${v.ip}: ICMP`),
      10_000,
      100,
    );
    const seen = await nic.stop();
    assert.doesNotMatch(seen, from(ten), `an ICMP error answered an ICMP error:\n${seen}`);
    assert.doesNotMatch(seen, from(sixteen), `an ICMP error answered a later fragment:\n${seen}`);
  });
});

describe("two VMs' softnets on one uplink", () => {
  const lan = new Lan(new Topology());
  const topo = lan.topo;
  after(() => lan.cleanup());

  test("starting B's softnet leaves A's NAT guard and connections working", {
    timeout: 120_000,
  }, async () => {
    await lan.start();
    const a = await lan.vm(VM_A, ['--uplink', UPLINK, '--allow', WORLD_NET]);
    const first = await httpGet(topo, a.ns, `http://${WORLD}:8080/`, 5);
    assert.equal(first.stdout, PAGE, first.stderr);
    const tableA = 'softnet_lan0_61000_64999';
    const b = await lan.vm(VM_B, ['--uplink', UPLINK, '--nat-ports', '65100-65499', '--allow', WORLD_NET]);
    const tables = (await topo.exec(lan.host, 'nft', ['list', 'tables'])).stdout;
    const reserved = (
      await topo.exec(lan.host, 'cat', ['/proc/sys/net/ipv4/ip_local_reserved_ports'])
    ).stdout.trim();
    const fromA = await httpGet(topo, a.ns, `http://${WORLD}:8080/`, 5);
    const fromB = await httpGet(topo, b.ns, `http://${WORLD}:8080/`, 5);
    assert.equal(fromB.stdout, PAGE, `VM B: ${fromB.stderr}\n${tail(b.softnet)}`);
    // The table's name ends with its softnet's pid.
    assert.match(
      tables,
      new RegExp(`table ip ${tableA}_${a.softnet.child.pid}\\b`),
      `A's guard is gone:\n${tables}`,
    );
    assert.match(reserved, /61000-64999/, `A's ports are no longer reserved: ${reserved}`);
    assert.equal(
      fromA.stdout,
      PAGE,
      `VM A after B started: exit ${fromA.code} ${fromA.stderr}\n${tail(a.softnet)}`,
    );
  });

  test('a softnet asking for ports another live softnet guards on that uplink is refused, and A goes on', {
    timeout: 60_000,
  }, async () => {
    const c = await topo.netns('vmc');
    const r = await topo.status(
      lan.host,
      process.execPath,
      withControl(topo, [
        SOFTNET,
        '--vm-netns',
        `/run/netns/${c}`,
        '--vm-mac-address',
        '52:54:00:5e:00:0c',
        '--host-link',
        'softnet2',
        '--subnet',
        '192.168.66.0/24',
        '--uplink',
        UPLINK,
        '--state-dir',
        `${topo.dir}/state-c`,
      ]),
    );
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^softnet: --nat-ports: ports 61000-64999 on lan0 are used by softnet pid \d+/);
    const tables = (await topo.exec(lan.host, 'nft', ['list', 'tables'])).stdout;
    assert.match(tables, /table ip softnet_lan0_61000_64999_\d+/, tables);
  });
});
