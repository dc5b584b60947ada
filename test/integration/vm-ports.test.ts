// The VM ports other than --vm-netns: an inherited datagram socket (Tart, QEMU -netdev dgram), an
// inherited TAP fd, and QEMU's -netdev stream socket. Each carries a whole DHCP exchange.

import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, describe, test } from 'node:test';
import { native, PortMode } from '../../src/native.js';
import { parseMac } from '../../src/wire/addr.js';
import { Udhcpc } from '../lib/clients.js';
import { FramePeer } from '../lib/frame-peer.js';
import { DhcpOption, DhcpType, dhcpFrame, dhcpReply } from '../lib/frames.js';
import { startSoftnet } from '../lib/softnet.js';
import { Topology } from '../lib/topology.js';

const MAC = parseMac('52:54:00:aa:00:01')!;
const u32 = (v: number) => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const typeOf = (f: Uint8Array) => dhcpReply(f)?.msg.type;

describe('--vm-fd with a datagram socketpair', () => {
  const topo = new Topology();
  after(() => topo.cleanup());

  test('carries DISCOVER/OFFER/REQUEST/ACK, padded replies, and the VM going away frees the lease', async () => {
    const host = await topo.netns('host');
    const [vmEnd, softnetEnd] = native.socketpair('dgram');
    const softnet = startSoftnet(
      topo,
      host,
      [
        '--vm-fd',
        '3',
        '--vm-mac-address',
        '52:54:00:aa:00:01',
        '--state-dir',
        `${topo.dir}/state`,
        '--lease-time',
        '120',
      ],
      [softnetEnd],
    );
    native.closeFd(softnetEnd);
    await softnet.waitFor(/started /);
    const vm = new FramePeer(vmEnd, PortMode.DGRAM);
    assert.equal(vm.send(dhcpFrame(MAC, 0x1234, DhcpType.DISCOVER)), 1);
    const offerFrame = await vm.receive((f) => typeOf(f) === DhcpType.OFFER);
    const offer = dhcpReply(offerFrame)!;
    assert.equal(offer.msg.xid, 0x1234);
    assert.ok(offer.payloadLen >= 300, 'replies are padded to 300 bytes');
    const lease = offer.msg.options.get(DhcpOption.LEASE_TIME)!;
    assert.deepEqual([...lease], u32(120));
    vm.send(
      dhcpFrame(MAC, 0x1235, DhcpType.REQUEST, [
        [DhcpOption.REQUESTED_IP, u32(offer.msg.yiaddr)],
        [DhcpOption.SERVER_ID, [...offer.msg.options.get(DhcpOption.SERVER_ID)!]],
      ]),
    );
    const ack = dhcpReply(await vm.receive((f) => typeOf(f) === DhcpType.ACK))!;
    assert.equal(ack.msg.yiaddr, offer.msg.yiaddr);
    await softnet.waitFor(/lease bound ip=192\.168\.64\.2 /);
    // A datagram peer's close is seen on the next frame softnet sends it: the host pings the VM.
    vm.close();
    await topo.status(host, 'ping', ['-c', '2', '-W', '1', '192.168.64.2']);
    await softnet.waitFor(/lease released ip=192\.168\.64\.2 .*reason=vm-gone/);
    assert.equal((await softnet.exited).code, 0);
  });
});

describe('--vm-fd with a TAP fd', () => {
  const topo = new Topology();
  after(() => topo.cleanup());

  test('is detected as a TAP and serves a real DHCP client', async () => {
    const host = await topo.netns('host');
    const vmNs = await topo.netns('vm');
    const tap = native.tapOpen('eth0', `/run/netns/${vmNs}`, MAC, 1500, true);
    const softnet = startSoftnet(
      topo,
      host,
      ['--vm-fd', '3', '--vm-mac-address', '52:54:00:aa:00:01', '--state-dir', `${topo.dir}/state`],
      [tap.fd],
    );
    native.closeFd(tap.fd);
    await softnet.waitFor(/started /);
    const lease = await new Udhcpc(topo, vmNs).once();
    assert.equal(lease.lease, 600);
    await topo.exec(vmNs, 'ping', ['-c', '1', '-W', '2', '192.168.64.1']);
  });
});

describe('--vm-socket (QEMU -netdev stream)', () => {
  const topo = new Topology();
  after(() => topo.cleanup());

  test('carries a DHCP exchange in length-prefixed frames, split across writes', async () => {
    const host = await topo.netns('host');
    const path = `${topo.dir}/vm.sock`;
    const softnet = startSoftnet(topo, host, [
      '--vm-socket',
      path,
      '--vm-mac-address',
      '52:54:00:aa:00:01',
      '--state-dir',
      `${topo.dir}/state`,
    ]);
    await softnet.waitFor(/waiting for the VM/);
    const sock = connect(path);
    await new Promise((resolve) => sock.once('connect', resolve));
    await softnet.waitFor(/vm attached/);
    const frames: Uint8Array[] = [];
    let buf = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
        frames.push(new Uint8Array(buf.subarray(4, 4 + buf.readUInt32BE(0))));
        buf = buf.subarray(4 + buf.readUInt32BE(0));
      }
    });
    const waitType = async (type: number) => {
      for (let i = 0; i < 500; i++) {
        const f = frames.find((x) => typeOf(x) === type);
        if (f) return dhcpReply(f)!;
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error(`no DHCP message of type ${type}`);
    };
    const send = (frame: Uint8Array) => {
      const head = Buffer.alloc(4);
      head.writeUInt32BE(frame.length);
      const whole = Buffer.concat([head, frame]);
      // Two writes cut inside the frame: softnet must reassemble it.
      sock.write(whole.subarray(0, 7));
      setTimeout(() => sock.write(whole.subarray(7)), 20);
    };
    send(dhcpFrame(MAC, 7, DhcpType.DISCOVER));
    const offer = await waitType(DhcpType.OFFER);
    send(dhcpFrame(MAC, 8, DhcpType.REQUEST, [[DhcpOption.REQUESTED_IP, u32(offer.msg.yiaddr)]]));
    const ack = await waitType(DhcpType.ACK);
    assert.equal(ack.msg.yiaddr, offer.msg.yiaddr);
    sock.destroy();
    await softnet.waitFor(/lease released .*reason=vm-gone/);
    assert.equal((await softnet.exited).code, 0);
  });
});
