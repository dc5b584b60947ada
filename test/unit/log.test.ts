// Log lines: one JSON object a line with time, level and event first, nested objects kept nested; the
// text form with bare, quoted and compact-JSON values; a field never hides what the line is.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Logger } from '../../src/util/log.js';

function lines(format: 'text' | 'json', write: (log: Logger) => void): string[] {
  const out: string[] = [];
  write(new Logger(format, (line) => out.push(line)));
  assert.ok(
    out.every((l) => l.endsWith('\n') && l.indexOf('\n') === l.length - 1),
    'one line each',
  );
  return out.map((l) => l.slice(0, -1));
}

const COUNTERS = { drops: { 'src-mac-spoofed': 2 }, 'port:/run/netns/vm:eth0': { rx_frames: 5 } };

test('JSON: time, level, event, then the fields; an object stays an object; undefined is left out', () => {
  const [line] = lines('json', (log) => log.warn('counters', { counters: COUNTERS, gone: undefined, n: 1 }));
  const o = JSON.parse(line);
  assert.deepEqual(Object.keys(o), ['time', 'level', 'event', 'counters', 'n']);
  assert.ok(!Number.isNaN(Date.parse(o.time)));
  assert.equal(o.level, 'warn');
  assert.equal(o.event, 'counters');
  assert.deepEqual(o.counters, COUNTERS);
});

test('JSON: a field named like the line itself is renamed, not obeyed', () => {
  const [line] = lines('json', (log) =>
    log.info('lease bound', { event: 'forged', level: 'error', time: 'x' }),
  );
  const o = JSON.parse(line);
  assert.equal(o.event, 'lease bound');
  assert.equal(o.level, 'info');
  assert.notEqual(o.time, 'x');
  assert.equal(o.field_event, 'forged');
  assert.equal(o.field_level, 'error');
});

test('text: bare values, quoted ones when they hold spaces, quotes or =, objects as compact JSON', () => {
  const [a, b] = lines('text', (log) => {
    log.info('counters', { counters: COUNTERS });
    log.error('x', { plain: 'a', spaced: 'a b', empty: '', eq: 'a=b', obj: { k: 'a b' }, none: undefined });
  });
  assert.equal(a, `softnet: counters counters=${JSON.stringify(COUNTERS)}`);
  assert.equal(
    b,
    `softnet: error: x plain=a spaced="a b" empty="" eq="a=b" obj=${JSON.stringify(JSON.stringify({ k: 'a b' }))}`,
  );
});
