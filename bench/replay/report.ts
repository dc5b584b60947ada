// The replay's figures: one table of scenario x mode, the target line, and the same as JSON and Markdown.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Result } from './measure.js';

/** The target (issue 7): in-process replay of the 64-byte UDP capture on one core. */
export const TARGET = { scenario: 'udp64', mode: 'in-process', mframesPerS: 3 } as const;
/**
 * Heap growth a frame below which a run allocates nothing per frame: the smallest V8 object (a HeapNumber)
 * is 16 bytes here, so less than 1 byte a frame is fewer than one allocation in 16 frames, a per-batch cost.
 */
export const NO_ALLOCATION_BELOW = 1;

/** A result with the figures the table shows. */
export interface Row extends Result {
  mframesPerS: number;
  nsPerFrame: number;
  gbitPerS: number;
  forwardedPct: number;
  answeredPct: number;
  droppedPct: number;
}

/** Derives the table's figures from a result. */
export function row(r: Result): Row {
  const o = r.outcome;
  const pct = (n: number) => (o.frames > 0 ? (100 * n) / o.frames : 0);
  return {
    ...r,
    mframesPerS: o.frames / r.seconds / 1e6,
    nsPerFrame: o.frames > 0 ? (r.cpuSeconds * 1e9) / o.frames : Number.NaN,
    gbitPerS: (o.bytes * 8) / r.seconds / 1e9,
    forwardedPct: pct(o.toHost + o.toUplink),
    answeredPct: pct(o.answered),
    droppedPct: pct(o.dropped),
  };
}

/** The table, Markdown, one line a row. */
export function table(rows: Row[]): string {
  const lines = [
    '| scenario | mode | Mframes/s | ns/frame (CPU) | Gbit/s | B allocated/frame | forwarded % | answered % | dropped % |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const alloc = r.allocPerFrame === null ? 'n/a' : r.allocPerFrame.toFixed(3);
    lines.push(
      `| ${r.scenario} | ${r.mode} | ${r.mframesPerS.toFixed(3)} | ${r.nsPerFrame.toFixed(0)} | ` +
        `${r.gbitPerS.toFixed(2)} | ${alloc} | ${r.forwardedPct.toFixed(1)} | ${r.answeredPct.toFixed(1)} | ` +
        `${r.droppedPct.toFixed(1)} |`,
    );
  }
  return lines.join('\n');
}

/** Beyond the table: the CPU the run got, drop reasons, and what the writer sent over real fds. */
export function notes(rows: Row[]): string[] {
  const out: string[] = [];
  for (const r of rows) {
    // A process that got little of a core was waiting for one: the machine was busy with others' work.
    const parts = [`the replaying process had ${((100 * r.cpuSeconds) / r.seconds).toFixed(0)} % of a core`];
    if (r.outcome.topDrops.length > 0) {
      parts.push(`dropped: ${r.outcome.topDrops.map((d) => `${d.reason} ${d.frames}`).join(', ')}`);
    }
    if (r.writerSent !== undefined && r.received !== undefined) {
      const pct = r.writerSent > 0 ? ((100 * r.received) / r.writerSent).toFixed(1) : '-';
      parts.push(`the writer sent ${r.writerSent} frames, the pipeline received ${r.received} (${pct} %)`);
    }
    out.push(`${r.scenario} ${r.mode}: ${parts.join('; ')}`);
  }
  return out;
}

/**
 * Whether the target was met, and by how much, as one line (null when its scenario did not run). The rate
 * is frames a second of the CPU time the run got (1e9 / ns a frame): "on one core" on a machine shared
 * with others' work, where the wall-clock rate also counts the time the core ran something else.
 */
export function targetLine(rows: Row[]): { met: boolean; line: string } | null {
  const r = rows.find((x) => x.scenario === TARGET.scenario && x.mode === TARGET.mode);
  if (!r) return null;
  const perCore = 1e3 / r.nsPerFrame;
  const rateMet = perCore >= TARGET.mframesPerS;
  const allocMet = r.allocPerFrame !== null && r.allocPerFrame < NO_ALLOCATION_BELOW;
  const by = Math.round((100 * (perCore - TARGET.mframesPerS)) / TARGET.mframesPerS);
  const alloc =
    r.allocPerFrame === null
      ? 'not measured (a GC ran)'
      : `${r.allocPerFrame.toFixed(3)} B allocated a frame`;
  const met = rateMet && allocMet;
  return {
    met,
    line:
      `target: in-process replay of 64-byte frames (${TARGET.scenario}) at ${TARGET.mframesPerS} Mframes/s or more ` +
      `on one core, with no allocation a frame (under ${NO_ALLOCATION_BELOW} B a frame): ${met ? 'MET' : 'NOT MET'}; ` +
      `${perCore.toFixed(2)} Mframes a CPU second (${by >= 0 ? '+' : ''}${by} % against the target, ` +
      `${rateMet ? 'met' : 'not met'}; ${r.mframesPerS.toFixed(2)} Mframes/s of wall time, the process having ` +
      `had ${((100 * r.cpuSeconds) / r.seconds).toFixed(0)} % of a core), ${alloc} (${allocMet ? 'met' : 'not met'})`,
  };
}

/** Writes replay.json and replay.md into `dir`. */
export function writeResults(dir: string, header: Record<string, unknown>, rows: Row[]): void {
  mkdirSync(dir, { recursive: true });
  const target = targetLine(rows);
  writeFileSync(
    join(dir, 'replay.json'),
    `${JSON.stringify({ ...header, target, results: rows }, null, 2)}\n`,
  );
  const md = [
    '# softnet replay bench: latest run',
    '',
    ...Object.entries(header).map(([k, v]) => `- ${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`),
    '',
    table(rows),
    '',
    ...notes(rows).map((n) => `- ${n}`),
    '',
    target ? target.line : 'target: not evaluated (the udp64 capture was not replayed in-process)',
    '',
  ];
  writeFileSync(join(dir, 'replay.md'), md.join('\n'));
}
