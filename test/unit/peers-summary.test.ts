// The peers bench's judgement of issue 15's targets, on made-up rounds: TCP must hold in every round (a
// good median does not save a bad round), UDP needs both the kernel's and pasta's floor, and a target whose
// peer has no figure is not judged, never met. Also how ping's per-reply lines are read, and the table of
// the peers' own CPU.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Metrics, PING_RUNS, replyTimes } from '../../bench/peers/measure.js';
import { markdownReport, type RunRecord } from '../../bench/peers/report.js';
import { type RoundResult, summarize, type TargetResult, targets } from '../../bench/peers/summary.js';

const G = 1e9;

/** Figures that meet every target against KERNEL and PASTA. */
const GOOD: Metrics = { tcpUp: 9.5 * G, tcpDown: 9.5 * G, udpPps: 130e3, ping20Us: 140, ping2Us: 160 };
const KERNEL: Metrics = { tcpUp: 10 * G, tcpDown: 10 * G, udpPps: 100e3, ping20Us: 100, ping2Us: 100 };
const PASTA: Metrics = { tcpUp: 1 * G, tcpDown: 1 * G, udpPps: 60e3, ping20Us: 200, ping2Us: 300 };

function round(n: number, peer: string, metrics: Metrics, errors: string[] = []): RoundResult {
  return { round: n, peer, load: 0, metrics, errors };
}

/** Three rounds of softnet, the kernel and pasta; `softnet(n)` gives softnet's figures in round n. */
function run(
  softnet: (n: number) => Metrics,
  pasta: (n: number) => RoundResult = (n) => round(n, 'pasta', PASTA),
) {
  return [1, 2, 3].flatMap((n) => [round(n, 'softnet', softnet(n)), round(n, 'kernel', KERNEL), pasta(n)]);
}

function target(all: TargetResult[], metric: keyof Metrics): TargetResult {
  const t = all.find((x) => x.metric === metric);
  assert.ok(t, metric);
  return t;
}

