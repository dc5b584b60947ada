// The Prometheus text format: escaping, types, the order of HELP, TYPE and samples, and the engine's own
// metrics read from an in-process network (every line checked against the format's grammar).

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Engine } from '../../src/engine/engine.js';
import { engineMetrics } from '../../src/engine/metrics.js';
import { Drop } from '../../src/stats/drops.js';
import { Exposition, escapeHelp, escapeLabelValue, formatValue } from '../../src/stats/prometheus.js';
import { VERSION } from '../../src/version.js';
import { parseMac } from '../../src/wire/addr.js';
import { IpProto } from '../../src/wire/ipv4.js';
import { ipFrame } from '../lib/frames.js';
import { inProcessNetwork } from '../lib/in-process.js';
import { parseExposition as parse } from '../lib/prometheus.js';

describe('Prometheus text format', () => {
  test('label values escape backslash, double quote and newline; help escapes backslash and newline', () => {
    assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
    assert.equal(escapeHelp('a\\b"c\nd'), 'a\\\\b"c\\nd');
    const text = new Exposition()
      .family('x_total', 'counter', 'line one\nline "two" \\', [[{ path: 'C:\\tmp\n"q"' }, 3]])
      .text();
    assert.equal(
      text,
      '# HELP x_total line one\\nline "two" \\\\\n# TYPE x_total counter\nx_total{path="C:\\\\tmp\\n\\"q\\""} 3\n',
    );
    assert.equal(parse(text).get('x_total{path="C:\\\\tmp\\n\\"q\\""}'), 3);
  });

  test('types, values, families without labels or samples', () => {
    const text = new Exposition()
      .family('up', 'gauge', 'Up.', [[{}, 1]])
      .family('weird', 'gauge', 'Odd values.', [
        [{ v: 'nan' }, Number.NaN],
        [{ v: 'inf' }, Number.POSITIVE_INFINITY],
        [{ v: 'ninf' }, Number.NEGATIVE_INFINITY],
        [{ v: 'frac' }, 1.5],
        [{ v: 'big' }, 2 ** 53],
      ])
      .family('empty_total', 'counter', 'Nothing yet.', [])
      .text();
    assert.match(text, /^# TYPE up gauge\nup 1$/m);
    assert.match(text, /^weird\{v="nan"\} NaN$/m);
    assert.match(text, /^weird\{v="inf"\} \+Inf$/m);
    assert.match(text, /^weird\{v="ninf"\} -Inf$/m);
    assert.match(text, /^weird\{v="big"\} 9007199254740992$/m);
    assert.match(text, /# TYPE empty_total counter\n$/);
    assert.equal(formatValue(0.25), '0.25');
    parse(text);
  });

  test('bad metric or label names and a family given twice are programming errors', () => {
    assert.throws(() => new Exposition().family('1bad', 'gauge', '', []), /bad metric name/);
    assert.throws(() => new Exposition().family('a-b', 'gauge', '', []), /bad metric name/);
    assert.throws(() => new Exposition().family('ok', 'gauge', '', [[{ 'a-b': 'x' }, 1]]), /bad label/);
    assert.throws(() => new Exposition().family('ok', 'gauge', '', [[{ __x: 'x' }, 1]]), /bad label/);
    const e = new Exposition().family('ok', 'gauge', '', []);
    assert.throws(() => e.family('ok', 'counter', '', []), /given twice/);
  });
});

describe('the engine metrics', () => {
  test('per VM, per drop reason, per network, per uplink, captures and the engine, from the engine counters', () => {
    const vmMac = parseMac('52:54:00:00:00:01')!;
    const gwMac = parseMac('02:00:00:00:00:fe')!;
    const net = inProcessNetwork({
      vmMac,
      gatewayMac: gwMac,
      allow: ['203.0.113.0/24'],
      nat: { addr: 0xc6336402, lo: 61000, hi: 61999, perVm: 100 },
    });
    net.io.deliver(
      net.vmPort.id,
      ipFrame(vmMac, gwMac, net.att.ip, 0xcb00710a, IpProto.UDP),
      ipFrame(parseMac('52:54:00:66:66:66')!, gwMac, net.att.ip, net.cfg.gateway, IpProto.UDP),
    );
    net.p.drain(net.vmPort);
    const spec = { name: 'default "main"' };
    const live = {
      att: net.att,
      net: { spec },
      vm: { mac: '52:54:00:00:00:01' },
      record: { name: 'vm\\1', extMac: '06:54:00:00:00:01' },
    };
    const engine = {
      vms: new Map([['k', live]]),
      networks: new Map([['n', { spec, seg: net.seg, hostLinkProblem: null, hostLinkRepairs: 2 }]]),
      uplinks: new Map([
        [
          'u',
          { ifname: 'eth0', want: null, natPorts: '61000-61999', nat: net.nat, heldReason: null, outages: 3 },
        ],
      ]),
      p: net.p,
      captures: { size: 2 },
      opts: { service: true },
      started: Date.now() - 5000,
    } as unknown as Engine;
    const series = parse(engineMetrics(engine));
    const vm =
      '{vm="vm\\\\1",network="default \\"main\\"",mac="52:54:00:00:00:01",external_mac="06:54:00:00:00:01"}';
    const stats = net.vmPort.stats;
    assert.equal(series.get(`softnet_vm_rx_frames_total${vm}`), stats[0]);
    assert.equal(series.get(`softnet_vm_rx_bytes_total${vm}`), stats[1]);
    assert.equal(series.get(`softnet_vm_tx_frames_total${vm}`), stats[2]);
    assert.equal(series.get(`softnet_vm_tx_bytes_total${vm}`), stats[3]);
    assert.equal(series.get(`softnet_vm_tx_dropped_frames_total${vm}`), 0);
    assert.ok(stats[0] >= 4, 'DHCP and the two frames');
    assert.equal(
      series.get('softnet_drops_total{reason="src-mac-spoofed"}'),
      net.p.drops[Drop.SRC_MAC_SPOOFED],
    );
    assert.equal(series.get('softnet_drops_total{reason="src-mac-spoofed"}'), 1);
    assert.equal(series.get('softnet_drops_total{reason="ipv6-unsupported"}'), 0, 'every reason, zeros too');
    assert.ok(!series.has('softnet_drops_total{reason="none"}'));
    const n = '{network="default \\"main\\""}';
    assert.equal(series.get(`softnet_network_vms${n}`), 1);
    assert.equal(series.get(`softnet_network_leases${n}`), 1);
    assert.equal(series.get(`softnet_network_pool_addresses${n}`), 253);
    assert.equal(series.get('softnet_nat_mappings{uplink="eth0",ports="61000-61999",protocol="udp"}'), 1);
    assert.equal(series.get('softnet_nat_mappings{uplink="eth0",ports="61000-61999",protocol="tcp"}'), 0);
    assert.equal(series.get('softnet_nat_ports{uplink="eth0",ports="61000-61999"}'), 1000);
    const usable =
      'softnet_uplink_usable{uplink="eth0",ports="61000-61999",address="198.51.100.2",reason=""}';
    assert.equal(series.get(usable), 1);
    assert.equal(series.get('softnet_uplink_outages_total{uplink="eth0",ports="61000-61999"}'), 3);
    assert.equal(series.get(`softnet_host_link_usable${n}`), 1);
    assert.equal(series.get(`softnet_host_link_repairs_total${n}`), 2);
    assert.equal(series.get('softnet_captures'), 2);
    assert.equal(
      series.get(`softnet_engine_info{version="${VERSION}",pid="${process.pid}",kind="service"}`),
      1,
    );
    const up = series.get('softnet_engine_uptime_seconds')!;
    assert.ok(up >= 5 && up < 60, String(up));
  });
});
