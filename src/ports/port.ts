// A port: one fd that carries frames (a VM's NIC, the host link), its transmit queue and its counters.

/** Per-port counters, indexes into Port.stats. */
export const PortStat = { RX_FRAMES: 0, RX_BYTES: 1, TX_FRAMES: 2, TX_BYTES: 3, TX_DROPS: 4 } as const;
export const PORT_STAT_NAMES = ['rx_frames', 'rx_bytes', 'tx_frames', 'tx_bytes', 'tx_drops'] as const;

/**
 * Sees the frames of a port someone captures (`softnet capture`, see capture/tap.ts). A port nobody
 * captures has none, and the pipeline's only cost for that is one test per batch.
 */
export interface FrameTap {
  /** Frames just received, in slots of `stride` bytes from `base`; read before they are decided (and changed). */
  received(u8: Uint8Array, base: number, stride: number, lens: Uint32Array, count: number): void;
  /** Frames just sent, at `offs` with `lens`. */
  sent(u8: Uint8Array, offs: Uint32Array, lens: Uint32Array, count: number): void;
}

/** How an fd is opened: its framing mode (PortMode), a name for logs, and whether it has virtio headers. */
export interface PortSpec {
  fd: number;
  mode: number;
  name: string;
  /** Frames come and go with a virtio_net_hdr (a TAP with IFF_VNET_HDR): offloads pass through it. */
  vnet?: boolean;
}

/** An open port. Frames to send are queued as (offset, length) pairs into the arena until the next flush. */
export class Port {
  readonly id: number;
  readonly name: string;
  readonly txOffs: Uint32Array;
  readonly txLens: Uint32Array;
  txCount = 0;
  readonly stats = new Float64Array(PORT_STAT_NAMES.length);
  closed = false;
  /** Whether frames of up to 64 KiB arrive here (the uplink capture), so it reads into the big slots. */
  big = false;
  /**
   * Whether the port's frames carry a virtio_net_hdr (in the bytes before each frame in the arena): it
   * takes aggregates and checksums left to offload as they are.
   */
  vnet = false;
  /** Set while someone captures this port's frames. */
  tap: FrameTap | null = null;

  constructor(
    /** The addon's port number (or a fake's). */
    id: number,
    name: string,
    queueLen: number,
    private readonly closer: (id: number) => void,
  ) {
    this.id = id;
    this.name = name;
    this.txOffs = new Uint32Array(queueLen);
    this.txLens = new Uint32Array(queueLen);
  }

  /** Closes the fd; the port number may be reused afterwards. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.closer(this.id);
  }
}
