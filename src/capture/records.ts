// How captured frames travel from the engine to `softnet capture`: binary control messages (first byte
// BINARY_TAG), each holding one capture's frames as records. The capture request's reply names the
// format version; a client that does not know it stops.
//
// A message: the tag (1 byte), then its payload: the kind (1 byte, BinaryKind.CAPTURE), 3 bytes zero, the
// capture's id (u32), and records back to back. A record: seconds and nanoseconds since the epoch and the
// frame's length (u32 each), the direction (u8) and 3 bytes zero, then the whole frame. Little-endian, as
// pcap writes it. A reader trusts no length: a message with a record that overruns it is refused whole.

import { BINARY_TAG } from '../control/protocol.js';

/** The version of this format, as the capture reply states it. */
export const CAPTURE_FORMAT = 1;
/** What a binary message carries, its second byte. */
export const BinaryKind = { CAPTURE: 1 } as const;
/** Which way a captured frame went, as the VM sees it. */
export const Direction = { FROM_VM: 0, TO_VM: 1 } as const;

/** Offsets in a message's payload, which starts after the tag. */
const MSG = { KIND: 0, CAPTURE: 4 } as const;
const PAYLOAD_HEADER_LEN = MSG.CAPTURE + 4;
/** Bytes of a message before its first record: the tag and the payload's header. */
export const MESSAGE_HEADER_LEN = 1 + PAYLOAD_HEADER_LEN;
const REC = { SEC: 0, NSEC: 4, LEN: 8, DIR: 12 } as const;
/** Bytes of a record's header. */
export const RECORD_HEADER_LEN = REC.DIR + 4;

/** Writes a message header for capture `id` at the start of `buf`; returns where records start. */
export function writeMessageHeader(buf: Uint8Array, id: number): number {
  buf.fill(0, 0, MESSAGE_HEADER_LEN);
  buf[0] = BINARY_TAG;
  buf[1 + MSG.KIND] = BinaryKind.CAPTURE;
  new DataView(buf.buffer, buf.byteOffset).setUint32(1 + MSG.CAPTURE, id, true);
  return MESSAGE_HEADER_LEN;
}

/**
 * Writes a record at `at` of `out` (through `dv`, a view of it) for the frame at src[off, off+len).
 * Returns the offset after it; the caller made room.
 */
export function writeRecord(
  out: Uint8Array,
  dv: DataView,
  at: number,
  sec: number,
  nsec: number,
  dir: number,
  src: Uint8Array,
  off: number,
  len: number,
): number {
  dv.setUint32(at + REC.SEC, sec, true);
  dv.setUint32(at + REC.NSEC, nsec, true);
  dv.setUint32(at + REC.LEN, len, true);
  dv.setUint32(at + REC.DIR, dir, true);
  out.set(src.subarray(off, off + len), at + RECORD_HEADER_LEN);
  return at + RECORD_HEADER_LEN + len;
}

/** One record as read: `data` is a view into the message. */
export interface CapturedFrame {
  sec: number;
  nsec: number;
  dir: number;
  data: Uint8Array;
}

/**
 * The capture id and records of a binary message's payload (what follows the tag, as Channel hands it
 * over); a string says why it is not a capture message.
 */
export function readMessage(msg: Uint8Array): { capture: number; frames: CapturedFrame[] } | string {
  if (msg.length < PAYLOAD_HEADER_LEN) return 'binary message cut short';
  if (msg[MSG.KIND] !== BinaryKind.CAPTURE) return `binary message of unknown kind ${msg[MSG.KIND]}`;
  const dv = new DataView(msg.buffer, msg.byteOffset, msg.length);
  const frames: CapturedFrame[] = [];
  let at = PAYLOAD_HEADER_LEN;
  while (at < msg.length) {
    if (msg.length - at < RECORD_HEADER_LEN) return `record ${frames.length} cut short`;
    const len = dv.getUint32(at + REC.LEN, true);
    const nsec = dv.getUint32(at + REC.NSEC, true);
    const dir = msg[at + REC.DIR];
    const data = at + RECORD_HEADER_LEN;
    if (len > msg.length - data) return `record ${frames.length} overruns its message`;
    if (nsec >= 1e9 || (dir !== Direction.FROM_VM && dir !== Direction.TO_VM))
      return `record ${frames.length} is malformed`;
    frames.push({ sec: dv.getUint32(at + REC.SEC, true), nsec, dir, data: msg.subarray(data, data + len) });
    at = data + len;
  }
  return { capture: dv.getUint32(MSG.CAPTURE, true), frames };
}
