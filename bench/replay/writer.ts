// The replay's writer: a process of its own (the addon's state is per process) that sends a pcap's frames
// over and over, in batches of the addon's sendmmsg, for a bounded time, into a unix datagram socket it
// inherited (--fd N) or out of a TAP device's namespace side through a packet socket (--tap IFNAME), as
// a VM's NIC would. What softnet answers on the socket is read and thrown away, as a VM takes its
// frames: left unread it would fill the socket and be counted as softnet's drops. (Over a TAP, the
// answers go to the namespace's own stack, which drops them.) Prints {"sent": frames the kernel took}.
// Run by fd.ts: node writer.js (--fd N | --tap IFNAME) --pcap FILE --seconds S

import { parseArgs } from 'node:util';
import { readPcapFile } from '../../src/capture/pcap.js';
import { native, PortMode } from '../../src/native.js';
import { BATCH, HEADROOM, STRIDE } from '../../src/pipeline/pipeline.js';
import { VNET_HDR_LEN } from '../../src/wire/vnet.js';

/** A classic BPF program of one instruction, "ret #0": the packet socket only sends, it keeps nothing. */
const KEEP_NOTHING = Uint8Array.of(0x06, 0, 0, 0, 0, 0, 0, 0);
/** How long to let the reader catch up when the socket and the addon's pending buffer are full. */
const BACKOFF_MS = 0.05;

const { values } = parseArgs({
  options: {
    fd: { type: 'string' },
    tap: { type: 'string' },
    pcap: { type: 'string' },
    seconds: { type: 'string' },
  },
});
if ((values.fd === undefined) === (values.tap === undefined) || !values.pcap || !values.seconds) {
  throw new Error('usage: writer.js (--fd N | --tap IFNAME) --pcap FILE --seconds S');
}
const frames = readPcapFile(values.pcap).records.map((r) => r.data);
// A packet socket with PACKET_VNET_HDR (the addon's) takes a virtio header before each frame: all zero,
// no offload.
const head = values.tap === undefined ? 0 : VNET_HDR_LEN;
const n = frames.length;
// The frames one after the other (each behind its header), then one batch of slots for what comes back.
const rxBase = frames.reduce((sum, f) => sum + head + f.length, 0);
const arena = new ArrayBuffer(rxBase + BATCH * STRIDE);
const u8 = new Uint8Array(arena);
const offs = new Uint32Array(n);
const lens = new Uint32Array(n);
let packed = 0;
frames.forEach((f, i) => {
  u8.set(f, packed + head);
  offs[i] = packed;
  lens[i] = head + f.length;
  packed += lens[i];
});
// The batch being sent: the next BATCH frames from wherever the last send stopped, around the end.
const batchOffs = new Uint32Array(BATCH);
const batchLens = new Uint32Array(BATCH);
const rxLens = new Uint32Array(BATCH);
native.setArena(arena);
const fd = values.tap === undefined ? Number(values.fd) : native.packetSocket(values.tap, KEEP_NOTHING);
const port = native.portOpen(fd, PortMode.DGRAM);
/** Reads and drops what softnet sent back, until a batch comes short: the socket is empty. */
function discardAnswers(): void {
  // As the addon's slots are: each frame HEADROOM bytes into its slot.
  while (native.recv(port, rxBase + HEADROOM, STRIDE, BATCH, rxLens) === BATCH) {
    // Nothing to do with them: a batch read is a batch dropped.
  }
}
const pause = new Int32Array(new SharedArrayBuffer(4));
const end = performance.now() + Number(values.seconds) * 1000;
let sent = 0;
let at = 0;
while (performance.now() < end) {
  for (let i = 0, k = at; i < BATCH; i++, k = k + 1 === n ? 0 : k + 1) {
    batchOffs[i] = offs[k];
    batchLens[i] = lens[k];
  }
  const took = native.send(port, batchOffs, batchLens, BATCH);
  // The reader closed its end: the run is over.
  if (took < 0) break;
  sent += took;
  at = (at + took) % n;
  if (head === 0) discardAnswers();
  if (took < BATCH) Atomics.wait(pause, 0, 0, BACKOFF_MS);
}
native.portClose(port);
process.stdout.write(`${JSON.stringify({ sent })}\n`);
