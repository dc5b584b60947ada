// Classic pcap reading and writing: known bytes in both byte orders and both timestamp resolutions, round
// trips through memory and through a file descriptor, and bad input that must give a PcapError, never a
// crash or an out-of-range read.

import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  LINKTYPE_ETHERNET,
  MAX_RECORD_LEN,
  PCAP_HEADER_LEN,
  PCAP_RECORD_HEADER_LEN,
  PcapError,
  PcapWriter,
  parsePcap,
  readPcapFile,
} from '../../src/capture/pcap.js';
import { prng } from '../lib/prng.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));

// A 60-byte ARP request from 52:54:00:12:34:56 (192.168.64.2 asks for 192.168.64.1), as tcpdump -w wrote it
// on x86: little-endian, microseconds, version 2.4, snaplen 262144, LINKTYPE_ETHERNET; captured at
// 1700000000.123456.
const ARP = hex(`ffffffffffff 525400123456 0806 0001 0800 06 04 0001 525400123456 c0a84002
  000000000000 c0a84001 000000000000000000000000000000000000`);
const LE_MICROS = hex(`d4c3b2a1 0200 0400 00000000 00000000 00000400 01000000
  00f15365 40e20100 3c000000 3c000000`);
// The same file as a big-endian machine writes it, with a nanosecond magic: fraction 123456789 ns.
const BE_NANOS = hex(`a1b23c4d 0002 0004 00000000 00000000 00040000 00000001
  6553f100 075bcd15 0000003c 0000003c`);

function withFrame(header: Uint8Array, frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(header.length + frame.length);
  out.set(header);
  out.set(frame, header.length);
  return out;
}

/** A copy as a plain Uint8Array: records read from a Buffer are Buffers, which deepEqual tells apart. */
const plain = (a: Uint8Array) => new Uint8Array(a);

/** A source of pseudo-random bytes from `seed`. */
function bytesFrom(seed: number): () => number {
  const rand = prng(seed);
  return () => Math.floor(rand() * 256);
}

/** Expects `fn` to throw a PcapError whose message matches `re`. */
function rejects(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof PcapError && re.test(e.message));
}

test('reads a little-endian microsecond file tcpdump wrote', () => {
  const f = parsePcap(withFrame(LE_MICROS, ARP));
  assert.deepEqual(f.header, {
    littleEndian: true,
    nanos: false,
    versionMajor: 2,
    versionMinor: 4,
    snaplen: 262144,
    linkType: LINKTYPE_ETHERNET,
    fcsLen: 0,
  });
  assert.equal(f.records.length, 1);
  const r = f.records[0];
  assert.equal(r.sec, 1700000000);
  assert.equal(r.nsec, 123456000);
  assert.equal(r.origLen, 60);
  assert.deepEqual(r.data, ARP);
  assert.equal(f.truncatedTail, false);
});

test('reads a big-endian nanosecond file', () => {
  const f = parsePcap(withFrame(BE_NANOS, ARP));
  assert.equal(f.header.littleEndian, false);
  assert.equal(f.header.nanos, true);
  assert.equal(f.header.linkType, LINKTYPE_ETHERNET);
  assert.equal(f.records[0].sec, 1700000000);
  assert.equal(f.records[0].nsec, 123456789);
  assert.deepEqual(f.records[0].data, ARP);
});

test('records are views into the input, not copies', () => {
  const bytes = withFrame(LE_MICROS, ARP);
  const r = parsePcap(bytes).records[0];
  assert.equal(r.data.buffer, bytes.buffer);
  assert.equal(r.data.byteOffset, PCAP_HEADER_LEN + PCAP_RECORD_HEADER_LEN);
});

test('a header with only the file header is a file of no records', () => {
  assert.equal(parsePcap(LE_MICROS.subarray(0, PCAP_HEADER_LEN)).records.length, 0);
});

test('the FCS bits of the link-type field are read apart from the link type', () => {
  const h = LE_MICROS.slice(0, PCAP_HEADER_LEN);
  // FCS length known (bit 26), 2 16-bit words (the top four bits), link type 1.
  new DataView(h.buffer).setUint32(20, 0x24000001, true);
  const f = parsePcap(h);
  assert.equal(f.header.linkType, LINKTYPE_ETHERNET);
  assert.equal(f.header.fcsLen, 4);
});

test('the writer produces exactly the bytes tcpdump wrote', () => {
  const w = PcapWriter.inMemory();
  w.write(ARP, 1700000000, 123456000);
  assert.deepEqual(new Uint8Array(w.bytes()), withFrame(LE_MICROS, ARP));
});

test('round trip in memory: nanosecond times, a frame range, a snaplen cut', () => {
  const byte = bytesFrom(7);
  const frames = Array.from({ length: 50 }, (_, i) =>
    Uint8Array.from({ length: 14 + ((i * 97) % 1500) }, byte),
  );
  const w = PcapWriter.inMemory({ nanos: true, snaplen: 1000 });
  frames.forEach((f, i) => {
    w.write(f, 1700000000 + i, i * 1000 + 1);
  });
  // A range of a larger buffer, as an arena holds frames.
  const arena = new Uint8Array(4096).fill(0xee);
  arena.set(frames[0], 100);
  w.write(arena, 1, 2, 100, frames[0].length);
  const f = parsePcap(w.bytes());
  assert.equal(f.header.nanos, true);
  assert.equal(f.header.snaplen, 1000);
  assert.equal(f.records.length, frames.length + 1);
  frames.forEach((frame, i) => {
    const r = f.records[i];
    assert.equal(r.sec, 1700000000 + i);
    assert.equal(r.nsec, i * 1000 + 1);
    assert.equal(r.origLen, frame.length);
    assert.deepEqual(plain(r.data), frame.subarray(0, 1000));
  });
  assert.deepEqual(plain(f.records[frames.length].data), frames[0]);
});

