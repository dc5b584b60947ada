// The client end of the control socket: the per-VM form handing its VM to the engine, and the operator's
// commands (network, show, capture).

import { native } from '../native.js';
import { Channel, type ChannelHandlers } from './channel.js';
import { ControlError } from './protocol.js';

/** Connects to the engine at `path`; null when no engine listens there (no socket, or a stale one). */
export function connectEngine(path: string, handlers: ChannelHandlers): Channel | null {
  let fd: number;
  try {
    fd = native.ctlConnect(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') return null;
    throw new ControlError(`cannot reach the softnet engine at ${path}: ${(e as Error).message}`);
  }
  return new Channel(fd, handlers);
}
