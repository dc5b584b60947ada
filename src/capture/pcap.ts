// Classic pcap files (not pcapng): the format tcpdump -w writes, read in either byte order with microsecond
// or nanosecond timestamps, and written little-endian, to a file descriptor or into memory.
//
// Layout (draft-ietf-opsawg-pcap): a 24-byte file header, then records, each a 16-byte header and the
// captured bytes. Nothing here trusts a length read from the file: every record is checked against what
// is left of it, and bad input is a PcapError naming the byte offset, never an out-of-range read.

import { readFileSync, writeSync } from 'node:fs';

/** Field offsets of the file header. */
const FILE = { MAGIC: 0, MAJOR: 4, MINOR: 6, THISZONE: 8, SIGFIGS: 12, SNAPLEN: 16, LINKTYPE: 20 } as const;
/** Bytes of the file header. */
export const PCAP_HEADER_LEN = FILE.LINKTYPE + 4;
/** Field offsets of a record header. */
const RECORD = { SEC: 0, FRAC: 4, CAPLEN: 8, ORIGLEN: 12 } as const;
/** Bytes of a record header. */
export const PCAP_RECORD_HEADER_LEN = RECORD.ORIGLEN + 4;

/** The magic numbers, as written by a machine of the file's own byte order. */
const MAGIC_MICROS = 0xa1b2c3d4;
const MAGIC_NANOS = 0xa1b23c4d;
/** LINKTYPE_ETHERNET: every record is an Ethernet II frame from its destination MAC on. */
export const LINKTYPE_ETHERNET = 1;
/**
 * The link-type field also says whether frames end in an FCS: bit 26 says the length is known, the top four
 * bits give it in 16-bit words (libpcap's LT_LINKTYPE, LT_FCS_LENGTH_PRESENT and LT_FCS_LENGTH).
 */
const LINKTYPE_MASK = 0x03ffffff;
const FCS_PRESENT = 0x04000000;
/** The largest record libpcap itself accepts (its MAXIMUM_SNAPLEN): a longer one means a corrupt file. */
export const MAX_RECORD_LEN = 262_144;
/** A writer's default snapshot length: whole frames. */
const DEFAULT_SNAPLEN = MAX_RECORD_LEN;

/** Input that is not a well-formed classic pcap file. */
export class PcapError extends Error {
  constructor(
    /** What is wrong, without the location. */
    readonly detail: string,
    /** Where in the input the problem is. */
    readonly offset: number,
    /** The file, when the input was read from one. */
    readonly path: string | null = null,
  ) {
    super(`pcap: ${path === null ? '' : `${path}: `}${detail} (at byte ${offset})`);
    this.name = 'PcapError';
  }
}

/** What a file header says. */
export interface PcapHeader {
  littleEndian: boolean;
  /** Whether the record timestamps' fraction counts nanoseconds (else microseconds). */
  nanos: boolean;
  versionMajor: number;
  versionMinor: number;
  snaplen: number;
  linkType: number;
  /** Bytes of frame check sequence at the end of each frame, when the header says (else 0). */
  fcsLen: number;
}

/** One captured frame: a view into the input, not a copy. */
export interface PcapRecord {
  /** Seconds since the epoch. */
  sec: number;
  /** Nanoseconds within the second (a microsecond file's fraction times 1000). */
  nsec: number;
  data: Uint8Array;
  /** The frame's length on the wire; more than data.length when the capture cut it at the snaplen. */
  origLen: number;
}

/** A parsed file. */
export interface PcapFile {
  header: PcapHeader;
  records: PcapRecord[];
  /** Whether the input ended inside a record that was left out (only with `truncatedTail: 'drop'`). */
  truncatedTail: boolean;
}

/** How parsePcap treats a last record cut short (what a killed tcpdump may leave). */
export interface ParseOptions {
  truncatedTail?: 'error' | 'drop';
}

