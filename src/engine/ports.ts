// Opening an fd as a pipeline port.

import { native, PortMode } from '../native.js';
import { type Pipeline, QUEUE_LEN } from '../pipeline/pipeline.js';
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

/** What NAT opens on an uplink for one family: the capture of replies, and the sender of whole frames. */
export interface UplinkSockets {
  capture: Port;
  tx: Port;
  /** The uplink's MAC, the source of what tx sends. */
  mac: Uint8Array;
}

/**
 * Opens NAT's sockets on uplink `name` for IPv4 or IPv6 (`family`): a packet socket capturing what
 * `filter` takes, its frames to `frame`, and a packet socket sending whole frames with virtio headers;
 * both registered with `p` and watched, a failure of either told to `failed`.
 */
export function openUplinkSockets(
  p: Pipeline,
  name: string,
  family: 4 | 6,
  filter: Uint8Array,
  frame: (off: number, len: number) => void,
  watch: (port: Port) => void,
  failed: () => void,
): UplinkSockets {
  const suffix = family === 6 ? '6' : '';
  const capture = openPort({
    fd: native.packetSocket(name, filter, family),
    mode: PortMode.DGRAM,
    name: `${name}:capture${suffix}`,
  });
  capture.big = true;
  p.add(capture, { frame: (_port, off, len) => frame(off, len), failed });
  watch(capture);
  let sender: { fd: number; mac: Uint8Array };
  try {
    sender = native.packetTxSocket(name);
  } catch (e) {
    closePorts(p, [capture]);
    throw e;
  }
  const tx = openPort({ fd: sender.fd, mode: PortMode.DGRAM, name: `${name}:tx${suffix}`, vnet: true });
  p.add(tx, { frame: () => {}, failed });
  // It never receives; watching it lets the addon send what the socket could not take at once.
  watch(tx);
  return { capture, tx, mac: sender.mac };
}

/** Takes ports out of the pipeline and closes them (null ones are skipped). */
export function closePorts(p: Pipeline, ports: Array<Port | null>): void {
  for (const port of ports) {
    if (port === null) continue;
    p.remove(port);
    port.close();
  }
}
