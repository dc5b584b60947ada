// The soak's result and its table: faults by kind with the VMs' recovery times, then the checks.

import type { LinkAudit } from './audit.js';
import type { Duplicate } from './checks.js';
import type { Skipped } from './faults.js';
import type { Recovery } from './recovery.js';

/** Everything one soak run found. */
export interface SoakResult {
  minutes: number;
  vms: number;
  /** Faults run, by kind (a kind with two phases counts once per run). */
  injected: Record<string, number>;
  recoveries: Recovery[];
  skipped: Skipped[];
  /** The recovery limit of issue 13, in ms. */
  recoveryLimitMs: number;
  leasesLost: string[];
  duplicates: Duplicate[];
  leaks: string[];
  audits: LinkAudit[];
  maxRss: number;
  rssLimit: number;
  attached: number;
  /** VMs replaced after they did not come back from a fault. */
  replaced: number;
  left: Record<string, number>;
  fetches: { ok: number; fail: number };
  /** Every check that failed, one line each (with its evidence); empty: the soak passed. */
  failures: string[];
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? NaN
    : s.length % 2
      ? s[(s.length - 1) / 2]
      : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function seconds(ms: number): string {
  return Number.isNaN(ms) ? '-' : `${(ms / 1000).toFixed(2)} s`;
}

/** Distinct duplicated addresses (the same pair of holders seen in several samples counts once). */
export function distinctDuplicates(d: Duplicate[]): string[] {
  return [...new Set(d.map((x) => `${x.ip} held by ${x.holders.join(' and ')} (${x.source})`))];
}

/** The table, as the soak prints it. */
export function table(r: SoakResult): string {
  const rows = [['fault', 'injected', 'VM recoveries', 'median', 'worst', 'not recovered']];
  for (const [kind, n] of Object.entries(r.injected)) {
    const recs = r.recoveries.filter((x) => x.kind === kind);
    const times = recs.flatMap((x) => x.times);
    const missing = recs.reduce((s, x) => s + x.missing.length, 0);
    rows.push([
      kind,
      String(n),
      String(times.length),
      seconds(median(times)),
      seconds(times.length ? Math.max(...times) : NaN),
      String(missing),
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  const lines = rows.map((row) =>
    row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '),
  );
  for (const s of r.skipped) lines.push(`${s.kind}: skipped: ${s.why}`);
  const packets = r.audits.reduce((s, a) => s + a.packets, 0);
  const unheld = r.audits.reduce((s, a) => s + a.violations, 0);
  const otherLink = r.audits.flatMap((a) => a.otherLinkExamples.map((e) => `  on ${a.link}: ${e}`));
  lines.push(
    '',
    `VMs: ${r.vms} at a time, ${r.attached} attached in all, ${Object.entries(r.left)
      .map(([k, v]) => `${v} left by ${k}`)
      .join(
        ', ',
      )}, ${r.replaced} replaced after a fault they did not come back from; curl fetches ${r.fetches.ok} ok, ${r.fetches.fail} failed (during faults)`,
    `recovery limit: ${seconds(r.recoveryLimitMs)} from a fault's end to each VM's first answer`,
    `leases lost:          ${r.leasesLost.length}`,
    `addresses duplicated: ${distinctDuplicates(r.duplicates).length}`,
    `leaks:                ${r.leaks.length}`,
    `packets from an address the host did not hold: ${unheld} of ${packets} seen on the uplinks`,
    `packets from the host's address on another link, outside a route move: ${r.audits.reduce((s, a) => s + a.otherLink, 0)}`,
    ...otherLink,
    `engine RSS, highest:  ${(r.maxRss / 2 ** 20).toFixed(0)} MiB (bound ${(r.rssLimit / 2 ** 20).toFixed(0)} MiB)`,
    r.failures.length === 0
      ? 'every check passed'
      : `FAILED (${r.failures.length}):\n- ${r.failures.join('\n- ')}`,
  );
  return `${lines.join('\n')}\n`;
}
