// A short run of the fuzzers (make fuzz runs the long one): every frame from every side, and every DHCP
// message, is handled without a throw and without a frame escaping the rules.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fuzzDhcp } from '../fuzz/dhcp-fuzz.js';
import { fuzzPipeline } from '../fuzz/pipeline-fuzz.js';

test('20000 fuzzed frames from each side of the pipeline: no crash, no escape', (t) => {
  const sent = fuzzPipeline(20_000, 4787);
  t.diagnostic(`frames that left: ${JSON.stringify(sent)}`);
  // The fuzzer must get frames through, or the properties above were checked on nothing.
  assert.ok(
    sent.hostLink > 100 &&
      sent.uplink > 100 &&
      sent.vm > 100 &&
      sent.peer > 10 &&
      sent.forwardedIn > 10 &&
      sent.forwardedOut > 10 &&
      sent.lan > 100 &&
      sent.bridgedVm > 100,
    JSON.stringify(sent),
  );
});

test('20000 fuzzed DHCP messages through the decoder and the server: no crash', () => {
  fuzzDhcp(20_000, 2131);
});
