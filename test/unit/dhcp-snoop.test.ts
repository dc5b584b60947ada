// DHCP snooping on a bridge network, driven with parsed messages: what binds a VM's address, what ends
// it, and what is not believed.

import assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import type { Attachment } from '../../src/net/attachment.js';
import { Port } from '../../src/ports/port.js';
import { DhcpSnoop } from '../../src/services/dhcp-snoop.js';
import { LeaseTable } from '../../src/services/leases.js';
import { Drop } from '../../src/stats/drops.js';
import { Logger } from '../../src/util/log.js';
import { formatMac, parseMac } from '../../src/wire/addr.js';
import { type DhcpMessage, DhcpOp, DhcpOption, DhcpType } from '../../src/wire/dhcp.js';
import { attachment } from '../lib/attachments.js';

const be32 = (v: number) => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const IP = 0x0a4d0064;
const SERVER = 0x0a4d0001;
const SERVER_MAC = '02:ee:00:00:00:01';
const T0 = Date.parse('2025-01-01T00:00:00Z');

function message(
  op: number,
  type: number,
  xid: number,
  f: Partial<DhcpMessage> = {},
  options: Array<[number, number[]]> = [],
): DhcpMessage {
  const opts = new Map<number, Uint8Array>([[DhcpOption.MESSAGE_TYPE, Uint8Array.of(type)]]);
  for (const [code, data] of options) opts.set(code, Uint8Array.from(data));
  return {
    op,
    xid,
    secs: 0,
    flags: 0,
    ciaddr: 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: 0,
    chaddr: new Uint8Array(16),
    type,
    options: opts,
    ...f,
  };
}
const client = (type: number, xid: number, f: Partial<DhcpMessage> = {}, o: Array<[number, number[]]> = []) =>
  message(DhcpOp.BOOTREQUEST, type, xid, f, o);
const ack = (xid: number, ip: number, lease: number[] | null = be32(120)) =>
  message(DhcpOp.BOOTREPLY, DhcpType.ACK, xid, { yiaddr: ip }, [
    [DhcpOption.SERVER_ID, be32(SERVER)],
    ...(lease ? [[DhcpOption.LEASE_TIME, lease] as [number, number[]]] : []),
  ]);

