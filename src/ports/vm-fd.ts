// --vm-fd N: an fd inherited from the VM tool, either a unix datagram socket or a TAP device.

import { native, PortMode } from '../native.js';
import type { PortSpec } from './port.js';

/** The port spec of an inherited fd; throws when the fd is closed or of another kind. */
export function inheritedFd(fd: number): PortSpec {
  const kind = native.fdKind(fd);
  switch (kind) {
    case 'unix-dgram':
      return { fd, mode: PortMode.DGRAM, name: `fd${fd}` };
    case 'tap':
      return { fd, mode: PortMode.TAP, name: `fd${fd}` };
    case 'tap-vnet':
      return { fd, mode: PortMode.TAP, name: `fd${fd}`, vnet: true };
    case 'unix-stream':
      return { fd, mode: PortMode.STREAM, name: `fd${fd}` };
    default:
      throw new Error(`fd ${fd} is neither a unix socket nor a TAP device`);
  }
}
