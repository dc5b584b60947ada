// One control connection (either end): messages in and out, an fd passed along with a message, and
// requests matched to their replies. Readiness comes from a WATCH port of the addon.

import { native, PortMode } from '../native.js';
import { BINARY_TAG, ControlError, decode, encode, MAX_MESSAGE, type Message } from './protocol.js';

/** Linux's EAGAIN, EPIPE and EMSGSIZE, as the addon returns them (negated). */
const EAGAIN = 11;
const EPIPE = 32;
const EMSGSIZE = 90;

/** What the owner of a channel does with what arrives. */
export interface ChannelHandlers {
  /** A request or event (not a reply to this end's own request); `fd` came with it, or is -1. */
  message(ch: Channel, msg: Message, fd: number): void;
  /** A binary message (a captured frame); `bytes` is only valid during the call. */
  binary?(ch: Channel, bytes: Uint8Array): void;
  /** A message that is not one: bad JSON, wrong version. The connection stays open. */
  malformed?(ch: Channel, why: string): void;
  /** The other end closed, or the connection failed; the channel is closed already. */
  closed(ch: Channel): void;
}

/** A control connection over a SOCK_SEQPACKET fd, which the channel owns from now on. */
export class Channel {
  private readonly port: number;
  private readonly buf = new Uint8Array(MAX_MESSAGE);
  private readonly fdOut = new Int32Array(1);
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
        reject(new ControlError('the softnet engine is gone'));
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
    if (this.closed) return;
    this.closed = true;
    native.portClose(this.port);
    for (const w of this.waiting.values()) w.reject(new ControlError('the softnet engine is gone'));
    this.waiting.clear();
  }

  private readable(): void {
    while (!this.closed) {
      const n = native.ctlRecv(this.fd, this.buf, this.fdOut);
      if (n === -EAGAIN) return;
      if (n === -EMSGSIZE) {
        this.handlers.malformed?.(this, 'message too long');
        continue;
      }
      if (n <= 0) {
        this.hangUp();
        return;
      }
      this.dispatch(this.buf.subarray(0, n), this.fdOut[0]);
    }
  }

  private hangUp(): void {
    if (this.closed) return;
    this.close();
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
