/*
 * The host's own way into a port forward: a listener on BIND:EXT in the engine's namespace that relays to
 * the VM over the host link.
 *
 * Theory of operation
 * - Traffic the host sends itself (to 127.0.0.1, or to any of its addresses) goes over loopback and never
 *   reaches the uplink's packet socket, so the packet path cannot serve it. This proxy does: a TCP
 *   connection is piped to a new connection to the VM's address and port, which the host's kernel routes
 *   over the host link; a UDP client gets a socket of its own (a session), so the VM's answers find their
 *   way back to it. The VM sees the gateway address as the client's.
 * - The VM's address is asked for when a connection or a new session comes, so the proxy follows the
 *   lease; while the VM has none, connections are closed at once and datagrams dropped. A forward without
 *   a bind address listens on every IPv6 address of the host too ([::1] included); either listener leads
 *   to the VM's IPv4 address, or on an IPv6-only network to the address the VM was last seen sending from. moved() ends the
 *   UDP sessions bound to the old address.
 * - Bounds: MAX_CONNECTIONS per TCP forward; MAX_SESSIONS per UDP forward, each ended after SESSION_IDLE_MS
 *   without a datagram, the oldest ended when a new client comes to a full table.
 * - What the world sends to the uplink address never gets here: the guard drops it on the uplink before the
 *   host's stack, and the packet path delivers it.
 * - This is not per-frame code: it runs on Node's sockets and allocates as Node does.
 */

import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { monotonicMs } from '../util/clock.js';

/** TCP connections one forward relays at once. */
export const MAX_CONNECTIONS = 1024;
/** UDP clients one forward relays at once. */
export const MAX_SESSIONS = 256;
/** How long a UDP session lasts without a datagram either way. */
export const SESSION_IDLE_MS = 120_000;

/** Where a forward leads: the VM's address of the moment (IPv4 or IPv6 text; null: none) and its port. */
export interface ProxyTarget {
  address(): string | null;
  readonly port: number;
}

/** One forward's listener. */
export interface ForwardProxy {
  /** The VM's address changed: what was bound to the old one ends. */
  moved(): void;
  close(): void;
}

/**
 * Listens on `host`:`ext` (an address's text: 0.0.0.0 or :: for every host address of a family) and
 * relays to `target`. Rejects with Node's error (its code EADDRINUSE, EADDRNOTAVAIL, EACCES) when the port
 * cannot be had.
 */
export async function openForwardProxy(
  proto: 'tcp' | 'udp',
  host: string,
  ext: number,
  target: ProxyTarget,
): Promise<ForwardProxy> {
  return proto === 'tcp' ? tcpProxy(host, ext, target) : udpProxy(host, ext, target);
}

/** The socket type for talking to `address`. */
function udpType(address: string): 'udp4' | 'udp6' {
  return address.includes(':') ? 'udp6' : 'udp4';
}

async function tcpProxy(host: string, ext: number, target: ProxyTarget): Promise<ForwardProxy> {
  const open = new Set<Socket>();
  const server: Server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    const address = target.address();
    if (address === null) {
      client.destroy();
      return;
    }
    const vm = connect({ host: address, port: target.port, allowHalfOpen: true });
    const end = () => {
      client.destroy();
      vm.destroy();
      open.delete(client);
      open.delete(vm);
    };
    open.add(client);
    open.add(vm);
    client.on('error', end).on('close', end);
    vm.on('error', end).on('close', end);
    // Each side's end of stream (FIN) is passed on; the connection ends when both sides have closed.
    client.pipe(vm);
    vm.pipe(client);
    client.resume();
  });
  server.maxConnections = MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: ext, exclusive: true, ipv6Only: host.includes(':') }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // After the listen: an error now (an accept that failed, out of fds) is no reason to stop serving.
  server.on('error', () => {});
  return {
    moved() {},
    close() {
      server.close();
      for (const s of open) s.destroy();
      open.clear();
    },
  };
}

interface Session {
  sock: UdpSocket;
  /** The VM address this session sends to. */
  ip: string;
  last: number;
}

async function udpProxy(host: string, ext: number, target: ProxyTarget): Promise<ForwardProxy> {
  const listener = createSocket({ type: udpType(host), ipv6Only: host.includes(':') });
  const sessions = new Map<string, Session>();
  const end = (key: string) => {
    const s = sessions.get(key);
    if (!s) return;
    sessions.delete(key);
    s.sock.close();
  };
  listener.on('message', (msg: Buffer, from: RemoteInfo) => {
    const key = `${from.address}:${from.port}`;
    let s = sessions.get(key);
    if (!s) {
      const address = target.address();
      if (address === null) return;
      if (sessions.size >= MAX_SESSIONS) end(sessions.keys().next().value as string);
      const sock = createSocket({ type: udpType(address) });
      const session: Session = { sock, ip: address, last: monotonicMs() };
      sock.on('message', (reply: Buffer, vm: RemoteInfo) => {
        if (vm.address !== session.ip || vm.port !== target.port) return;
        session.last = monotonicMs();
        listener.send(reply, from.port, from.address);
      });
      sock.on('error', () => end(key));
      sessions.set(key, session);
      s = session;
    }
    s.last = monotonicMs();
    s.sock.send(msg, target.port, s.ip);
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.bind({ address: host, port: ext, exclusive: true }, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  // After the bind: an error now (a send that failed) is no reason to stop serving.
  listener.on('error', () => {});
  const timer = setInterval(() => {
    const now = monotonicMs();
    for (const [key, s] of sessions) if (now - s.last > SESSION_IDLE_MS) end(key);
  }, 5000);
  timer.unref();
  return {
    moved() {
      for (const key of [...sessions.keys()]) end(key);
    },
    close() {
      clearInterval(timer);
      for (const key of [...sessions.keys()]) end(key);
      listener.close();
    },
  };
}
