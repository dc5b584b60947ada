// The control protocol and channel over real unix SOCK_SEQPACKET sockets: requests and replies, an fd passed
// along with a message, and bad input (not JSON, another version, too long) that is reported, never fatal.

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
  const malformed: string[] = [];
  const closed: Channel[] = [];
  let server: ControlServer;

  test('only one process at a time holds the engine lock', () => {
    const fd = takeEngineLock(path);
    assert.ok(fd >= 0);
    // The same process again: flock is per open file, so a second open is refused too.
    assert.equal(takeEngineLock(path), -1);
    server = new ControlServer(path, null, {
      message(ch, msg, fd) {
        received.push({ msg, fd });
        if (msg.op === 'echo') ch.reply(msg, { said: msg.say });
        else if (msg.op === 'fail') ch.reply(msg, new ControlError('no such thing', '--thing'));
      },
      malformed: (_ch, why) => malformed.push(why),
      closed: (ch) => closed.push(ch),
    });
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

  test('garbage, another version and an oversized message are reported and the connection goes on', async () => {
    const fd = native.ctlConnect(path);
    const send = (b: Uint8Array) => assert.equal(native.ctlSend(fd, b, -1), b.length);
    send(new TextEncoder().encode('not json'));
    send(new TextEncoder().encode('{"v":9,"op":"echo","id":1}'));
    send(new Uint8Array(MAX_MESSAGE + 10).fill(0x20));
    send(encode({ op: 'echo', id: 5, say: 'still here' }));
    await until(
      () => received.some((r) => r.msg.say === 'still here'),
      'the good message after the bad ones',
    );
    assert.deepEqual(malformed, ['not a JSON message', 'protocol version 9 is not 1', 'message too long']);
    const buf = new Uint8Array(1024);
    const fdOut = new Int32Array(1);
    let n = -11;
    for (let i = 0; i < 100 && n === -11; i++) {
      n = native.ctlRecv(fd, buf, fdOut);
      if (n === -11) await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(decode(buf.subarray(0, n)), { v: 1, said: 'still here', id: 5, ok: true });
    native.closeFd(fd);
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
