// The control protocol: one JSON object per SOCK_SEQPACKET message, carrying a version number.
//
// A client sends requests `{v, id, op, ...}`; the engine answers each with `{v, id, ok: true, ...}` or
// `{v, id, ok: false, error, flag?}` (flag: the command-line flag the error is about, so the per-VM form
// can print its usual one line and exit 2). The engine also sends events `{v, event, ...}` without an id
// (a VM was detached, a capture ended), and `{v, event: 'refused', error}` just before it closes a
// connection it will not serve (too many, out of file descriptors, garbage, a flood). A message whose first byte is 0 is binary, not JSON: captured
// frames (capture/records.ts).

/** The protocol version this build speaks; a request of another version is refused. */
export const PROTOCOL_VERSION = 1;
/** The longest message either side takes: a listing of many VMs, or a 64 KiB frame and its record header. */
export const MAX_MESSAGE = 256 * 1024;
/** First byte of a binary message. */
export const BINARY_TAG = 0;

/** Why a message was dropped unread: it was longer than MAX_MESSAGE. */
export const TOO_LONG = 'message too long';

/** A decoded JSON message: a request, a reply or an event. */
export type Message = Record<string, unknown>;

/** A request the engine refused: the reason, and the flag it concerns if any. */
export class ControlError extends Error {
  constructor(
    message: string,
    readonly flag: string | null = null,
  ) {
    super(message);
  }
}

/** The connection to the engine closed before an answer came: another engine may take over. */
export class EngineGone extends ControlError {
  constructor() {
    super('the softnet engine is gone');
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

/** Encodes a message with the protocol version. */
export function encode(msg: Message): Uint8Array {
  return encoder.encode(JSON.stringify({ v: PROTOCOL_VERSION, ...msg }));
}

/** Decodes a JSON message; a string says why it is not one (bad UTF-8, bad JSON, not an object, wrong version). */
export function decode(bytes: Uint8Array): Message | string {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    return 'not a JSON message';
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const msg = value as Message;
  if (msg.v !== PROTOCOL_VERSION) return `protocol version ${String(msg.v)} is not ${PROTOCOL_VERSION}`;
  return msg;
}

/** A string field of a message, or throws a ControlError naming it. */
export function str(msg: Message, key: string): string {
  const v = msg[key];
  if (typeof v !== 'string') throw new ControlError(`'${key}' must be a string`);
  return v;
}

/** An optional string field (null when absent). */
export function optStr(msg: Message, key: string): string | null {
  return msg[key] === undefined || msg[key] === null ? null : str(msg, key);
}

/** An object field, or throws. */
export function obj(msg: Message, key: string): Message {
  const v = msg[key];
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ControlError(`'${key}' must be an object`);
  return v as Message;
}