test('a microsecond writer keeps whole microseconds', () => {
  const w = PcapWriter.inMemory();
  w.write(ARP, 5, 999_999_999);
  assert.equal(parsePcap(w.bytes()).records[0].nsec, 999_999_000);
});

test('many records go through the writer buffer in several flushes', () => {
  const frame = new Uint8Array(1514).fill(3);
  const w = PcapWriter.inMemory();
  for (let i = 0; i < 1000; i++) w.write(frame, i);
  const f = parsePcap(w.bytes());
  assert.equal(f.records.length, 1000);
  assert.equal(f.records[999].sec, 999);
});

test('round trip through a file descriptor, read back with readPcapFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcap-test-'));
  try {
    const path = join(dir, 'out.pcap');
    const fd = openSync(path, 'w');
    try {
      const w = PcapWriter.toFd(fd);
      // The header is there before any record.
      assert.equal(readFileSync(path).length, PCAP_HEADER_LEN);
      w.write(ARP, 1700000000, 123456000);
      w.write(ARP, 1700000001);
      w.flush();
    } finally {
      closeSync(fd);
    }
    const f = readPcapFile(path);
    assert.equal(f.records.length, 2);
    assert.deepEqual(plain(f.records[1].data), ARP);
    assert.equal(f.records[1].sec, 1700000001);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the writer refuses bad arguments', () => {
  assert.throws(() => PcapWriter.toFd(-1), RangeError);
  assert.throws(() => PcapWriter.inMemory({ snaplen: 0 }), RangeError);
  assert.throws(() => PcapWriter.inMemory({ snaplen: MAX_RECORD_LEN + 1 }), RangeError);
  assert.throws(() => PcapWriter.inMemory().write(ARP, 0, 0, 10, ARP.length), RangeError);
});

test('a short or foreign file header is a PcapError', () => {
  rejects(() => parsePcap(new Uint8Array(0)), /shorter than the 24-byte file header/);
  rejects(() => parsePcap(LE_MICROS.subarray(0, 23)), /shorter than the 24-byte file header/);
  rejects(() => parsePcap(new TextEncoder().encode('this is not a capture file!')), /unknown magic/);
  const pcapng = hex('0a0d0d0a 1c000000 4d3c2b1a 01000000 ffffffffffffffff 1c000000');
  rejects(() => parsePcap(pcapng), /pcapng/);
  const v1 = LE_MICROS.slice(0, PCAP_HEADER_LEN);
  v1[4] = 1;
  rejects(() => parsePcap(v1), /unsupported version 1\.4/);
});

test('a cut record is a PcapError naming where, or dropped when asked', () => {
  const whole = withFrame(LE_MICROS, ARP);
  for (const cut of [PCAP_HEADER_LEN + 5, PCAP_HEADER_LEN + PCAP_RECORD_HEADER_LEN + 10, whole.length - 1]) {
    rejects(() => parsePcap(whole.subarray(0, cut)), /record 0 (has only|needs)/);
    const f = parsePcap(whole.subarray(0, cut), { truncatedTail: 'drop' });
    assert.equal(f.records.length, 0);
    assert.equal(f.truncatedTail, true);
  }
});

test('implausible lengths and timestamps are a PcapError', () => {
  const huge = withFrame(LE_MICROS, ARP);
  new DataView(huge.buffer).setUint32(PCAP_HEADER_LEN + 8, 0x7fffffff, true);
  rejects(() => parsePcap(huge), /claims 2147483647 bytes/);
  const badFrac = withFrame(LE_MICROS, ARP);
  new DataView(badFrac.buffer).setUint32(PCAP_HEADER_LEN + 4, 1_000_000, true);
  rejects(() => parsePcap(badFrac), /timestamp fraction/);
});

test('readPcapFile names the file in its error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcap-test-'));
  try {
    const path = join(dir, 'bad.pcap');
    const fd = openSync(path, 'w');
    closeSync(fd);
    assert.throws(
      () => readPcapFile(path),
      (e: unknown) => e instanceof PcapError && e.path === path && e.message.includes(`${path}: `),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('random bytes and damaged files parse or give a PcapError, never anything else', () => {
  const rand = prng(42);
  const int = (n: number) => Math.floor(rand() * n);
  const good = PcapWriter.inMemory();
  for (let i = 0; i < 20; i++) good.write(ARP, i);
  const base = new Uint8Array(good.bytes());
  for (let round = 0; round < 3000; round++) {
    let bytes: Uint8Array;
    if (round % 3 === 0) {
      bytes = Uint8Array.from({ length: int(200) }, () => int(256));
      // Half of them with a valid magic, so the record parser sees garbage too.
      if (round % 2 === 0 && bytes.length >= 4) bytes.set([0xd4, 0xc3, 0xb2, 0xa1]);
    } else {
      bytes = base.slice(0, int(base.length + 1));
      for (let k = int(8); k > 0 && bytes.length > 0; k--) bytes[int(bytes.length)] = int(256);
    }
    try {
      const f = parsePcap(bytes);
      for (const r of f.records) {
        assert.ok(r.data.byteOffset + r.data.length <= bytes.byteOffset + bytes.length);
      }
    } catch (e) {
      assert.ok(e instanceof PcapError, `round ${round}: ${e}`);
    }
  }
});
