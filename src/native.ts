// The addon (native/softnet.c): batched frame I/O and the system calls Node cannot make.

import { createRequire } from 'node:module';

/**
 * Framing of a port: a datagram, a TAP read, or a length-prefixed stream per frame; a socket whose
 * readiness is all the port reports (a listening socket, a control connection); or a raw IPv4 (RAW) or
 * IPv6 (RAW6) socket that sends each packet to the destination in its header.
 */
export const PortMode = { DGRAM: 0, TAP: 1, STREAM: 2, WATCH: 3, RAW: 4, RAW6: 5 } as const;

/** An interface's state as ifState reads it: addr 0 when it has no IPv4 address. */
export interface IfState {
  index: number;
  up: boolean;
  running: boolean;
  addr: number;
  mtu: number;
}

/** The addon's functions; see native/softnet.c for their contracts. */
export interface Native {
  setArena(arena: ArrayBuffer): void;
  portOpen(fd: number, mode: number, vnet?: boolean): number;
  portWatch(port: number, cb: (port: number, status: number) => void): void;
  portClose(port: number): void;
  recv(port: number, base: number, stride: number, max: number, lens: Uint32Array): number;
  send(port: number, offs: Uint32Array, lens: Uint32Array, count: number): number;
  tapOpen(
    name: string,
    netns: string | null,
    mac: Uint8Array | null,
    mtu: number,
    up: boolean,
    vnet?: boolean,
  ): { fd: number; name: string };
  tapCarrier(fd: number, on: boolean): void;
  ifConfigure(name: string, addr: number, prefix: number, up: boolean): void;
  ifAddr6(name: string, addr: Uint8Array, prefix: number): void;
  ifHwaddr(name: string): Uint8Array;
  rawSocket(): number;
  rawSocket6(): number;
  packetSocket(ifname: string, filter: Uint8Array, family?: 4 | 6): number;
  portSetFilter(port: number, filter: Uint8Array): void;
  packetTxSocket(ifname: string): { fd: number; mac: Uint8Array };
  lanSockets(ifname: string): { rx: number; tx: number; mac: Uint8Array; mtu: number };
  packetMembership(fd: number, mac: Uint8Array, on: boolean): void;
  fdKind(fd: number): 'tap' | 'tap-vnet' | 'unix-dgram' | 'unix-stream' | 'other';
  unixListen(path: string): number;
  unixAccept(fd: number): number;
  socketpair(type: 'dgram' | 'stream'): [number, number];
  closeFd(fd: number): void;
  errnoName(errno: number): string;
  ctlListen(path: string): number;
  ctlConnect(path: string): number;
  ctlAccept(fd: number): number;
  ctlSend(fd: number, bytes: Uint8Array, passFd: number): number;
  ctlRecv(fd: number, buf: Uint8Array, fdOut: Int32Array): number;
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  lockFile(path: string): number;
  dupFd(fd: number): number;
  netnsLock(name: string): number;
  dropPrivileges(uid: number, gid: number, keep: number, ambient: number): void;
  execvp(file: string, args: string[], keep: number): never;
  rtnlOpen(): number;
  rtnlDrain(fd: number): number;
  ifState(name: string): IfState | null;
  neighbours6(ifname: string): Array<{ addr: Uint8Array; mac: Uint8Array; state: number }>;
  gsoSegment(src: number, len: number, dst: number, stride: number, max: number, lens: Uint32Array): number;
}

/** The loaded addon. */
export const native: Native = createRequire(import.meta.url)('../../native/build/Release/softnet.node');
