// Opening an fd as a pipeline port.

import { native } from '../native.js';
import { QUEUE_LEN } from '../pipeline/pipeline.js';
import { Port, type PortSpec } from '../ports/port.js';

/** Opens `spec` on the addon; the fd is the port's from now on (closed if the opening fails). */
export function openPort(spec: PortSpec): Port {
  try {
    const vnet = spec.vnet === true;
    const port = new Port(native.portOpen(spec.fd, spec.mode, vnet), spec.name, QUEUE_LEN, native.portClose);
    // With offloads a TCP aggregate of up to 64 KiB comes in one read: it needs a big slot.
    port.vnet = vnet;
    port.big = vnet;
    return port;
  } catch (e) {
    native.closeFd(spec.fd);
    throw e;
  }
}
