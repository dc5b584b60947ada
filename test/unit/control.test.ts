// The control protocol and channel over real unix SOCK_SEQPACKET sockets: requests and replies, an fd passed
// along with a message, and bad input (not JSON, another version, too long, a flood) that refuses its own
// connection, counted and logged once, never fatal, while the other connections go on.

import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { Channel } from '../../src/control/channel.js';
import { connectEngine } from '../../src/control/client.js';
import { ControlError, decode, encode, MAX_MESSAGE, type Message } from '../../src/control/protocol.js';
import { ControlServer, takeEngineLock } from '../../src/control/server.js';
import { native } from '../../src/native.js';
import { Logger } from '../../src/util/log.js';

const dir = mkdtempSync(join(tmpdir(), 'softnet-control-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const until = async (cond: () => boolean, what: string) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), what);
};

describe('protocol', () => {
  test('a message carries the version; decode refuses other versions, non-objects and bad UTF-8', () => {
    const bytes = encode({ op: 'hello', id: 1 });
    assert.deepEqual(decode(bytes), { v: 1, op: 'hello', id: 1 });
    assert.match(String(decode(new TextEncoder().encode('{"v":2,"op":"x"}'))), /version 2/);
    assert.match(String(decode(new TextEncoder().encode('[1,2]'))), /not a JSON object/);
    assert.match(String(decode(new TextEncoder().encode('{"v":1'))), /not a JSON message/);
    assert.match(String(decode(Uint8Array.of(0x7b, 0xff, 0x7d))), /not a JSON message/);
  });
});

describe('the network namespace lock', () => {
  test('one holder at a time; free again when its socket closes', () => {
    const name = `softnet-test-${process.pid}`;
    const a = native.netnsLock(name);
    assert.ok(a >= 0);
    assert.equal(native.netnsLock(name), -1);
    native.closeFd(a);
    const b = native.netnsLock(name);
    assert.ok(b >= 0, 'free after its holder closed it');
    native.closeFd(b);
  });
});

describe('channel and server', () => {
  const path = join(dir, 'c.sock');
  const received: Array<{ msg: Message; fd: number }> = [];
  const closed: Channel[] = [];
  const logged: string[] = [];
  let server: ControlServer;

  test('only one process at a time holds the engine lock', () => {
    const fd = takeEngineLock(path);
    assert.ok(fd >= 0);
    // The same process again: flock is per open file, so a second open is refused too.
    assert.equal(takeEngineLock(path), -1);
    server = new ControlServer(
      path,
      null,
      {
        message(ch, msg, fd) {
          received.push({ msg, fd });
          if (msg.op === 'echo') ch.reply(msg, { said: msg.say });
          else if (msg.op === 'fail') ch.reply(msg, new ControlError('no such thing', '--thing'));
        },
        closed: (ch) => closed.push(ch),
        holds: () => false,
      },
      new Logger('text', (line) => logged.push(line)),
    );
  });

  test('a request gets its reply; a refusal carries the flag', async () => {
    const ch = connectEngine(path, { message() {}, closed() {} })!;
    assert.ok(ch);
    assert.deepEqual((await ch.request('echo', { say: 'hi' })).said, 'hi');
    await assert.rejects(
      ch.request('fail'),
      (e: unknown) => e instanceof ControlError && e.flag === '--thing' && e.message === 'no such thing',
    );
    ch.close();
    await until(() => closed.length === 1, 'the server saw the client go');
  });

  test('an fd passed with a message arrives open and usable', async () => {
    const file = join(dir, 'passed.txt');
    const fd = openSync(file, 'w');
    const ch = connectEngine(path, { message() {}, closed() {} })!;
    await ch.request('echo', { say: 'with fd' }, fd);
    closeSync(fd);
    const got = received.find((r) => r.msg.say === 'with fd')!;
    assert.ok(got.fd >= 0);
    writeSync(got.fd, 'through the passed fd');
    native.closeFd(got.fd);
    assert.equal(readFileSync(file, 'utf8'), 'through the passed fd');
    ch.close();
  });

  /** What the server sent on raw connection `fd` until it closed it (null: still open after 2 s). */
  const untilClosed = async (fd: number): Promise<Message[] | null> => {
    const buf = new Uint8Array(MAX_MESSAGE);
    const fdOut = new Int32Array(1);
    const got: Message[] = [];
    for (let i = 0; i < 200; i++) {
      const n = native.ctlRecv(fd, buf, fdOut);
      if (n === 0) return got;
      if (n > 0) got.push(decode(buf.subarray(0, n)) as Message);
      else await new Promise((r) => setTimeout(r, 10));
    }
    return null;
  };

  for (const [what, bytes, reason] of [
    ['garbage', new TextEncoder().encode('not json'), 'malformed'],
    ['another version', new TextEncoder().encode('{"v":9,"op":"echo","id":1}'), 'malformed'],
    ['a JSON object that is no request', encode({ hello: 1 }), 'malformed'],
    ['an oversized message', new Uint8Array(MAX_MESSAGE + 10).fill(0x20), 'too-long'],
  ] as const) {
    test(`${what} refuses its connection, says why, counts it and logs once; another goes on`, async () => {
      const other = connectEngine(path, { message() {}, closed() {} })!;
      const fd = native.ctlConnect(path);
      const before = server.refused.get(reason) ?? 0;
      const lines = logged.length;
      for (let i = 0; i < 3; i++) native.ctlSend(fd, bytes, -1);
      const got = await untilClosed(fd);
      native.closeFd(fd);
      assert.ok(got, 'the server closed the connection');
      assert.equal(got.length, 1);
      assert.equal(got[0].event, 'refused');
      assert.match(String(got[0].error), new RegExp(`^refused \\(${reason}\\)`));
      assert.equal(server.refused.get(reason), before + 1);
      assert.equal(logged.length, lines + 1, logged.slice(lines).join(''));
      assert.match(logged[lines], new RegExp(`control connection refused reason=${reason}`));
      assert.equal((await other.request('echo', { say: 'still here' })).said, 'still here');
      other.close();
    });
  }

  test('a flood of requests refuses its connection; another goes on', async () => {
    const other = connectEngine(path, { message() {}, closed() {} })!;
    const fd = native.ctlConnect(path);
    const before = received.length;
    const req = encode({ op: 'quiet', id: 1 });
    let sent = 0;
    for (let i = 0; i < 5000 && native.ctlSend(fd, req, -1) === req.length; i++) sent++;
    const got = await untilClosed(fd);
    native.closeFd(fd);
    assert.ok(got, 'the server closed the flooding connection');
    assert.ok(sent > 200, `sent ${sent}`);
    assert.match(String(got.at(-1)?.error), /^refused \(flood\)/);
    assert.ok(received.length - before <= 201, `${received.length - before} requests handled`);
    assert.equal(server.refused.get('flood'), 1);
    assert.equal((await other.request('echo', { say: 'after the flood' })).said, 'after the flood');
    other.close();
  });

  test('refusals are logged a few times a window, not once per connection', async () => {
    const lines = logged.length;
    for (let i = 0; i < 20; i++) {
      const fd = native.ctlConnect(path);
      native.ctlSend(fd, new TextEncoder().encode('junk'), -1);
      assert.ok(await untilClosed(fd));
      native.closeFd(fd);
    }
    assert.ok(logged.length - lines <= 5, logged.slice(lines).join(''));
  });

  test('a refused client sees the reason as the error of its request', async () => {
    const ch = connectEngine(path, { message() {}, closed() {} })!;
    native.ctlSend(ch.fd, new TextEncoder().encode('junk'), -1);
    await assert.rejects(
      ch.request('echo', { say: 'x' }),
      (e: unknown) => e instanceof ControlError && /^refused \(malformed\)/.test(e.message),
    );
  });

  test('a request to a closed engine is rejected, not left hanging', async () => {
    const ch = connectEngine(path, { message() {}, closed() {} })!;
    server.close();
    await assert.rejects(ch.request('echo', { say: 'late' }), ControlError);
    ch.close();
    assert.equal(
      connectEngine(path, { message() {}, closed() {} }),
      null,
      'no socket file: nobody is the engine',
    );
  });
});
