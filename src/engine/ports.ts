// Opening an fd as a pipeline port.

import { native } from '../native.js';
import { QUEUE_LEN } from '../pipeline/pipeline.js';
import { Port, type PortSpec } from '../ports/port.js';

/** Opens `spec` on the addon; the fd is the port's from now on (closed if the opening fails). */
export function openPort(spec: PortSpec): Port {
  try {
    return new Port(native.portOpen(spec.fd, spec.mode), spec.name, QUEUE_LEN, native.portClose);
  } catch (e) {
    native.closeFd(spec.fd);
    throw e;
  }
}
