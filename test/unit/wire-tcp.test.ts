// TCP (RFC 9293): a Linux SYN with options read at an offset, and the flag bits.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checksum, pseudoHeader } from '../../src/wire/checksum.js';
import { IpProto } from '../../src/wire/ipv4.js';
import {
  ack,
  dstPort,
  flags,
  headerLen,
  seq,
  srcPort,
  TCP,
  TCP_HEADER_LEN,
  TcpFlag,
  window,
} from '../../src/wire/tcp.js';

const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!, (h) => Number.parseInt(h, 16));

// 192.168.64.2.43210 > 93.184.216.34.80: Flags [S], cksum 0xe08e (correct), seq 2587827207, win 64240,
// options [mss 1460,sackOK,TS val 1234567 ecr 0,nop,wscale 7] -- as tcpdump decodes it.
const SYN_FRAME = hex(
  '0200000000fe 525400123456 0800' +
    '4500003c 3c1e4000 4006c818 c0a84002 5db8d822' +
    'a8ca 0050 9a3f1c07 00000000 a002 faf0 e08e 0000' +
    '020405b4 0402 080a 0012d687 00000000 01 030307',
);
const SRC = 0xc0a84002;
const DST = 0x5db8d822;

function at(off: number): { u8: Uint8Array; dv: DataView; tcp: number } {
  const u8 = new Uint8Array(off + SYN_FRAME.length + 5).fill(0xa5);
  u8.set(SYN_FRAME, off);
  return { u8, dv: new DataView(u8.buffer), tcp: off + 34 };
}

test('field offsets, header length and flag bits (RFC 9293 3.1)', () => {
  assert.deepEqual(
    { ...TCP },
    {
      SRC_PORT: 0,
      DST_PORT: 2,
      SEQ: 4,
      ACK: 8,
      DATA_OFF: 12,
      FLAGS: 13,
      WINDOW: 14,
      CHECKSUM: 16,
      URGENT: 18,
    },
  );
  assert.equal(TCP_HEADER_LEN, 20);
  assert.deepEqual(
    { ...TcpFlag },
    { FIN: 0x01, SYN: 0x02, RST: 0x04, PSH: 0x08, ACK: 0x10, URG: 0x20, ECE: 0x40, CWR: 0x80 },
  );
});

test('the SYN read at an offset inside a bigger buffer', () => {
  const { dv, tcp } = at(27);
  assert.equal(srcPort(dv, tcp), 43210);
  assert.equal(dstPort(dv, tcp), 80);
  assert.equal(seq(dv, tcp), 2587827207); // above 2^31: read unsigned
  assert.equal(ack(dv, tcp), 0);
  assert.equal(headerLen(dv, tcp), 40); // data offset 10: 20 bytes of options
  assert.equal(flags(dv, tcp), TcpFlag.SYN);
  assert.equal(window(dv, tcp), 64240);
  assert.equal(dv.getUint16(tcp + TCP.CHECKSUM), 0xe08e);
  assert.equal(dv.getUint8(tcp + TCP_HEADER_LEN), 2); // the first option: MSS
});

test('the SYN verifies against its pseudo-header', () => {
  const { u8, tcp } = at(0);
  assert.equal(checksum(u8, tcp, 40, pseudoHeader(SRC, DST, IpProto.TCP, 40)), 0);
  assert.notEqual(checksum(u8, tcp, 40, pseudoHeader(SRC, DST + 1, IpProto.TCP, 40)), 0);
});

test('a SYN-ACK from the server: flags, ack number and the data offset nibble', () => {
  const { u8, dv, tcp } = at(0);
  u8.set(hex('0050 a8ca f00dcafe 9a3f1c08 5012 ffff'), tcp);
  assert.equal(srcPort(dv, tcp), 80);
  assert.equal(dstPort(dv, tcp), 43210);
  assert.equal(seq(dv, tcp), 0xf00dcafe);
  assert.equal(ack(dv, tcp), 0x9a3f1c08);
  assert.equal(headerLen(dv, tcp), 20);
  assert.equal(flags(dv, tcp), TcpFlag.SYN | TcpFlag.ACK);
  assert.equal(window(dv, tcp), 0xffff);
  u8[tcp + TCP.DATA_OFF] = 0xf7; // 15 words; the low nibble (reserved, AE) is not part of it
  assert.equal(headerLen(dv, tcp), 60);
  u8[tcp + TCP.FLAGS] = 0xff;
  assert.equal(flags(dv, tcp), 0xff);
});