describe('DHCP snoop', () => {
  let leases: LeaseTable;
  let snoop: DhcpSnoop;
  let a: Attachment;
  let b: Attachment;
  let lines: string[];
  const byIp = new Map<number, Attachment>();

  beforeEach(() => {
    leases = new LeaseTable(1, 0xfffffffe, null, T0);
    byIp.clear();
    lines = [];
    const log = new Logger('text', (l) => lines.push(l));
    const assign = (att: Attachment, ip: number) => {
      if (att.ip !== 0) byIp.delete(att.ip);
      att.ip = ip;
      if (ip !== 0) byIp.set(ip, att);
    };
    snoop = new DhcpSnoop(leases, assign, (ip) => byIp.get(ip));
    const none = () => {};
    a = attachment(new Port(1, 'a', 4, none), parseMac('52:54:00:00:00:0a')!, 'a', log);
    b = attachment(new Port(2, 'b', 4, none), parseMac('52:54:00:00:00:0b')!, 'b', log);
  });

  test("only an ACK to the VM's own transaction binds, until its lease time, under the external MAC", () => {
    assert.equal(snoop.fromServer(a, ack(1, IP), SERVER_MAC, T0), Drop.DHCP_UNSOLICITED);
    assert.equal(snoop.fromClient(a, client(DhcpType.DISCOVER, 7)), Drop.NONE);
    assert.equal(snoop.fromServer(a, ack(6, IP), SERVER_MAC, T0), Drop.DHCP_UNSOLICITED);
    assert.equal(
      snoop.fromServer(a, message(DhcpOp.BOOTREPLY, DhcpType.OFFER, 7, { yiaddr: IP }), SERVER_MAC, T0),
      Drop.NONE,
    );
    assert.equal(a.ip, 0);
    assert.equal(snoop.fromServer(a, ack(7, IP), SERVER_MAC, T0), Drop.NONE);
    assert.equal(a.ip, IP);
    assert.deepEqual(leases.get('a'), {
      key: 'a',
      mac: formatMac(a.extMac),
      ip: IP,
      state: 'bound',
      expires: T0 + 120_000,
      hostname: undefined,
      // What its release will need: the server's identifier and MAC; the VM sent no client identifier.
      server: { ip: SERVER, mac: SERVER_MAC, clientId: undefined },
    });
    assert.match(
      lines.join(''),
      /lease bound ip=10\.77\.0\.100 mac=52:54:00:00:00:0a external_mac=\S+ lease=120 server=10\.77\.0\.1/,
    );
    snoop.fromClient(a, client(DhcpType.REQUEST, 8, { ciaddr: IP }));
    snoop.fromServer(a, ack(8, IP), SERVER_MAC, T0 + 60_000);
    assert.equal(leases.get('a')?.expires, T0 + 180_000);
    assert.match(lines.join(''), /lease renewed ip=10\.77\.0\.100/);
  });

  test('an ACK without a lease time or for no host address is dropped; one to INFORM changes nothing', () => {
    snoop.fromClient(a, client(DhcpType.REQUEST, 9));
    assert.equal(snoop.fromServer(a, ack(9, IP, null), SERVER_MAC, T0), Drop.DHCP_ACK_NO_LEASE);
    for (const bad of [0xe0000001, 0x7f000001, 0xffffffff, 0x00000005])
      assert.equal(snoop.fromServer(a, ack(9, bad), SERVER_MAC, T0), Drop.DHCP_ACK_BAD_ADDRESS);
    assert.equal(snoop.fromServer(a, ack(9, 0), SERVER_MAC, T0), Drop.NONE);
    assert.equal(a.ip, 0);
  });

  test('a binding keeps the client identifier as the LAN saw it, for the release; none longer than one option', () => {
    const hex = (b: Iterable<number>) => Buffer.from([...b]).toString('hex');
    const cases: Array<[number[], string | undefined]> = [
      [[1, ...a.mac], hex([1, ...a.extMac])],
      [[255, 1, 2, 3, 4], 'ff01020304'],
      [new Array(256).fill(7), undefined],
    ];
    for (const [i, [id, kept]] of cases.entries()) {
      snoop.fromClient(a, client(DhcpType.REQUEST, 20 + i, {}, [[DhcpOption.CLIENT_ID, id]]));
      snoop.fromServer(a, ack(20 + i, IP), SERVER_MAC, T0);
      assert.deepEqual(leases.get('a')?.server, { ip: SERVER, mac: SERVER_MAC, clientId: kept });
    }
  });

  test('an infinite lease is kept for 2^31 - 1 seconds', () => {
    snoop.fromClient(a, client(DhcpType.REQUEST, 10));
    snoop.fromServer(a, ack(10, IP, [255, 255, 255, 255]), SERVER_MAC, T0);
    assert.equal(leases.get('a')?.expires, T0 + 0x7fffffff * 1000);
  });

  test('NAK, RELEASE of the bound address and DECLINE of it end the binding; other ones do not', () => {
    const bind = (xid: number) => {
      snoop.fromClient(a, client(DhcpType.REQUEST, xid));
      snoop.fromServer(a, ack(xid, IP), SERVER_MAC, T0);
      assert.equal(a.ip, IP);
    };
    bind(1);
    snoop.fromServer(a, message(DhcpOp.BOOTREPLY, DhcpType.NAK, 1), SERVER_MAC, T0);
    assert.equal(a.ip, 0);
    assert.equal(leases.get('a'), undefined);
    bind(2);
    snoop.fromClient(a, client(DhcpType.RELEASE, 3, { ciaddr: IP + 1 }));
    assert.equal(a.ip, IP);
    snoop.fromClient(a, client(DhcpType.RELEASE, 3, { ciaddr: IP }));
    assert.equal(a.ip, 0);
    bind(4);
    snoop.fromClient(a, client(DhcpType.DECLINE, 5, {}, [[DhcpOption.REQUESTED_IP, be32(IP + 1)]]));
    assert.equal(a.ip, IP);
    snoop.fromClient(a, client(DhcpType.DECLINE, 5, {}, [[DhcpOption.REQUESTED_IP, be32(IP)]]));
    assert.equal(a.ip, 0);
    assert.match(
      lines.join(''),
      /lease released .*reason=refused[\s\S]*reason=released[\s\S]*reason=declined/,
    );
  });

  test('messages of the wrong side are refused', () => {
    assert.equal(snoop.fromClient(a, client(DhcpType.OFFER, 1)), Drop.DHCP_BAD_TYPE);
    snoop.fromClient(a, client(DhcpType.DISCOVER, 2));
    assert.equal(
      snoop.fromServer(a, message(DhcpOp.BOOTREPLY, DhcpType.REQUEST, 2), SERVER_MAC, T0),
      Drop.DHCP_BAD_TYPE,
    );
  });

  test('an address the server gives one VM is taken from another that held it', () => {
    snoop.fromClient(a, client(DhcpType.REQUEST, 1));
    snoop.fromServer(a, ack(1, IP), SERVER_MAC, T0);
    snoop.fromClient(b, client(DhcpType.REQUEST, 2));
    snoop.fromServer(b, ack(2, IP), SERVER_MAC, T0);
    assert.equal(a.ip, 0);
    assert.equal(b.ip, IP);
    assert.equal(leases.get('a'), undefined);
    assert.equal(leases.holder(IP)?.key, 'b');
    assert.match(
      lines.join(''),
      /lease released ip=10\.77\.0\.100 mac=52:54:00:00:00:0a reason=given-to-another-vm/,
    );
  });
});
