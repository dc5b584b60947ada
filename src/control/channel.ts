// One control connection (either end): messages in and out, an fd passed along with a message, and
// requests matched to their replies. Readiness comes from a WATCH port of the addon.
//
// What one connection costs is bounded: messages are read into one buffer shared by every channel (each
// is decoded before the next is read), and one wake-up reads MAX_READS messages at most, so a client that
// floods cannot keep the others or the VMs' frames waiting. A `refused` event (the engine would not take
// the connection) fails the requests waiting with its reason.

import { native, PortMode } from '../native.js';
import {
  BINARY_TAG,
  ControlError,
  decode,
  EngineGone,
  encode,
  MAX_MESSAGE,
  type Message,
  TOO_LONG,
} from './protocol.js';

/** Linux's EAGAIN, EPIPE and EMSGSIZE, as the addon returns them (negated). */
const EAGAIN = 11;
const EPIPE = 32;
const EMSGSIZE = 90;
/** Messages read in one wake-up; the rest wait for the next turn of the event loop. */
const MAX_READS = 64;
/** Messages a refused connection may still have waiting, read and dropped before it is closed. */
const MAX_DRAIN = 4096;
/** Where every channel reads its messages. */
const rx = new Uint8Array(MAX_MESSAGE);
const fdOut = new Int32Array(1);

/** What the owner of a channel does with what arrives. */
export interface ChannelHandlers {
  /** A request or event (not a reply to this end's own request); `fd` came with it, or is -1. */
  message(ch: Channel, msg: Message, fd: number): void;
  /** A binary message (a captured frame); `bytes` is only valid during the call. */
  binary?(ch: Channel, bytes: Uint8Array): void;
  /** A message that is not one: bad JSON, wrong version, too long (TOO_LONG). The connection stays open. */
  malformed?(ch: Channel, why: string): void;
  /** The other end closed, or the connection failed; the channel is closed already. */
  closed(ch: Channel): void;
}

/** A control connection over a SOCK_SEQPACKET fd, which the channel owns from now on. */
export class Channel {
  private readonly port: number;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve(m: Message): void; reject(e: Error): void }>();
  closed = false;

  constructor(
    readonly fd: number,
    private readonly handlers: ChannelHandlers,
  ) {
    this.port = native.portOpen(fd, PortMode.WATCH);
    native.portWatch(this.port, (_port, status) => (status < 0 ? this.hangUp() : this.readable()));
  }

  /** Sends a message, and `passFd` with it when >= 0; false when the connection cannot take it. */
  send(msg: Message, passFd = -1): boolean {
    return this.sendBytes(encode(msg), passFd);
  }

  /**
   * Sends a binary message, `bytes` starting with BINARY_TAG (written by the caller, so a large buffer is
   * not copied); returns the bytes sent or -errno (-EAGAIN: the other end's buffer is full for now).
   */
  sendBinary(bytes: Uint8Array): number {
    if (this.closed) return -EPIPE;
    return native.ctlSend(this.fd, bytes, -1);
  }

  private sendBytes(bytes: Uint8Array, passFd: number): boolean {
    if (this.closed) return false;
    return native.ctlSend(this.fd, bytes, passFd) === bytes.length;
  }

  /** Sends request `op` and resolves with the reply; rejects with a ControlError when refused or cut off. */
  request(op: string, args: Message = {}, passFd = -1): Promise<Message> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...args, id, op }, passFd)) {
        reject(new EngineGone());
        return;
      }
      this.waiting.set(id, { resolve, reject });
    });
  }

  /** Answers request `req` with `result`, or with the error when `result` is an Error. */
  reply(req: Message, result: Message | Error): void {
    if (result instanceof Error) {
      const flag = result instanceof ControlError ? result.flag : null;
      this.send({ id: req.id, ok: false, error: result.message, ...(flag ? { flag } : {}) });
    } else {
      this.send({ ...result, id: req.id, ok: true });
    }
  }

  /** Closes the connection; pending requests are rejected. */
  close(): void {
    this.closeWith(new EngineGone());
  }

  /** Tells the other end why it is refused (a `refused` event), then closes as if it had hung up. */
  refuse(why: string): void {
    this.send({ event: 'refused', error: why });
    // Input left unread would fail the other end's next read (ECONNRESET) before it reads why.
    for (let i = 0; i < MAX_DRAIN; i++) {
      const n = native.ctlRecv(this.fd, rx, fdOut);
      if (fdOut[0] >= 0) native.closeFd(fdOut[0]);
      if (n <= 0 && n !== -EMSGSIZE) break;
    }
    this.hangUp();
  }

  private closeWith(reason: ControlError): void {
    if (this.closed) return;
    this.closed = true;
    native.portClose(this.port);
    for (const w of this.waiting.values()) w.reject(reason);
    this.waiting.clear();
  }

  private readable(): void {
    for (let i = 0; i < MAX_READS && !this.closed; i++) {
      const n = native.ctlRecv(this.fd, rx, fdOut);
      if (n === -EAGAIN) return;
      if (n === -EMSGSIZE) {
        this.handlers.malformed?.(this, TOO_LONG);
        continue;
      }
      if (n <= 0) {
        this.hangUp();
        return;
      }
      this.dispatch(rx.subarray(0, n), fdOut[0]);
    }
  }

  private hangUp(reason: ControlError = new EngineGone()): void {
    if (this.closed) return;
    this.closeWith(reason);
    this.handlers.closed(this);
  }

  private dispatch(bytes: Uint8Array, fd: number): void {
    if (bytes[0] === BINARY_TAG) {
      if (fd >= 0) native.closeFd(fd);
      this.handlers.binary?.(this, bytes.subarray(1));
      return;
    }
    const msg = decode(bytes);
    if (typeof msg === 'string') {
      if (fd >= 0) native.closeFd(fd);
      this.handlers.malformed?.(this, msg);
      return;
    }
    if (msg.event === 'refused' && msg.id === undefined) {
      if (fd >= 0) native.closeFd(fd);
      this.hangUp(new ControlError(String(msg.error)));
      return;
    }
    const w =
      typeof msg.id === 'number' && typeof msg.ok === 'boolean' ? this.waiting.get(msg.id) : undefined;
    if (w) {
      if (fd >= 0) native.closeFd(fd);
      this.waiting.delete(msg.id as number);
      if (msg.ok) w.resolve(msg);
      else w.reject(new ControlError(String(msg.error), typeof msg.flag === 'string' ? msg.flag : null));
      return;
    }
    this.handlers.message(this, msg, fd);
  }
}