/** Reads the file header at the start of `bytes`; throws PcapError when it is not one. */
export function parsePcapHeader(bytes: Uint8Array): PcapHeader {
  if (bytes.length < PCAP_HEADER_LEN) {
    throw new PcapError(`${bytes.length} bytes is shorter than the ${PCAP_HEADER_LEN}-byte file header`, 0);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const be = dv.getUint32(FILE.MAGIC, false);
  const le = dv.getUint32(FILE.MAGIC, true);
  let littleEndian: boolean;
  let nanos: boolean;
  if (le === MAGIC_MICROS || le === MAGIC_NANOS) {
    littleEndian = true;
    nanos = le === MAGIC_NANOS;
  } else if (be === MAGIC_MICROS || be === MAGIC_NANOS) {
    littleEndian = false;
    nanos = be === MAGIC_NANOS;
  } else {
    const hint = be === 0x0a0d0d0a ? ' (this is pcapng; convert it with: editcap -F pcap IN OUT)' : '';
    throw new PcapError(`unknown magic number 0x${be.toString(16).padStart(8, '0')}${hint}`, FILE.MAGIC);
  }
  const versionMajor = dv.getUint16(FILE.MAJOR, littleEndian);
  const versionMinor = dv.getUint16(FILE.MINOR, littleEndian);
  if (versionMajor !== 2)
    throw new PcapError(`unsupported version ${versionMajor}.${versionMinor}`, FILE.MAJOR);
  const link = dv.getUint32(FILE.LINKTYPE, littleEndian);
  return {
    littleEndian,
    nanos,
    versionMajor,
    versionMinor,
    snaplen: dv.getUint32(FILE.SNAPLEN, littleEndian),
    linkType: link & LINKTYPE_MASK,
    fcsLen: link & FCS_PRESENT ? (link >>> 28) * 2 : 0,
  };
}

/** Parses a whole classic pcap file held in memory; records are views into `bytes`. Throws PcapError. */
export function parsePcap(bytes: Uint8Array, opts: ParseOptions = {}): PcapFile {
  const header = parsePcapHeader(bytes);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const le = header.littleEndian;
  const fracLimit = header.nanos ? 1e9 : 1e6;
  const records: PcapRecord[] = [];
  let at = PCAP_HEADER_LEN;
  while (at < bytes.length) {
    const left = bytes.length - at;
    if (left < PCAP_RECORD_HEADER_LEN) {
      if (opts.truncatedTail === 'drop') return { header, records, truncatedTail: true };
      throw new PcapError(`record ${records.length} has only ${left} of its 16 header bytes`, at);
    }
    const sec = dv.getUint32(at + RECORD.SEC, le);
    const frac = dv.getUint32(at + RECORD.FRAC, le);
    const caplen = dv.getUint32(at + RECORD.CAPLEN, le);
    const origLen = dv.getUint32(at + RECORD.ORIGLEN, le);
    if (caplen > MAX_RECORD_LEN) {
      throw new PcapError(`record ${records.length} claims ${caplen} bytes, more than any capture holds`, at);
    }
    if (frac >= fracLimit) {
      throw new PcapError(`record ${records.length} has a timestamp fraction of ${frac}`, at + RECORD.FRAC);
    }
    const data = at + PCAP_RECORD_HEADER_LEN;
    if (bytes.length - data < caplen) {
      if (opts.truncatedTail === 'drop') return { header, records, truncatedTail: true };
      throw new PcapError(
        `record ${records.length} needs ${caplen} bytes, the file has ${bytes.length - data} left`,
        at,
      );
    }
    records.push({
      sec,
      nsec: header.nanos ? frac : frac * 1000,
      data: bytes.subarray(data, data + caplen),
      // Some writers leave the original length 0 or below the captured one; the captured bytes are real.
      origLen: Math.max(origLen, caplen),
    });
    at = data + caplen;
  }
  return { header, records, truncatedTail: false };
}

/** Reads and parses the pcap file at `path`; throws PcapError for bad contents (with the path in front). */
export function readPcapFile(path: string, opts: ParseOptions = {}): PcapFile {
  const bytes = readFileSync(path);
  try {
    return parsePcap(bytes, opts);
  } catch (e) {
    if (e instanceof PcapError) throw new PcapError(e.detail, e.offset, path);
    throw e;
  }
}

/** What a writer puts in the file header. */
export interface WriterOptions {
  /** Nanosecond timestamps (magic 0xa1b23c4d) instead of microseconds. */
  nanos?: boolean;
  /** Frames are cut to this many bytes; whole frames by default. */
  snaplen?: number;
  linkType?: number;
}

/** Bytes gathered before they are written out: a few hundred frames a system call. */
const BUFFER_LEN = 1 << 18;

/**
 * Writes classic pcap, little-endian. Records are gathered in one buffer and written out when it is full
 * and on flush(), so a record costs a system call only now and then, and a frame given whole is copied
 * without allocating (a range of a larger buffer costs one view: a byte loop would be five times slower).
 */
export class PcapWriter {
  private readonly buf = Buffer.alloc(BUFFER_LEN);
  private used = 0;
  private readonly nanos: boolean;
  private readonly snaplen: number;
  /** Filled output when writing into memory; null when writing to a file descriptor. */
  private readonly chunks: Buffer[] | null;

  private constructor(
    private readonly fd: number,
    opts: WriterOptions,
  ) {
    this.nanos = opts.nanos ?? false;
    this.snaplen = opts.snaplen ?? DEFAULT_SNAPLEN;
    if (!Number.isInteger(this.snaplen) || this.snaplen < 1 || this.snaplen > MAX_RECORD_LEN) {
      throw new RangeError(`snaplen must be 1..${MAX_RECORD_LEN}`);
    }
    this.chunks = fd < 0 ? [] : null;
    const b = this.buf;
    b.writeUInt32LE(this.nanos ? MAGIC_NANOS : MAGIC_MICROS, FILE.MAGIC);
    b.writeUInt16LE(2, FILE.MAJOR);
    b.writeUInt16LE(4, FILE.MINOR);
    b.writeInt32LE(0, FILE.THISZONE);
    b.writeUInt32LE(0, FILE.SIGFIGS);
    b.writeUInt32LE(this.snaplen, FILE.SNAPLEN);
    b.writeUInt32LE(opts.linkType ?? LINKTYPE_ETHERNET, FILE.LINKTYPE);
    this.used = PCAP_HEADER_LEN;
  }

  /** A writer that appends to the open file descriptor `fd`; the file header is written at once. */
  static toFd(fd: number, opts: WriterOptions = {}): PcapWriter {
    if (!Number.isInteger(fd) || fd < 0) throw new RangeError(`bad file descriptor ${fd}`);
    const w = new PcapWriter(fd, opts);
    w.flush();
    return w;
  }

  /** A writer whose output bytes() returns. */
  static inMemory(opts: WriterOptions = {}): PcapWriter {
    return new PcapWriter(-1, opts);
  }

  /**
   * Appends `len` bytes of `frame` from `off` (the whole frame by default), captured at `sec` seconds and
   * `nsec` nanoseconds since the epoch; bytes beyond the snaplen are left out and origLen says so.
   */
  write(frame: Uint8Array, sec: number, nsec = 0, off = 0, len = frame.length - off): void {
    if (off < 0 || len < 0 || off + len > frame.length) throw new RangeError('frame bytes out of range');
    const caplen = Math.min(len, this.snaplen);
    if (this.used + PCAP_RECORD_HEADER_LEN + caplen > BUFFER_LEN) this.flush();
    const b = this.buf;
    const at = this.used;
    b.writeUInt32LE(sec >>> 0, at + RECORD.SEC);
    b.writeUInt32LE(this.nanos ? nsec >>> 0 : Math.floor(nsec / 1000), at + RECORD.FRAC);
    b.writeUInt32LE(caplen, at + RECORD.CAPLEN);
    b.writeUInt32LE(len, at + RECORD.ORIGLEN);
    b.set(
      off === 0 && caplen === frame.length ? frame : frame.subarray(off, off + caplen),
      at + PCAP_RECORD_HEADER_LEN,
    );
    this.used = at + PCAP_RECORD_HEADER_LEN + caplen;
  }

  /** Writes out what is gathered (to the fd, or to the in-memory output). */
  flush(): void {
    if (this.used === 0) return;
    if (this.chunks) this.chunks.push(Buffer.from(this.buf.subarray(0, this.used)));
    else for (let done = 0; done < this.used; ) done += writeSync(this.fd, this.buf, done, this.used - done);
    this.used = 0;
  }

  /** The whole file written so far (in-memory writers only). */
  bytes(): Buffer {
    if (!this.chunks) throw new Error('bytes() is for in-memory writers; this one writes to an fd');
    this.flush();
    return Buffer.concat(this.chunks);
  }
}
