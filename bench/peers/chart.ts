// A bar chart of a run as SVG text: one panel a compared metric (IPv4's TCP both ways, UDP and ping at 20
// and at 2 a second, then TCP both ways over IPv6), one bar a peer, and a dashed line where softnet's
// median must be for its target, for the metrics that have one. A TCP target holds in every round, which
// one line cannot show: its line is the target taken at the kernel's median, labelled so. Written by hand
// so the bench needs no plotting package.

import { guestMtu, type RunRecord } from './report.js';
import { COMPARED, fmt, METRICS6, type MetricInfo } from './summary.js';

const PANEL_W = 450;
const PANEL_H = 250;
const TOP = 70;
const PLOT = { left: 60, right: 20, top: 56, bottom: 40 };
const COLORS: Record<string, string> = {
  softnet: '#d9480f',
  kernel: '#495057',
  pasta: '#1971c2',
  slirp4netns: '#2f9e44',
};

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A round axis maximum and step at or above `max`: 1, 2 or 5 times a power of ten, about 5 steps. */
function axis(max: number): { top: number; step: number } {
  const raw = max / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * pow).find((s) => s >= raw)!;
  return { top: Math.ceil(max / step) * step, step };
}

function panel(run: RunRecord, m: MetricInfo, x0: number, y0: number): string[] {
  const w = PANEL_W - PLOT.left - PLOT.right;
  const h = PANEL_H - PLOT.top - PLOT.bottom;
  const values = run.peers.map((p) => p.median[m.key]);
  const t = run.targets.find((x) => x.metric === m.key);
  const goal = t?.level;
  const shown = [...values, goal].filter((v): v is number => v !== undefined).map((v) => v / m.scale);
  const { top, step } = axis(Math.max(...shown, 1e-9));
  const y = (v: number) => y0 + PLOT.top + h - (v / top) * h;
  const out = [
    `<text x="${x0 + PLOT.left}" y="${y0 + 22}" class="title">${esc(m.label)} (${esc(m.unit)}, ${m.higherIsBetter ? 'higher' : 'lower'} is better)</text>`,
  ];
  for (let v = 0; v <= top + step / 2; v += step) {
    out.push(
      `<line x1="${x0 + PLOT.left}" x2="${x0 + PLOT.left + w}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`,
      `<text x="${x0 + PLOT.left - 6}" y="${y(v) + 4}" class="tick">${Number(v.toPrecision(6))}</text>`,
    );
  }
  const slot = w / values.length;
  values.forEach((v, i) => {
    const name = run.peers[i].name;
    const cx = x0 + PLOT.left + slot * i + slot / 2;
    const bw = slot * 0.6;
    out.push(`<text x="${cx}" y="${y0 + PANEL_H - PLOT.bottom + 18}" class="peer">${esc(name)}</text>`);
    if (v === undefined) {
      const why = !run.peers[i].ipv6 && METRICS6.includes(m) ? 'not run' : 'missing';
      out.push(`<text x="${cx}" y="${y(0) - 6}" class="missing">${why}</text>`);
      return;
    }
    const by = y(v / m.scale);
    out.push(
      `<rect x="${cx - bw / 2}" y="${by}" width="${bw}" height="${y(0) - by}" fill="${COLORS[name] ?? '#868e96'}"/>`,
      `<text x="${cx}" y="${by - 5}" class="value">${fmt(m.key, v)}</text>`,
    );
  });
  if (goal !== undefined) {
    // The legend sits under the title, so it never covers a bar; its sample line goes left of its text,
    // whose width is estimated from the 11 px font.
    const gy = y(goal / m.scale);
    const right = x0 + PLOT.left + w;
    const label = `softnet target ${m.higherIsBetter ? '>=' : '<='} ${fmt(m.key, goal)}${t?.rounds ? ' (median; judged per round)' : ''}`;
    const sample = right - label.length * 6.2 - 8;
    out.push(
      `<line x1="${x0 + PLOT.left}" x2="${right}" y1="${gy}" y2="${gy}" class="target"/>`,
      `<line x1="${sample - 25}" x2="${sample}" y1="${y0 + 38}" y2="${y0 + 38}" class="target"/>`,
      `<text x="${right}" y="${y0 + 42}" class="target-label">${esc(label)}</text>`,
    );
  }
  return out;
}

/** The run as an SVG bar chart of the medians, two panels a row. */
export function svgChart(run: RunRecord): string {
  const width = PANEL_W * 2;
  const height = TOP + PANEL_H * Math.ceil(COMPARED.length / 2);
  const c = run.conditions;
  const body = COMPARED.flatMap((m, i) =>
    panel(run, m, (i % 2) * PANEL_W, TOP + Math.floor(i / 2) * PANEL_H),
  );
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">`,
    `<title>softnet, the kernel path, pasta and slirp4netns: TCP both ways, 64-byte UDP, ping RTT at 20 and at 2 a second, TCP both ways over IPv6</title>`,
    '<style>',
    '.title{font-size:14px;font-weight:bold} .sub{font-size:12px;fill:#495057}',
    '.tick{font-size:11px;text-anchor:end;fill:#495057} .grid{stroke:#dee2e6;stroke-width:1}',
    '.peer{font-size:12px;text-anchor:middle} .value{font-size:11px;text-anchor:middle}',
    '.missing{font-size:11px;text-anchor:middle;fill:#c92a2a}',
    '.target{stroke:#c92a2a;stroke-width:1.5;stroke-dasharray:6 4} .target-label{font-size:11px;text-anchor:end;fill:#c92a2a}',
    '</style>',
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="20" y="26" class="title">softnet and its peers: medians of ${run.rounds} interleaved round${run.rounds === 1 ? '' : 's'}, guest MTU ${guestMtu(run)}</text>`,
    `<text x="20" y="46" class="sub">${esc(`${run.startedAt}, ${c.hostname}: ${c.cpus} CPUs, Linux ${c.kernel}, node ${c.node}; load average ${run.load.atStart.toFixed(2)} to ${run.load.atEnd.toFixed(2)}`)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}