describe('targets (issue 15)', () => {
  test('all met: every TCP round at 0.95x, UDP 1.3x the kernel and 2.17x pasta, ping under half of pasta', () => {
    const all = targets(run(() => GOOD));
    assert.deepEqual(
      all.map((t) => t.metric),
      ['tcpUp', 'tcpDown', 'udpPps', 'ping20Us', 'ping2Us'],
    );
    for (const t of all) assert.equal(t.met, true, `${t.metric}: ${t.detail}`);
    const up = target(all, 'tcpUp');
    assert.equal(up.rounds?.length, 3);
    assert.equal(up.worst?.ratio, 0.95);
    assert.match(up.detail, /3 rounds judged/);
    // softnet adds 40 µs where pasta adds 100: at most 50 allowed.
    assert.match(target(all, 'ping20Us').detail, /softnet adds \+40 µs, pasta \+100 µs, so at most \+50 µs$/);
    assert.equal(target(all, 'ping2Us').level, 200);
  });

  test('TCP: one round at 0.80x is NOT MET though the median is 0.95x, and names that round', () => {
    const all = targets(run((n) => ({ ...GOOD, tcpDown: (n === 2 ? 8 : 9.5) * G })));
    assert.equal(target(all, 'tcpUp').met, true);
    const down = target(all, 'tcpDown');
    assert.equal(down.met, false);
    assert.deepEqual(down.worst, { round: 2, ratio: 0.8 });
    assert.match(down.detail, /^worst round 2: softnet 8\.00 Gbit\/s = 0\.80x the kernel's 10\.00 Gbit\/s/);
    assert.match(down.detail, /short by 0\.05x, 0\.50 Gbit\/s more needed/);
    assert.match(down.detail, /1 of 3 rounds below 0\.85x/);
    assert.match(down.detail, /the medians' ratio 0\.95x/);
  });

  test('TCP: a round without the kernel is left out, the others judged', () => {
    const results = run(() => GOOD).map((r) =>
      r.round === 3 && r.peer === 'kernel' ? { ...r, metrics: {}, errors: ['could not attach: gone'] } : r,
    );
    const up = target(targets(results), 'tcpUp');
    assert.equal(up.met, true);
    assert.deepEqual(
      up.rounds?.map((r) => r.round),
      [1, 2],
    );
    assert.match(up.detail, /round 3 not judged \(no figure for the kernel\)/);
  });

  test('UDP: 1.30x the kernel but 1.50x pasta fails only the pasta half', () => {
    const all = targets(
      run(
        () => GOOD,
        (n) => round(n, 'pasta', { ...PASTA, udpPps: 130e3 / 1.5 }),
      ),
    );
    const udp = target(all, 'udpPps');
    assert.equal(udp.met, false);
    assert.match(
      udp.detail,
      /1\.30x the kernel's 100 kpps, 1\.50x pasta's 87 kpps \(short by 0\.50x, 43 kpps more needed\)$/,
    );
    assert.doesNotMatch(udp.detail, /the kernel's 100 kpps \(short/);
  });

  test("ping: pasta's ping failed, so both ping targets are not judged, with the reason", () => {
    const failed = (n: number) =>
      round(n, 'pasta', { ...PASTA, ping20Us: undefined, ping2Us: undefined }, [
        'ping20Us: ping: 97 of 100 answered',
        'ping2Us: ping: 19 of 20 answered',
      ]);
    const all = targets(run(() => GOOD, failed));
    for (const metric of ['ping20Us', 'ping2Us'] as const) {
      const t = target(all, metric);
      assert.equal(t.met, null, t.detail);
      assert.equal(t.level, undefined);
    }
    assert.equal(
      target(all, 'ping20Us').detail,
      'no figure for pasta: round 1: ping20Us: ping: 97 of 100 answered',
    );
    assert.equal(target(all, 'udpPps').met, true);
  });

  test('pasta not installed: UDP and ping not judged, TCP (against the kernel only) judged', () => {
    const all = targets(
      run(
        () => GOOD,
        (n) => round(n, 'pasta', {}, ['not run: pasta is not installed']),
      ),
    );
    for (const metric of ['udpPps', 'ping20Us', 'ping2Us'] as const) {
      const t = target(all, metric);
      assert.equal(t.met, null);
      assert.equal(t.detail, 'no figure for pasta: round 1: not run: pasta is not installed');
    }
    assert.equal(target(all, 'tcpUp').met, true);
  });

  test('a peer left out of the run is not judged', () => {
    const results = run(() => GOOD).filter((r) => r.peer !== 'pasta');
    assert.equal(target(targets(results), 'ping2Us').detail, 'no figure for pasta: not in this run');
  });
});

test("ping's reply lines: every sequence number once, duplicates and the summary ignored", () => {
  const out = [
    'PING 203.0.113.10 (203.0.113.10) 56(84) bytes of data.',
    '64 bytes from 203.0.113.10: icmp_seq=1 ttl=63 time=0.412 ms',
    '64 bytes from 203.0.113.10: icmp_seq=2 ttl=63 time=1.05 ms',
    '64 bytes from 203.0.113.10: icmp_seq=2 ttl=63 time=9.99 ms (DUP!)',
    '64 bytes from 203.0.113.10: icmp_seq=4 ttl=63 time=0.398 ms',
    '',
    '--- 203.0.113.10 ping statistics ---',
    '4 packets transmitted, 3 received, +1 duplicates, 25% packet loss, time 150ms',
    'rtt min/avg/max/mdev = 0.398/2.962/9.990/4.000 ms',
  ].join('\n');
  assert.deepEqual(
    [...replyTimes(out)],
    [
      [1, 0.412],
      [2, 1.05],
      [4, 0.398],
    ],
  );
});

test("the CPU of a peer's own process: medians per peer, a table without the kernel (which has none)", () => {
  const cpu = (n: number): Metrics => ({ ...GOOD, tcpUpCpu: 90 + n, tcpDownCpu: 80, udpCpuUs: 9 + n / 10 });
  const results = run(cpu);
  const peers = summarize(
    ['softnet', 'kernel', 'pasta'].map((name) => ({ name, description: name, ipv6: false })),
    results,
  );
  const softnet = peers.find((p) => p.name === 'softnet')!;
  assert.equal(softnet.median.tcpUpCpu, 92);
  assert.equal(softnet.median.udpCpuUs, 9.2);
  assert.equal(peers.find((p) => p.name === 'kernel')!.median.udpCpuUs, undefined);
  const record: RunRecord = {
    startedAt: '',
    finishedAt: '',
    conditions: {
      hostname: 'h',
      cpus: 2,
      cpuModel: 'm',
      kernel: 'k',
      node: 'n',
      tools: { iperf3: 'i', passt: 'p', slirp4netns: 's' },
    },
    load: { atStart: 0, atEnd: 0 },
    rounds: 3,
    measure: { seconds: 5, pings: PING_RUNS },
    peers,
    ratios: {},
    ipv6OverIpv4: {},
    targets: targets(results),
    results,
  };
  const md = markdownReport(record).split('\n');
  const head = md.findIndex((l) => l.startsWith("| the peer's own process |"));
  assert.equal(md[head], "| the peer's own process | unit | softnet |");
  assert.deepEqual(md.slice(head + 2, head + 5), [
    '| TCP VM->world | % of a core | 92 |',
    '| TCP world->VM | % of a core | 80 |',
    '| UDP 64 B VM->world | µs a datagram | 9.2 |',
  ]);
});
