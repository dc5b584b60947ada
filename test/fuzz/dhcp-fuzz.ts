// Property-based fuzzing of the DHCP decoder and server: mutated real messages and random option lists
// never make parseDhcp or DhcpServer.handle throw, and a reply always fits one frame.

import fc from 'fast-check';
import type { Attachment } from '../../src/net/attachment.js';
import { makeNetwork } from '../../src/net/network.js';
import { STRIDE } from '../../src/pipeline/pipeline.js';
import { DhcpServer, emitDhcpFrame } from '../../src/services/dhcp.js';
import { LeaseTable } from '../../src/services/leases.js';
import { Logger } from '../../src/util/log.js';
import { parseCidr, parseMac } from '../../src/wire/addr.js';
import { DhcpType, parseDhcp } from '../../src/wire/dhcp.js';
import { dhcpFrame } from '../lib/frames.js';

const MAC = parseMac('52:54:00:f0:00:02')!;
const PAYLOAD = 14 + 20 + 8;

/** Runs `runs` mutated DHCP messages through the decoder and the server. */
export function fuzzDhcp(runs: number, seed: number): void {
  const cfg = makeNetwork(parseCidr('192.168.64.0/29')!, {
    name: 'fuzz',
    type: 'shared',
    leaseTime: 600,
    mtu: 1500,
    domain: 'fuzz.internal',
    routes: [{ dest: 0x0a000000, prefix: 8, via: 0 }],
  });
  const leases = new LeaseTable(cfg.poolStart, cfg.poolEnd, null, Date.now());
  const att = { ip: 0, mac: MAC, key: 'fuzz', log: new Logger('text', () => {}) } as unknown as Attachment;
  const server = new DhcpServer(cfg, leases, (a, ip) => {
    a.ip = ip;
  });
  const base = [DhcpType.DISCOVER, DhcpType.REQUEST, DhcpType.RELEASE, DhcpType.DECLINE, DhcpType.INFORM].map(
    (t) =>
      dhcpFrame(MAC, 1, t, [
        [50, [192, 168, 64, 3]],
        [55, [1, 3, 6, 121]],
      ]).subarray(PAYLOAD),
  );
  const out = new Uint8Array(STRIDE);
  const outDv = new DataView(out.buffer);
  const message = fc
    .record({
      b: fc.constantFrom(...base),
      edits: fc.array(fc.tuple(fc.nat(299), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      options: fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 40 })), {
        maxLength: 30,
      }),
      cut: fc.option(fc.integer({ min: 0, max: 1400 }), { nil: undefined }),
    })
    .map(({ b, edits, options, cut }) => {
      const opts = options.flatMap(([code, data]) => [code, data.length, ...data]);
      const m = new Uint8Array(Math.min(cut ?? 1400, 240 + opts.length + 1 + 60));
      m.set(b.subarray(0, Math.min(240, m.length)));
      m.set(opts.slice(0, Math.max(0, m.length - 240)), Math.min(240, m.length));
      for (const [at, v] of edits) if (at < m.length) m[at] = v;
      return m;
    });
  fc.assert(
    fc.property(message, (m) => {
      const parsed = parseDhcp(m, 0, m.length);
      if (!parsed.ok) return;
      const res = server.handle(parsed.msg, att, Date.now());
      if (typeof res === 'number') return;
      const len = emitDhcpFrame(out, outDv, 0, res, MAC, cfg.gateway);
      if (len > STRIDE) throw new Error('a DHCP reply longer than a frame slot');
    }),
    { numRuns: runs, seed, endOnFailure: true },
  );
}
