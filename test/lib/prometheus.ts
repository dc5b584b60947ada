// A strict reader of Prometheus's text format for tests: it checks every line against the format's grammar
// and returns the samples, so a test both validates an exposition and reads its values.

import assert from 'node:assert/strict';

const SAMPLE =
  /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\[\\"n]|[^\\"\n])*",?)*\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$/;

/**
 * Checks `text` against the format: every line a HELP, a TYPE or a sample; a family's HELP and TYPE
 * before its samples, once each; its samples together. Returns the samples by their full series name.
 */
export function parseExposition(text: string): Map<string, number> {
  assert.ok(text.endsWith('\n'));
  const series = new Map<string, number>();
  const types = new Map<string, string>();
  const done = new Set<string>();
  let current = '';
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      if (meta[2] !== current) {
        assert.ok(!done.has(meta[2]), `family ${meta[2]} split`);
        if (current) done.add(current);
        current = meta[2];
      }
      if (meta[1] === 'TYPE') {
        assert.ok(!types.has(meta[2]), `two TYPE lines for ${meta[2]}`);
        assert.match(meta[3], /^(counter|gauge)$/);
        types.set(meta[2], meta[3]);
      }
      continue;
    }
    const m = SAMPLE.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    assert.equal(m[1], current, `sample of ${m[1]} outside its family`);
    assert.ok(types.has(current), `sample before TYPE: ${line}`);
    const name = line.slice(0, line.lastIndexOf(' '));
    assert.ok(!series.has(name), `series twice: ${name}`);
    series.set(name, Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return series;
}
