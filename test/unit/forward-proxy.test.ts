// The host side of a port forward (engine/forward-proxy.ts) on loopback: the "VM" is a server on
// 127.0.0.1 of this process, the proxy's target address is switched by the test as a lease would switch it.

import assert from 'node:assert/strict';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { connect, createServer, type Server } from 'node:net';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ForwardProxy, openForwardProxy } from '../../src/engine/forward-proxy.js';

const LOOPBACK = '127.0.0.1';

/** A port free on 127.0.0.1 for `proto` a moment ago. */
async function freePort(proto: 'tcp' | 'udp'): Promise<number> {
  if (proto === 'udp') {
    const s = createSocket('udp4');
    await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
    const port = s.address().port;
    s.close();
    return port;
  }
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  s.close();
  return port;
}

/** Sends `text` from a fresh socket to 127.0.0.1:`port`; the reply, or null after `ms`. */
async function ask(port: number, text: string, ms = 1000, from?: UdpSocket): Promise<string | null> {
  const s = from ?? createSocket('udp4');
  try {
    const reply = once(s, 'message').then(([m]) => (m as Buffer).toString());
    s.send(text, port, '127.0.0.1');
    return await Promise.race([reply, sleep(ms).then(() => null)]);
  } finally {
    if (!from) s.close();
  }
}

describe('forward proxy, UDP', () => {
  const closers: Array<() => void> = [];
  after(() => {
    for (const c of closers) c();
  });

  test('relays a client to the VM and the answer back; drops while there is no address; follows a move', async () => {
    // The VM: answers "<its port> <what came>"; two of them, as a VM before and after it moved.
    const vms: UdpSocket[] = [];
    for (let i = 0; i < 2; i++) {
      const vm = createSocket('udp4');
      vm.on('message', (m, r) => vm.send(`vm${i} ${m}`, r.port, r.address));
      await new Promise<void>((resolve) => vm.bind(0, '127.0.0.1', resolve));
      vms.push(vm);
      closers.push(() => vm.close());
    }
    // The proxy targets a fixed port: both "VMs" sit on 127.0.0.1, so the move is of the port here.
    let ip: string | null = LOOPBACK;
    let target = vms[0].address().port;
    const ext = await freePort('udp');
    const proxy: ForwardProxy = await openForwardProxy('udp', LOOPBACK, ext, {
      address: () => ip,
      get port() {
        return target;
      },
    });
    closers.push(() => proxy.close());
    const client = createSocket('udp4');
    closers.push(() => client.close());
    assert.equal(await ask(ext, 'one', 2000, client), 'vm0 one');
    assert.equal(await ask(ext, 'two', 2000, client), 'vm0 two');
    ip = null;
    assert.equal(await ask(ext, 'three', 300), null, 'no address: a new client is dropped');
    ip = LOOPBACK;
    target = vms[1].address().port;
    proxy.moved();
    assert.equal(
      await ask(ext, 'four', 2000, client),
      'vm1 four',
      'after the move, the same client goes to the new one',
    );
  });

  test('a port in use is refused with EADDRINUSE', async () => {
    const holder = createSocket('udp4');
    await new Promise<void>((resolve) => holder.bind(0, '127.0.0.1', resolve));
    closers.push(() => holder.close());
    await assert.rejects(
      openForwardProxy('udp', LOOPBACK, holder.address().port, { address: () => LOOPBACK, port: 9 }),
      { code: 'EADDRINUSE' },
    );
  });
});

describe('forward proxy, TCP', () => {
  let vm: Server;
  let vmPort: number;
  const closers: Array<() => void> = [];
  after(() => {
    for (const c of closers) c();
  });

  /** Connects to 127.0.0.1:`port`, sends `data`, ends; resolves with all that came back (a reset ends it too). */
  async function exchange(port: number, data: Buffer): Promise<Buffer> {
    const c = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    c.on('data', (d) => chunks.push(d));
    c.on('error', () => {});
    c.end(data);
    // Not events.once: it rejects on the error a reset brings.
    await new Promise((resolve) => c.once('close', resolve));
    return Buffer.concat(chunks);
  }

  test('pipes a connection both ways, its end of stream too; closes it while there is no address', async () => {
    // The VM: a first line, then an echo until the client ends.
    vm = createServer((s) => {
      s.write('hello\n');
      s.pipe(s);
    });
    await new Promise<void>((resolve) => vm.listen(0, '127.0.0.1', resolve));
    vmPort = (vm.address() as { port: number }).port;
    closers.push(() => vm.close());
    let ip: string | null = LOOPBACK;
    const ext = await freePort('tcp');
    const proxy = await openForwardProxy('tcp', LOOPBACK, ext, { address: () => ip, port: vmPort });
    closers.push(() => proxy.close());
    const data = Buffer.alloc(3 << 20, 7);
    const back = await exchange(ext, data);
    assert.equal(back.subarray(0, 6).toString(), 'hello\n');
    assert.ok(back.subarray(6).equals(data), `${back.length - 6} of ${data.length} bytes came back`);
    ip = null;
    assert.equal((await exchange(ext, Buffer.from('x'))).length, 0, 'no address: closed at once');
  });

  test('a VM port where nothing listens closes the client', async () => {
    const ext = await freePort('tcp');
    const nobody = await freePort('tcp');
    const proxy = await openForwardProxy('tcp', LOOPBACK, ext, { address: () => LOOPBACK, port: nobody });
    closers.push(() => proxy.close());
    assert.equal((await exchange(ext, Buffer.from('x'))).length, 0);
  });

  test('a listener on the IPv6 loopback leads to an IPv6 VM address as well as to an IPv4 one', async () => {
    const ext = await freePort('tcp');
    let to: string | null = '::1';
    const six = createServer((c) => c.end('six\n'));
    await new Promise<void>((resolve) => six.listen(0, '::1', resolve));
    closers.push(() => six.close());
    const port = (six.address() as { port: number }).port;
    const four = createServer((c) => c.end('four\n'));
    await new Promise<void>((resolve) => four.listen(port, '127.0.0.1', resolve));
    closers.push(() => four.close());
    const proxy = await openForwardProxy('tcp', '::1', ext, { address: () => to, port });
    closers.push(() => proxy.close());
    const ask = async (): Promise<string> => {
      const c = connect(ext, '::1');
      const chunks: Buffer[] = [];
      c.on('data', (d) => chunks.push(d));
      c.on('error', () => {});
      await new Promise((resolve) => c.once('close', resolve));
      return Buffer.concat(chunks).toString();
    };
    assert.equal(await ask(), 'six\n');
    to = LOOPBACK;
    assert.equal(await ask(), 'four\n');
  });

  test("an address that is not the host's is refused with EADDRNOTAVAIL", async () => {
    await assert.rejects(openForwardProxy('tcp', '192.0.2.1', 8080, { address: () => LOOPBACK, port: 9 }), {
      code: 'EADDRNOTAVAIL',
    });
  });
});
