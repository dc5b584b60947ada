// A VM's view of the world during the soak: a UDP echo probe at 10 Hz (when the VM reaches the world, to
// the tenth of a second) and a TCP fetch loop with curl (that whole connections still work). Both run inside
// the VM's namespace, end by themselves after a given time, and print one line per answer.

import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Topology } from '../../test/lib/topology.js';

/** Debian's python, as test/lib/world.ts uses: another on the PATH may lack what the tests installed. */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** Probes a second; the recovery time's resolution is one probe interval. */
export const PROBE_HZ = 10;

// Sends "<seq> <sent_ms>" to argv[1]:argv[2] every 1/argv[3] s for argv[4] s, and prints "<sent_ms> <recv_ms>"
// for every answer. A send that fails (no address yet, no route) is skipped, as a lost probe.
const PROBE = `
import socket, sys, time, select
host, port, hz, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
end = time.time() + secs
nxt = time.time()
seq = 0
while time.time() < end:
    now = time.time()
    if now >= nxt:
        seq += 1
        try:
            s.sendto(b'%d %d' % (seq, int(now * 1000)), (host, port))
        except OSError:
            pass
        nxt += 1 / hz
        if nxt < now:
            nxt = now + 1 / hz
    r, _, _ = select.select([s], [], [], max(0, min(nxt, end) - time.time()))
    if r:
        try:
            d = s.recv(100)
            print(d.split()[1].decode(), int(time.time() * 1000), flush=True)
        except (OSError, IndexError):
            pass
`;

// Fetches argv[1] about once a second for argv[2] s, printing "ok" or "fail" per attempt.
const FETCH = `
end=$(( $(date +%s) + $2 ))
while [ "$(date +%s)" -lt "$end" ]; do
  if curl -sf -o /dev/null -m 3 "$1"; then echo ok; else echo fail; fi
  sleep 1
done
`;

/** The answers a VM's probe got: when each answered probe was sent and when its answer came, in epoch ms. */
export class ProbeLog {
  /** Send times of answered probes, ascending, paired with receive times. */
  readonly sent: number[] = [];
  readonly received: number[] = [];

  /** Takes one line of the probe's output. */
  add(line: string): void {
    const [s, r] = line.split(' ').map(Number);
    if (Number.isFinite(s) && Number.isFinite(r)) {
      this.sent.push(s);
      this.received.push(r);
    }
  }

  /** The receive time of the first answer to a probe sent at or after `t`, or null if none yet. */
  firstAnswerSentFrom(t: number): number | null {
    // Answers come in send order but for the rare reordering, so a scan from the end is short.
    let i = this.sent.length;
    while (i > 0 && this.sent[i - 1] >= t) i--;
    return i < this.sent.length ? this.received[i] : null;
  }

  /** Whether any probe was answered before `t`. */
  answeredBefore(t: number): boolean {
    return this.sent.length > 0 && this.sent[0] < t;
  }
}

/** Starts the UDP echo probe in `ns` towards `host`:`port` for `seconds`; its answers go to the returned log. */
export function startProbe(
  topo: Topology,
  ns: string,
  host: string,
  port: number,
  seconds: number,
): { child: ChildProcess; log: ProbeLog } {
  const log = new ProbeLog();
  const child = topo.spawn(ns, PYTHON, [
    '-u',
    '-c',
    PROBE,
    host,
    String(port),
    String(PROBE_HZ),
    String(seconds),
  ]);
  eachLine(child, (l) => log.add(l));
  return { child, log };
}

/** Fetch results of a VM's TCP loop. */
export interface FetchCount {
  ok: number;
  fail: number;
}

/** Starts the curl loop in `ns` fetching `url` for `seconds`; its results are counted into the returned object. */
export function startFetches(
  topo: Topology,
  ns: string,
  url: string,
  seconds: number,
): { child: ChildProcess; count: FetchCount } {
  const count: FetchCount = { ok: 0, fail: 0 };
  const child = topo.spawn(ns, 'bash', ['-c', FETCH, 'fetch', url, String(seconds)]);
  eachLine(child, (l) => {
    if (l === 'ok') count.ok++;
    else if (l === 'fail') count.fail++;
  });
  return { child, count };
}

/** Calls `fn` with each whole line `child` prints on stdout; its stderr is read and dropped. */
export function eachLine(child: ChildProcess, fn: (line: string) => void): void {
  let partial = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const l of lines) fn(l);
  });
  child.stderr!.resume();
}
