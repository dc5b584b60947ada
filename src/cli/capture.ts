// `softnet capture VM -w FILE [-c COUNT]`: asks the engine for a copy of one VM's frames, as the VM sent
// and got them (its internal MAC), and writes them as a classic pcap file that tcpdump reads; `-w -`
// writes to standard output, for `softnet capture vm -w - | tcpdump -r -`. It stops on SIGINT or SIGTERM,
// after COUNT frames, when the VM detaches or when the engine stops, and then says on stderr how many
// frames it wrote and how many the engine dropped because this end did not keep up.

import { closeSync, openSync } from 'node:fs';
import { PcapWriter } from '../capture/pcap.js';
import { CAPTURE_FORMAT, readMessage } from '../capture/records.js';
import type { Channel } from '../control/channel.js';
import { connectEngine } from '../control/client.js';
import { ControlError, type Message } from '../control/protocol.js';
import { UsageError } from '../engine/errors.js';
import { engineSettings } from './args.js';
import type { Given } from './flags.js';

/** How long a stopping capture waits for the engine's last frames and counts. */
const STOP_WAIT_MS = 3000;
const STDOUT = 1;

/** How a capture ended, and the engine's counts when it said them. */
interface Ending {
  reason: string;
  code: number;
  dropped?: number;
}

/** The frame limit of -c: a whole number from 1. */
function frameLimit(v: string | undefined): number | null {
  if (v === undefined) return null;
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 0xffffffff)
    throw new UsageError('-c', `'${v}' is not a whole number from 1 to 4294967295`);
  return Number(v);
}

/** Runs `softnet capture` with its parsed flags (grammar.ts: CAPTURE); resolves with the exit status once the file is complete. */
export async function runCapture(g: Given): Promise<number> {
  if (g.words.length !== 1) throw new UsageError('VM', 'capture needs a VM (its name, MAC or address)');
  const out = g.values.get('-w');
  if (out === undefined || out === '') throw new UsageError('-w', 'is required: a file, or - for stdout');
  const limit = frameLimit(g.values.get('-c'));
  const path = engineSettings(g.values).controlSocket;

  let written = 0;
  let writer: PcapWriter | null = null;
  let id = -1;
  let over = false;
  let finish: (e: Ending) => void = () => {};
  const ended = new Promise<Ending>((resolve) => {
    finish = (e) => {
      over = true;
      resolve(e);
    };
  });
  const frames = (bytes: Uint8Array) => {
    const m = readMessage(bytes);
    if (typeof m === 'string') {
      process.stderr.write(`softnet: capture: ${m}; left out\n`);
      return;
    }
    if (over || writer === null || m.capture !== id) return;
    try {
      for (const f of m.frames) {
        if (written === limit) break;
        writer.write(f.data, f.sec, f.nsec);
        written++;
      }
      // Out at once, so a reader at the other end of a pipe sees each frame as it comes.
      writer.flush();
    } catch (e) {
      // The reader of a pipe went away (tcpdump -c): the capture is over, not failed.
      if ((e as NodeJS.ErrnoException).code === 'EPIPE') finish({ reason: 'output-closed', code: 0 });
      else finish({ reason: `writing failed: ${(e as Error).message}`, code: 1 });
      return;
    }
    // The engine says when it has sent them all, with its counts; should that word not come, end anyway.
    if (written === limit) setTimeout(() => finish({ reason: 'count', code: 0 }), STOP_WAIT_MS).unref();
  };
  const ch: Channel | null = connectEngine(path, {
    message: (_c, msg) => {
      if (msg.event === 'capture-end' && msg.capture === id)
        finish({ reason: String(msg.reason), code: 0, dropped: Number(msg.dropped) });
    },
    binary: (_c, bytes) => frames(bytes),
    closed: () => finish({ reason: 'engine-gone', code: 1 }),
  });
  if (!ch) throw new ControlError(`no softnet engine runs at ${path}`);

  let fd = -1;
  const stop = () => {
    ch.request('capture.stop', { capture: id }).then(
      (r) => finish({ reason: 'stopped', code: 0, dropped: Number(r.dropped) }),
      () => finish({ reason: 'stopped', code: 0 }),
    );
    setTimeout(() => finish({ reason: 'stopped', code: 0 }), STOP_WAIT_MS).unref();
  };
  try {
    const reply = await ch.request('capture', {
      vm: g.words[0],
      ...(limit !== null ? { count: limit } : {}),
    });
    if (reply.format !== CAPTURE_FORMAT)
      throw new ControlError(
        `the engine sends captures in format ${String(reply.format)}, not ${CAPTURE_FORMAT}`,
      );
    id = Number(reply.capture);
    fd = out === '-' ? STDOUT : openOutput(out);
    try {
      writer = PcapWriter.toFd(fd);
    } catch (e) {
      throw new UsageError('-w', (e as Error).message);
    }
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    const vm = String((reply.vm as Message).vm);
    const mac = String((reply.vm as Message).mac);
    process.stderr.write(`softnet: capturing ${vm} (${mac}) to ${out === '-' ? 'stdout' : out}\n`);
    const end = await ended;
    const dropped = end.dropped === undefined ? 'unknown' : String(end.dropped);
    process.stderr.write(
      `softnet: capture of ${vm} ended (${end.reason}): ${written} frames written, ${dropped} dropped by the engine\n`,
    );
    return end.code;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    ch.close();
    if (fd > STDOUT) closeSync(fd);
  }
}

/** Opens the output file; a path that cannot be written is a usage error naming -w. */
function openOutput(path: string): number {
  try {
    return openSync(path, 'w', 0o644);
  } catch (e) {
    throw new UsageError('-w', (e as Error).message);
  }
}
