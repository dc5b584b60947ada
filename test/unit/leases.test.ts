// The lease table of one network, in memory and over a lease file in a temporary directory.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { LeaseStore } from '../../src/services/lease-store.js';
import { LeaseTable } from '../../src/services/leases.js';
import type { Clocks } from '../../src/util/clock.js';
import { Logger } from '../../src/util/log.js';
import { RETRY_MAX_MS, RETRY_MIN_MS, StateFiles } from '../../src/util/state-files.js';

const ip = (s: string) => s.split('.').reduce((a, o) => a * 256 + Number(o), 0);
const START = ip('192.168.64.2');
const END = ip('192.168.64.254');
const T0 = Date.parse('2025-01-01T00:00:00Z');
const HOLD = 60_000;
const LEASE = 600_000;

describe('LeaseTable in memory (no store)', () => {
  let t: LeaseTable;
  beforeEach(() => {
    t = new LeaseTable(START, END, null, T0);
  });

  test('choose gives the lowest free address of the pool', () => {
    assert.equal(t.choose('a', 'm-a', 0, T0), START);
    t.offer('a', 'm-a', START, T0 + HOLD);
    assert.equal(t.choose('b', 'm-b', 0, T0), START + 1);
    t.offer('b', 'm-b', START + 1, T0 + HOLD);
    t.release('a');
    assert.equal(t.choose('c', 'm-c', 0, T0), START); // a hole is filled first
  });

  test('choose gives a key the address it holds, offered or bound, whatever it asks for', () => {
    t.offer('a', 'm-a', START + 5, T0 + HOLD);
    assert.equal(t.choose('a', 'm-a', 0, T0), START + 5);
    assert.equal(t.choose('a', 'm-a', START + 9, T0), START + 5);
    t.bind('a', 'm-a', START + 5, T0 + LEASE);
    assert.equal(t.choose('a', 'm-a', 0, T0 + HOLD * 2), START + 5);
  });

  test('choose gives the requested address if it is free, else the lowest free', () => {
    assert.equal(t.choose('a', 'm-a', START + 20, T0), START + 20);
    t.bind('b', 'm-b', START + 20, T0 + LEASE);
    assert.equal(t.choose('a', 'm-a', START + 20, T0), START); // held by b
    assert.equal(t.choose('a', 'm-a', ip('192.168.64.1'), T0), START); // the gateway is not in the pool
    assert.equal(t.choose('a', 'm-a', ip('192.168.64.255'), T0), START); // nor broadcast
    assert.equal(t.choose('a', 'm-a', ip('10.0.0.5'), T0), START); // nor another network
  });

  test('offer holds the address for the hold time only', () => {
    t.offer('a', 'm-a', START, T0 + HOLD);
    const l = t.get('a')!;
    assert.equal(l.state, 'offered');
    assert.equal(l.ip, START);
    assert.equal(l.mac, 'm-a');
    assert.equal(t.holder(START)?.key, 'a');
    assert.equal(t.available('b', 'm-b', START, T0 + HOLD - 1), false);
    assert.equal(t.available('a', 'm-a', START, T0 + HOLD - 1), true);
    assert.equal(t.available('b', 'm-b', START, T0 + HOLD), true); // the hold has run out
    assert.equal(t.choose('b', 'm-b', 0, T0 + HOLD), START);
  });

  test('bind, then renew; a second bind of the same address is a renewal', () => {
    t.offer('a', 'm-a', START, T0 + HOLD);
    assert.equal(t.bind('a', 'm-a', START, T0 + LEASE, 'host-a'), 'bound');
    assert.deepEqual(
      { ...t.get('a')! },
      {
        key: 'a',
        mac: 'm-a',
        ip: START,
        state: 'bound',
        expires: T0 + LEASE,
        hostname: 'host-a',
        server: undefined,
      },
    );
    assert.equal(t.bind('a', 'm-a', START, T0 + 2 * LEASE), 'renewed');
    assert.equal(t.get('a')!.expires, T0 + 2 * LEASE);
  });

  test('binding another address frees the old one: one lease per key, one key per address', () => {
    t.bind('a', 'm-a', START, T0 + LEASE);
    assert.equal(t.bind('a', 'm-a', START + 3, T0 + LEASE), 'bound');
    assert.equal(t.holder(START), undefined);
    assert.equal(t.holder(START + 3)?.key, 'a');
    assert.equal([...t.all()].length, 1);
  });

  test('a bound key that DISCOVERs again keeps its binding', () => {
    t.bind('a', 'm-a', START, T0 + LEASE);
    t.offer('a', 'm-a', t.choose('a', 'm-a', 0, T0 + 1000), T0 + 1000 + HOLD);
    assert.equal(t.get('a')!.state, 'bound');
    assert.equal(t.get('a')!.expires, T0 + LEASE);
  });

  test('release frees the address for another key', () => {
    t.bind('a', 'm-a', START, T0 + LEASE);
    const gone = t.release('a');
    assert.equal(gone?.ip, START);
    assert.equal(t.get('a'), undefined);
    assert.equal(t.holder(START), undefined);
    assert.equal(t.choose('b', 'm-b', 0, T0), START);
    assert.equal(t.release('a'), undefined);
    assert.equal(t.release('nobody'), undefined);
  });

  test('decline quarantines the address until the given time and frees the key', () => {
    t.offer('a', 'm-a', START, T0 + HOLD);
    t.decline('a', START, T0 + LEASE);
    assert.equal(t.get('a'), undefined);
    assert.equal(t.available('a', 'm-a', START, T0), false);
    assert.equal(t.available('b', 'm-b', START, T0 + LEASE - 1), false);
    assert.equal(t.choose('a', 'm-a', START, T0), START + 1);
    assert.equal(t.choose('b', 'm-b', 0, T0), START + 1);
    // After the quarantine the address is free again, with or without expire() having run.
    assert.equal(t.available('b', 'm-b', START, T0 + LEASE), true);
    t.expire(T0 + LEASE);
    assert.equal(t.choose('b', 'm-b', 0, T0 + LEASE), START);
  });

  test('decline of an address outside the pool changes nothing', () => {
    t.bind('a', 'm-a', START, T0 + LEASE);
    t.decline('a', ip('192.168.64.1'), T0 + LEASE);
    assert.equal(t.get('a')?.ip, START);
    assert.equal(t.available('b', 'm-b', START + 1, T0), true);
  });

  test('expire removes ended offers and bindings and returns the bound ones only', () => {
    t.offer('offered', 'm1', START, T0 + HOLD);
    t.bind('short', 'm2', START + 1, T0 + HOLD);
    t.bind('long', 'm3', START + 2, T0 + LEASE);
    assert.deepEqual(t.expire(T0 + HOLD - 1), []);
    assert.equal([...t.all()].length, 3);
    const gone = t.expire(T0 + HOLD);
    assert.deepEqual(
      gone.map((l) => l.key),
      ['short'],
    );
    assert.deepEqual(
      [...t.all()].map((l) => l.key),
      ['long'],
    );
    assert.equal(t.holder(START), undefined);
    assert.equal(t.holder(START + 1), undefined);
  });

  test('an expired lease is still returned by get until expire() runs, but its address is free', () => {
    t.bind('a', 'm-a', START, T0 + 1000);
    assert.equal(t.get('a')?.ip, START);
    assert.equal(t.available('b', 'm-b', START, T0 + 1000), true);
    assert.equal(t.choose('b', 'm-b', 0, T0 + 1000), START);
    t.bind('b', 'm-b', START, T0 + 1000 + LEASE);
    assert.equal(t.get('a'), undefined); // taken over
    assert.equal(t.holder(START)?.key, 'b');
  });

  test('pool exhaustion: choose returns 0, and an address comes back when a hold runs out', () => {
    const small = new LeaseTable(START, START + 4, null, T0);
    for (let i = 0; i < 5; i++) {
      const a = small.choose(`k${i}`, 'm', 0, T0);
      assert.equal(a, START + i);
      small.offer(`k${i}`, `m${i}`, a, T0 + HOLD + i);
    }
    assert.equal(small.choose('late', 'm-late', 0, T0), 0);
    assert.equal(small.choose('late', 'm-late', START + 2, T0), 0);
    assert.equal(small.choose('late', 'm-late', 0, T0 + HOLD), START); // k0's hold ended
  });

  test('a pool of one address', () => {
    const one = new LeaseTable(START, START, null, T0);
    assert.equal(one.choose('a', 'm-a', 0, T0), START);
    one.bind('a', 'm-a', START, T0 + LEASE);
    assert.equal(one.choose('b', 'm-b', 0, T0), 0);
  });

  // Regression: offer() used to return early for a just-expired bound lease, so the hold reserved nothing.
  test('an OFFER to a key whose bound lease just ran out holds the address for the hold time', () => {
    t.bind('a', 'm-a', START, T0 + 1000);
    const now = T0 + 2000; // a's lease ended, expire() has not run yet
    const offered = t.choose('a', 'm-a', 0, now);
    assert.equal(offered, START);
    t.offer('a', 'm-a', offered, now + HOLD);
    assert.equal(
      t.available('b', 'm-b', START, now + 1),
      false,
      'the offered address is free for another key',
    );
    assert.notEqual(t.choose('b', 'm-b', 0, now + 1), START);
  });
});

