// A capture to replay: the frames one VM sent, read from a pcap file, packed into one buffer, and who the
// VM and its gateway were in it. The VM is the capture's most frequent source MAC (a capture taken on the
// VM's side is mostly what it sent), unless the caller names it.

import { basename } from 'node:path';
import { LINKTYPE_ETHERNET, readPcapFile } from '../../src/capture/pcap.js';
import { STRIDE } from '../../src/pipeline/pipeline.js';
import { formatMac, parseMac } from '../../src/wire/addr.js';
import * as arp from '../../src/wire/arp.js';
import { ETH, ETH_HEADER_LEN, EtherType, isGroupMac } from '../../src/wire/ethernet.js';
import { IPV4, IPV4_HEADER_LEN } from '../../src/wire/ipv4.js';

/** The VM's frames of one capture, ready to replay. */
export interface Capture {
  /** The file's name without its directory and .pcap: the scenario's name. */
  name: string;
  path: string;
  /** Records in the file. */
  records: number;
  /** The VM's frames, in capture order: views into one buffer. */
  frames: Uint8Array[];
  /** Their bytes together. */
  bytes: number;
  vmMac: Uint8Array;
  /** Where the VM sent its unicast frames (the gateway's MAC as the VM saw it). */
  gatewayMac: Uint8Array;
  /** The VM's IPv4 address in the capture, 0 if it sent none. */
  vmIp: number;
  /** The address the VM asked ARP for most (its gateway), 0 if it asked none. */
  gatewayIp: number;
  /** Records left out: sent by another MAC, cut short by the capture's snaplen, or longer than a slot. */
  skipped: { otherMac: number; cut: number; tooLong: number };
}

/** A locally administered MAC for a capture without one unicast frame from the VM. */
const NO_GATEWAY_MAC = Uint8Array.of(0x02, 0, 0, 0, 0, 0xfe);

/** Loads the VM's frames of the pcap at `path` (the VM is `vmMac`, or the most frequent source MAC). */
export function loadCapture(path: string, vmMac: Uint8Array | null = null): Capture {
  const file = readPcapFile(path);
  if (file.header.linkType !== LINKTYPE_ETHERNET) {
    throw new Error(`${path}: link type ${file.header.linkType}, only Ethernet (1) can be replayed`);
  }
  const fcs = file.header.fcsLen;
  const records = file.records.filter((r) => r.data.length - fcs >= ETH_HEADER_LEN);
  if (records.length === 0) throw new Error(`${path}: no Ethernet frames`);
  const vmKey = vmMac
    ? formatMac(vmMac)
    : mostFrequent(
        records.map((r) => formatMac(r.data, ETH.SRC)),
        () => true,
      )!;
  const skipped = { otherMac: file.records.length - records.length, cut: 0, tooLong: 0 };
  const mine = records.filter((r) => {
    if (formatMac(r.data, ETH.SRC) !== vmKey) skipped.otherMac++;
    else if (r.data.length < r.origLen) skipped.cut++;
    else if (r.data.length - fcs > STRIDE) skipped.tooLong++;
    else return true;
    return false;
  });
  if (mine.length === 0) throw new Error(`${path}: no replayable frame from ${vmKey}`);
  const packed = new Uint8Array(mine.reduce((n, r) => n + r.data.length - fcs, 0));
  const frames: Uint8Array[] = [];
  let at = 0;
  for (const r of mine) {
    const len = r.data.length - fcs;
    packed.set(r.data.subarray(0, len), at);
    frames.push(packed.subarray(at, at + len));
    at += len;
  }
  const dv = new DataView(packed.buffer);
  const gw = mostFrequent(
    frames.map((f) => formatMac(f, ETH.DST)),
    (mac, i) => !isGroupMac(frames[i], ETH.DST) && mac !== vmKey,
  );
  const ipv4 = frames.filter(
    (f) => type(dv, f) === EtherType.IPV4 && f.length >= ETH_HEADER_LEN + IPV4_HEADER_LEN,
  );
  const arps = frames.filter(
    (f) =>
      type(dv, f) === EtherType.ARP &&
      arp.isEthernetIpv4(dv, f.byteOffset + ETH_HEADER_LEN, f.length - ETH_HEADER_LEN) &&
      arp.op(dv, f.byteOffset + ETH_HEADER_LEN) === arp.ArpOp.REQUEST,
  );
  return {
    name: basename(path).replace(/\.pcap$/, ''),
    path,
    records: file.records.length,
    frames,
    bytes: packed.length,
    vmMac: parseMac(vmKey)!,
    gatewayMac: gw === null ? NO_GATEWAY_MAC : parseMac(gw)!,
    vmIp:
      mostFrequent(
        ipv4.map((f) => dv.getUint32(f.byteOffset + ETH_HEADER_LEN + IPV4.SRC)),
        (ip) => ip !== 0,
      ) ?? 0,
    gatewayIp:
      mostFrequent(
        arps.map((f) => arp.targetIp(dv, f.byteOffset + ETH_HEADER_LEN)),
        () => true,
      ) ?? 0,
    skipped,
  };
}

function type(dv: DataView, f: Uint8Array): number {
  return dv.getUint16(f.byteOffset + ETH.TYPE);
}

/** The value that occurs most often among those `keep` accepts (the first of equals), or null. */
function mostFrequent<T>(values: T[], keep: (v: T, i: number) => boolean): T | null {
  const counts = new Map<T, number>();
  values.forEach((v, i) => {
    if (keep(v, i)) counts.set(v, (counts.get(v) ?? 0) + 1);
  });
  let best: T | null = null;
  let most = 0;
  for (const [v, n] of counts) {
    if (n > most) {
      best = v;
      most = n;
    }
  }
  return best;
}
