// --vm-socket PATH: a unix stream socket QEMU connects to with `-netdev stream` (length-prefixed frames).

import { unlinkSync } from 'node:fs';
import { native, PortMode } from '../native.js';
import type { PortSpec } from './port.js';

/** Listens at `path`, replacing a stale socket file left by a killed softnet. */
export function listenStream(path: string): PortSpec {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return { fd: native.unixListen(path), mode: PortMode.WATCH, name: path };
}

/** Takes one pending connection from a listening socket; null when none is waiting. */
export function acceptStream(listenFd: number, path: string): PortSpec | null {
  const fd = native.unixAccept(listenFd);
  return fd < 0 ? null : { fd, mode: PortMode.STREAM, name: path };
}