describe('LeaseTable over a LeaseStore', () => {
  let dir: string;
  let file: string;
  let store: LeaseStore;
  let files: StateFiles;
  /** What the state files logged. */
  let logged: string[];
  /** The state files' monotonic clock, moved by the tests. */
  let mono: number;
  /** Monotonic and wall time alike, so that T0 reads as 2025-01-01 in the file. */
  const clocks: Clocks = { mono: () => 0, wall: () => 0 };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'softnet-leases-'));
    file = join(dir, 'state', 'softnet0.leases.json');
    logged = [];
    mono = 0;
    files = new StateFiles(new Logger('text', (line) => logged.push(line)), () => mono);
    store = new LeaseStore(file, files, clocks);
  });

  /** The files in the state directory other than the lease file, with a timestamp replaced by T. */
  function others(): string[] {
    return readdirSync(join(dir, 'state'))
      .filter((f) => f !== 'softnet0.leases.json')
      .map((f) => f.replace(/corrupt-[0-9TZ-]+$/, 'corrupt-T'));
  }
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** The file parsed as JSON (it must be whole), after checking no temp file is left beside it. */
  function onDisk(): { version: number; leases: Array<Record<string, string>> } {
    assert.deepEqual(readdirSync(join(dir, 'state')), ['softnet0.leases.json']);
    return JSON.parse(readFileSync(file, 'utf8'));
  }

  test('a missing file is an empty table', () => {
    const t = new LeaseTable(START, END, store, T0);
    assert.equal([...t.all()].length, 0);
  });

  test('every change to bound leases is written whole, with no temp file left', () => {
    const t = new LeaseTable(START, END, store, T0);
    t.offer('a', '52:54:00:00:00:01', START, T0 + HOLD);
    assert.throws(() => readFileSync(file), { code: 'ENOENT' }); // offers are not written
    t.bind('a', '52:54:00:00:00:01', START, T0 + LEASE, 'vm-a');
    assert.deepEqual(onDisk(), {
      version: 1,
      leases: [
        {
          key: 'a',
          mac: '52:54:00:00:00:01',
          ip: '192.168.64.2',
          expires: '2025-01-01T00:10:00.000Z',
          hostname: 'vm-a',
        },
      ],
    });
    t.bind('b', '52:54:00:00:00:02', START + 1, T0 + LEASE);
    assert.deepEqual(
      onDisk().leases.map((l) => [l.key, l.ip]),
      [
        ['a', '192.168.64.2'],
        ['b', '192.168.64.3'],
      ],
    );
    t.bind('a', '52:54:00:00:00:01', START, T0 + 2 * LEASE);
    assert.equal(onDisk().leases[0].expires, '2025-01-01T00:20:00.000Z');
    t.release('b');
    assert.deepEqual(
      onDisk().leases.map((l) => l.key),
      ['a'],
    );
    t.expire(T0 + 2 * LEASE);
    assert.deepEqual(onDisk(), { version: 1, leases: [] });
  });

  test('after a restart the bound lease is kept and not handed to another key', () => {
    const t1 = new LeaseTable(START, END, store, T0);
    t1.bind('a', 'm-a', START, T0 + LEASE, 'vm-a');
    const t2 = new LeaseTable(START, END, new LeaseStore(file, files, clocks), T0 + 1000);
    const l = t2.get('a');
    assert.equal(l?.state, 'bound');
    assert.equal(l?.ip, START);
    assert.equal(l?.expires, T0 + LEASE);
    assert.equal(l?.hostname, 'vm-a');
    assert.equal(t2.available('b', 'm-b', START, T0 + 1000), false);
    assert.notEqual(t2.choose('b', 'm-b', START, T0 + 1000), START);
    assert.equal(t2.choose('b', 'm-b', 0, T0 + 1000), START + 1);
    assert.equal(t2.choose('a', 'm-a', 0, T0 + 1000), START);
  });

  test("a bridged VM's lease keeps the LAN server that gave it across a restart; a malformed one is set aside", () => {
    const t1 = new LeaseTable(START, END, store, T0);
    const server = { ip: 0x0a4d0001, mac: '02:ee:00:00:00:01', clientId: '01020000000001' };
    t1.bind('a', 'm-a', START, T0 + LEASE, undefined, server);
    assert.deepEqual(onDisk().leases[0].server, {
      ip: '10.77.0.1',
      mac: '02:ee:00:00:00:01',
      client_id: '01020000000001',
    });
    assert.deepEqual(new LeaseTable(START, END, store, T0).get('a')?.server, server);
    for (const bad of [
      { ip: 'x', mac: '02:ee:00:00:00:01' },
      { ip: '10.77.0.1', mac: 'nope' },
      { ip: '10.77.0.1', mac: '02:ee:00:00:00:01', client_id: 'zz' },
    ]) {
      const entry = {
        key: 'a',
        mac: 'm-a',
        ip: '192.168.64.2',
        expires: '2099-01-01T00:00:00.000Z',
        server: bad,
      };
      writeFileSync(file, JSON.stringify({ version: 1, leases: [entry] }));
      const loaded = new LeaseStore(file, files, clocks).load();
      assert.deepEqual(loaded.leases, []);
      assert.equal(loaded.setAside, true);
      assert.match(logged.at(-1)!, /state file unreadable, moved aside .*reason="bad lease entry/);
    }
  });

  test('expired leases are not loaded', () => {
    const t1 = new LeaseTable(START, END, store, T0);
    t1.bind('a', 'm-a', START, T0 + 1000);
    t1.bind('b', 'm-b', START + 1, T0 + LEASE);
    const t2 = new LeaseTable(START, END, store, T0 + 1000);
    assert.equal(t2.get('a'), undefined);
    assert.equal(t2.get('b')?.ip, START + 1);
    assert.equal(t2.choose('c', 'm-c', 0, T0 + 1000), START);
  });

  test('offers are not kept across a restart', () => {
    const t1 = new LeaseTable(START, END, store, T0);
    t1.bind('a', 'm-a', START, T0 + LEASE);
    t1.offer('b', 'm-b', START + 1, T0 + HOLD);
    const t2 = new LeaseTable(START, END, store, T0);
    assert.equal(t2.get('b'), undefined);
    assert.equal(t2.choose('c', 'm-c', 0, T0), START + 1);
  });

  test('a hand-written file: entries outside the pool are skipped, contradicting ones set aside and their addresses held back', () => {
    const iso = (ms: number) => new Date(ms).toISOString();
    mkdirSync(join(dir, 'state'));
    writeFileSync(
      file,
      JSON.stringify({
        version: 1,
        leases: [
          { key: 'a', mac: 'm', ip: '192.168.64.2', expires: iso(T0 + LEASE) },
          { key: 'b', mac: 'm', ip: '192.168.64.2', expires: iso(T0 + 2 * LEASE) }, // same address
          { key: 'c', mac: 'm', ip: '192.168.64.3', expires: iso(T0 + LEASE) },
          { key: 'c', mac: 'm', ip: '192.168.64.4', expires: iso(T0 + LEASE) }, // same key
          { key: 'e', mac: 'm', ip: '192.168.64.5', expires: iso(T0 + LEASE) }, // sound
          { key: 'f', mac: 'm', ip: '192.168.64.1', expires: iso(T0 + LEASE) }, // the gateway
          { key: 'g', mac: 'm', ip: '10.0.0.9', expires: iso(T0 + LEASE) }, // another network
        ],
      }),
    );
    const t = new LeaseTable(START, END, store, T0);
    assert.deepEqual(
      [...t.all()].map((l) => [l.key, l.ip]),
      [['e', START + 3]],
    );
    // Whoever asks, a contested address is nobody's until the latest lease on it would have ended.
    for (const key of ['a', 'b', 'c', 'new']) {
      assert.equal(t.available(key, 'm', START, T0 + 2 * LEASE - 1), false);
      assert.equal(t.available(key, 'm', START + 1, T0 + LEASE - 1), false);
      assert.equal(t.available(key, 'm', START + 2, T0 + LEASE - 1), false);
    }
    assert.equal(t.choose('new', 'm', 0, T0), START + 4);
    assert.equal(t.available('new', 'm', START, T0 + 2 * LEASE), true);
    assert.deepEqual(others(), ['softnet0.leases.json.corrupt-T']);
    assert.equal(logged.length, 1);
    assert.match(
      logged[0],
      /^softnet: warn: state file unreadable, moved aside file=\S+softnet0\.leases\.json reason="two leases of 192\.168\.64\.2 \(and 1 more\)" moved_to=\S+\.corrupt-\S+\n$/,
    );
    // What was sound is on disk again at once.
    assert.deepEqual(
      JSON.parse(readFileSync(file, 'utf8')).leases.map((l: { key: string }) => l.key),
      ['e'],
    );
  });

  for (const [what, text, reason] of [
    ['not JSON', '{"version":1,', /JSON/],
    ['cut short', '{"version":1,"leases":[{"key":"a","mac":"m","ip":"192.168.64.2","exp', /JSON/],
    ['of another version', JSON.stringify({ version: 2, leases: [] }), /not a softnet lease file/],
    ['not an object', '[]', /not a softnet lease file/],
  ] as const) {
    test(`a lease file ${what} is moved aside and logged once; the table starts empty and writes a new file`, () => {
      mkdirSync(join(dir, 'state'));
      writeFileSync(file, text);
      const t = new LeaseTable(START, END, store, T0);
      assert.equal([...t.all()].length, 0);
      assert.deepEqual(others(), ['softnet0.leases.json.corrupt-T']);
      const aside = readdirSync(join(dir, 'state')).find((f) => f.includes('.corrupt-'))!;
      assert.equal(readFileSync(join(dir, 'state', aside), 'utf8'), text, 'moved aside as it was');
      assert.equal(logged.length, 1);
      assert.match(logged[0], /^softnet: warn: state file unreadable, moved aside file=\S+ reason=/);
      assert.match(logged[0], reason);
      assert.ok(logged[0].includes(`moved_to=${join(dir, 'state', aside)}`), logged[0]);
      t.bind('a', 'm-a', START, T0 + LEASE);
      assert.deepEqual(
        JSON.parse(readFileSync(file, 'utf8')).leases.map((l: { ip: string }) => l.ip),
        ['192.168.64.2'],
      );
    });
  }

  test('a disk that refuses writes: the table goes on, one line each way, retries back off, the newest content lands', () => {
    const t = new LeaseTable(START, END, store, T0);
    t.bind('a', 'm-a', START, T0 + LEASE);
    // Now the store's directory cannot be written: a regular file is in its place (ENOTDIR, as a full
    // disk gives ENOSPC; the integration tests use a real full and read-only disk).
    rmSync(join(dir, 'state'), { recursive: true });
    writeFileSync(join(dir, 'state'), '');
    assert.equal(t.bind('b', 'm-b', START + 1, T0 + LEASE), 'bound');
    assert.equal(t.get('b')?.state, 'bound');
    assert.equal(files.persisted, false);
    assert.match(files.error!, /softnet0\.leases\.json: (EEXIST|ENOTDIR)$/);
    assert.equal(files.failedWrites, 1);
    t.release('a');
    t.bind('c', 'm-c', START + 2, T0 + LEASE);
    assert.equal(files.failedWrites, 1, 'not tried again before the backoff is over');
    // The backoff doubles from 1 s to 60 s.
    const tries: number[] = [];
    for (let ms = 0; ms <= 200_000; ms += 500) {
      mono = ms;
      const before = files.failedWrites;
      files.retry();
      if (files.failedWrites > before) tries.push(ms);
    }
    assert.deepEqual(tries, [1000, 3000, 7000, 15000, 31000, 63000, 123000, 183000]);
    assert.equal(RETRY_MIN_MS, 1000);
    assert.equal(RETRY_MAX_MS, 60_000);
    assert.equal(logged.length, 1);
    assert.match(
      logged[0],
      /^softnet: warn: state not persisted.* file=\S+softnet0\.leases\.json error=(ENOTDIR|EEXIST)\n$/,
    );
    // The disk takes writes again: the next retry writes what the table holds now, and says so once.
    rmSync(join(dir, 'state'));
    mono = 10_000_000;
    files.retry();
    assert.equal(files.persisted, true);
    assert.equal(files.error, null);
    assert.deepEqual(
      onDisk().leases.map((l) => [l.key, l.ip]),
      [
        ['b', '192.168.64.3'],
        ['c', '192.168.64.4'],
      ],
    );
    assert.equal(logged.length, 2);
    assert.match(logged[1], /^softnet: state persisted again file=\S+softnet0\.leases\.json\n$/);
    t.release('b');
    assert.equal(onDisk().leases.length, 1, 'written at once again');
  });

  test('persist() (the check at start) throws only for a refused permission', () => {
    const t = new LeaseTable(START, END, store, T0);
    mkdirSync(join(dir, 'state'));
    t.bind('a', 'm-a', START, T0 + LEASE);
    rmSync(join(dir, 'state'), { recursive: true });
    writeFileSync(join(dir, 'state'), '');
    assert.doesNotThrow(() => t.persist());
    assert.equal(files.persisted, false);
  });

  test('expiry times are monotonic in memory and wall time in the file, converted at load and save', () => {
    // The wall clock is a day ahead of the monotonic one, then steps back an hour before the restart.
    const DAY = 86_400_000;
    let wall = T0 + DAY;
    const stepped: Clocks = { mono: () => T0, wall: () => wall };
    const t1 = new LeaseTable(START, END, new LeaseStore(file, files, stepped), T0);
    t1.bind('a', 'm-a', START, T0 + LEASE);
    assert.equal(onDisk().leases[0].expires, new Date(T0 + DAY + LEASE).toISOString());
    wall -= 3600_000;
    const t2 = new LeaseTable(START, END, new LeaseStore(file, files, stepped), T0);
    assert.equal(t2.get('a')?.expires, T0 + LEASE + 3600_000);
  });
});
