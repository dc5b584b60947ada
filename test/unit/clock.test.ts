// A step of the wall clock (NTP, `date -s`) must neither end every lease and mapping at once nor keep them
// forever: their timeouts run on the monotonic clock. The step is faked here by replacing Date.now: a real
// one cannot be made in a test (a time namespace offsets only CLOCK_MONOTONIC and CLOCK_BOOTTIME, never
// CLOCK_REALTIME, and setting the machine's clock would disturb everything else on it).

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { FakeIo } from '../../src/ports/fake.js';
import { monotonicMs, monotonicSeconds, toWall } from '../../src/util/clock.js';
import { parseMac } from '../../src/wire/addr.js';
import { inProcessNetwork } from '../lib/in-process.js';

const VM_MAC = parseMac('52:54:00:12:34:56')!;
const GW_MAC = parseMac('02:00:00:00:00:01')!;
const DAY = 86_400_000;
const realNow = Date.now;

/** Steps the wall clock by `ms` from now on. */
function stepWallClock(ms: number): void {
  Date.now = () => realNow() + ms;
}

afterEach(() => {
  Date.now = realNow;
});

for (const step of [-10 * DAY, 10 * DAY]) {
  test(`a lease bound after a wall-clock step of ${step / DAY} days runs its lease time, no more, no less`, () => {
    stepWallClock(step);
    // The VM gets its lease through the real DHCP path.
    const net = inProcessNetwork({ vmMac: VM_MAC, gatewayMac: GW_MAC });
    const lease = net.seg.leases.get(net.att.key)!;
    const left = lease.expires - monotonicMs();
    assert.ok(left > 590_000 && left <= 600_000, `the lease runs ${left} ms more`);
    // People see it in wall time, by the (stepped) wall clock.
    assert.ok(Math.abs(toWall(lease.expires) - (Date.now() + 600_000)) < 10_000);
    // The clock steps back again: the engine's tick neither ends the lease now nor keeps it past its time.
    Date.now = realNow;
    net.seg.tick(monotonicMs(), monotonicSeconds());
    assert.equal(net.seg.leases.get(net.att.key)?.state, 'bound');
    assert.equal(net.att.ip, lease.ip);
    net.seg.tick(lease.expires, monotonicSeconds());
    assert.equal(net.seg.leases.get(net.att.key), undefined);
    assert.equal(net.att.ip, 0);
  });
}

test("the flows' clock is monotonic seconds, whatever the wall clock says", () => {
  stepWallClock(365 * DAY);
  const p = new Pipeline(new FakeIo());
  assert.ok(Math.abs(p.clock - monotonicSeconds()) <= 1, `clock ${p.clock}`);
});
