// The long fuzz run: `make fuzz` (or node dist/test/fuzz/run.js FRAMES SEED) sends FRAMES frames from each
// of the VM, the host link, the uplink, a bridged VM and the LAN through the pipeline, and the DHCP decoder
// gets its own share.

import { fuzzDhcp } from './dhcp-fuzz.js';
import { fuzzPipeline } from './pipeline-fuzz.js';

const frames = Number(process.argv[2] ?? 350_000);
const seed = Number(process.argv[3] ?? Date.now() % 1_000_000);
const t0 = Date.now();
const sent = fuzzPipeline(frames, seed);
fuzzDhcp(frames, seed);
process.stdout.write(
  `fuzz: ${5 * frames} frames through the pipeline and ${frames} messages through the DHCP decoder, seed ${seed}, ${((Date.now() - t0) / 1000).toFixed(1)} s: no crash, no escape; frames that left: ${JSON.stringify(sent)}\n`,
);
