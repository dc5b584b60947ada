/*
 * DNS at the gateway: the VMs' resolver is the gateway address, and softnet forwards their queries to the
 * host's own resolvers (the nameservers of /etc/resolv.conf, a local stub such as 127.0.0.53 included), followed
 * as that file changes (resolv-conf.ts).
 *
 * Theory of operation
 * - The forwarder listens on the gateway address of the host link, UDP and TCP port 53, in softnet's
 *   namespace; a VM's query reaches it through the host link like any other host service.
 * - UDP: each query gets a fresh 16-bit id on the upstream socket (two VMs may pick the same id), and is
 *   sent to the first resolver; unanswered after 2 s it goes to the next, and after every resolver had its
 *   turn it is forgotten. Answers go back with the client's id, truncated ones too: the client then asks
 *   over TCP. A query keeps the list of resolvers it started with when the file changes meanwhile.
 * - TCP: each connection from a VM is spliced to a connection to a resolver; DNS's own 2-byte length
 *   framing passes through untouched.
 * - With no resolver (the degraded state of resolv-conf.ts) each query is answered SERVFAIL at once, over
 *   UDP and TCP, so clients fail fast instead of waiting out their timeouts.
 * - DNS64 (dns64.ts), on networks with NAT64: once given the NAT64 prefix, queries arriving on the IPv6
 *   listeners go through answer64, which may ask upstream twice (AAAA then A, or the in-addr.arpa PTR).
 *   Over UDP each of those asks is an ordinary upstream exchange as above. A TCP connection from a VM is
 *   then not spliced: its queries are read one by one (at most MAX_TCP_INFLIGHT at a time), and each ask
 *   is a TCP exchange of its own with the resolvers in turn, so answers are never truncated on the way.
 *   A resolver that is missing answers SERVFAIL, so ipv4only.arpa is still answered locally.
 * - Nothing here is on the per-frame hot path.
 */

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { connect, createServer, type Server, type Socket as TcpSocket } from 'node:net';
import type { Logger } from '../util/log.js';
import { answer64, NAT64_PREFIX_LEN } from './dns64.js';
import { ResolvConf } from './resolv-conf.js';

export { resolversFrom } from './resolv-conf.js';

const RETRY_MS = 2000;
/** The largest DNS message over TCP (its 2-byte length), and its length prefix. */
const MAX_TCP_MESSAGE = 0xffff + 2;
/** Queries of one DNS64 TCP connection being answered at once; the connection is not read further meanwhile. */
const MAX_TCP_INFLIGHT = 8;
/** A DNS64 TCP connection from a VM idle this long is closed (RFC 7766 6.2.3 suggests seconds). */
const TCP_IDLE_MS = 10_000;

interface Pending {
  /** The client's address, for the log. */
  client: string;
  /** Takes the answer, the query's own id restored, or null once every resolver had its turn. */
  done: (answer: Buffer | null) => void;
  id: number;
  query: Buffer;
  /** The resolvers when the query came, and the one it was last sent to. */
  servers: readonly string[];
  resolver: number;
  sentAt: number;
}

/**
 * A SERVFAIL answer to `query`: its header and question, QR and RA set, no records; null when the query
 * is too short or its question cannot be read.
 */
export function servfail(query: Uint8Array): Buffer | null {
  if (query.length < 12) return null;
  let end = 12;
  const questions = (query[4] << 8) | query[5];
  if (questions === 1) {
    for (;;) {
      if (end >= query.length) return null;
      const len = query[end];
      if (len === 0) {
        end++;
        break;
      }
      if ((len & 0xc0) === 0xc0) {
        end += 2;
        break;
      }
      end += 1 + len;
    }
    end += 4;
    if (end > query.length) return null;
  }
  const out = Buffer.from(query.subarray(0, questions === 1 ? end : 12));
  out[2] = 0x80 | (query[2] & 0x79); // QR, the opcode and RD kept
  out[3] = 0x80 | 2; // RA, SERVFAIL
  out.writeUInt16BE(questions === 1 ? 1 : 0, 4);
  out.fill(0, 6, 12);
  return out;
}

/** The UDP and TCP forwarder at one gateway address. */
export class DnsForwarder {
  private readonly pending = new Map<number, Pending>();
  private nextId = Math.floor(Math.random() * 0x10000);
  private readonly timer: NodeJS.Timeout;
  /** Listeners on further addresses (the gateway's IPv6 one), closed with the forwarder. */
  private readonly extra: Array<Socket | Server> = [];
  /** The NAT64 prefix (12 bytes) DNS64 synthesizes in on the IPv6 listeners; null: no DNS64. */
  private dns64: Uint8Array | null = null;

  private constructor(
    private readonly server: Socket,
    private readonly upstream: Socket,
    private readonly tcp: Server,
    private readonly resolvers: ResolvConf,
    private readonly log: Logger,
  ) {
    server.on('message', (msg, rinfo) => this.query(msg, rinfo, server));
    upstream.on('message', (msg, rinfo) => this.answer(msg, rinfo));
    tcp.on('connection', (vm) => this.splice(vm));
    this.timer = setInterval(() => this.retry(), 500);
    this.timer.unref();
  }

  /** Splices a VM's TCP connection to the first resolver, or fails it at once without one. */
  private splice(vm: TcpSocket): void {
    const servers = this.resolvers.servers;
    if (servers.length === 0) {
      failTcp(vm);
      return;
    }
    const up = connect(53, servers[0]);
    vm.pipe(up).pipe(vm);
    const end = () => {
      vm.destroy();
      up.destroy();
    };
    vm.on('error', end);
    up.on('error', end);
  }

  /**
   * Listens on `addr` too (UDP and TCP port 53; the gateway's IPv6 address); rejects when it cannot bind.
   * `dns64`, when given, is set as by setDns64.
   */
  async listenAlso(addr: string, opts: { dns64?: Uint8Array | null } = {}): Promise<void> {
    if (opts.dns64 !== undefined) this.setDns64(opts.dns64);
    const v6 = addr.includes(':');
    const server = createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: true });
    const tcp = createServer();
    try {
      await Promise.all([
        new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.bind(53, addr, () => resolve());
        }),
        new Promise<void>((resolve, reject) => {
          tcp.once('error', reject);
          tcp.listen({ port: 53, host: addr, ipv6Only: true }, () => resolve());
        }),
      ]);
    } catch (e) {
      server.close();
      tcp.close();
      throw e;
    }
    server.on('error', (e) => this.log.warn('dns socket error', { error: e.message }));
    server.on('message', (msg, rinfo) => {
      const prefix = v6 ? this.dns64 : null;
      if (prefix) this.query64(msg, rinfo, server, prefix);
      else this.query(msg, rinfo, server);
    });
    tcp.on('connection', (vm) => {
      const prefix = v6 ? this.dns64 : null;
      if (prefix) this.serve64(vm, prefix);
      else this.splice(vm);
    });
    this.extra.push(server, tcp);
  }

  /**
   * Sets the NAT64 prefix (its 12 bytes, see prefixFromWords) that DNS64 applies on the IPv6 listeners, or
   * turns DNS64 off with null; queries over UDP and TCP connections opened afterwards follow it.
   */
  setDns64(prefix: Uint8Array | null): void {
    if (prefix !== null && prefix.length !== NAT64_PREFIX_LEN)
      throw new RangeError(`a NAT64 prefix is ${NAT64_PREFIX_LEN} bytes, not ${prefix.length}`);
    this.dns64 = prefix === null ? null : Uint8Array.from(prefix);
  }

  /**
   * Binds UDP and TCP port 53 on `addr`; rejects when they cannot be bound. `resolvers` is the list just
   * read from the resolv.conf, which the forwarder then follows.
   */
  static async start(addr: string, resolvers: string[], log: Logger): Promise<DnsForwarder> {
    const server = createSocket('udp4');
    const upstream = createSocket('udp4');
    const tcp = createServer();
    try {
      await Promise.all([
        new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.bind(53, addr, () => resolve());
        }),
        new Promise<void>((resolve, reject) => {
          upstream.once('error', reject);
          upstream.bind(0, () => resolve());
        }),
        new Promise<void>((resolve, reject) => {
          tcp.once('error', reject);
          tcp.listen(53, addr, () => resolve());
        }),
      ]);
    } catch (e) {
      server.close();
      upstream.close();
      tcp.close();
      throw e;
    }
    server.on('error', (e) => log.warn('dns socket error', { error: e.message }));
    upstream.on('error', (e) => log.warn('dns upstream error', { error: e.message }));
    return new DnsForwarder(server, upstream, tcp, ResolvConf.acquire(log, resolvers), log);
  }

  /** Stops listening. */
  close(): void {
    clearInterval(this.timer);
    this.resolvers.release();
    this.server.close();
    this.upstream.close();
    this.tcp.close();
    for (const l of this.extra) l.close();
  }

  private query(msg: Buffer, client: RemoteInfo, via: Socket): void {
    if (msg.length < 12) return;
    const servers = this.resolvers.servers;
    if (servers.length === 0) {
      const fail = servfail(msg);
      if (fail) via.send(fail, client.port, client.address);
      return;
    }
    this.exchange(msg, client.address, (answer) => {
      if (answer) via.send(answer, client.port, client.address);
    });
  }

  /** A query on a DNS64 listener: answered through answer64, its asks sent as ordinary UDP exchanges. */
  private query64(msg: Buffer, client: RemoteInfo, via: Socket, prefix: Uint8Array): void {
    if (msg.length < 12) return;
    const ask = (m: Uint8Array) => this.askUdp(m, client.address);
    answer64(msg, prefix, ask, true)
      .then((answer) => {
        if (answer) via.send(answer, client.port, client.address);
      })
      .catch((e) => this.log.warn('dns64 answer failed', { client: client.address, error: String(e) }));
  }

  /** One upstream UDP exchange of `msg`; a SERVFAIL made here when there is no resolver. */
  private askUdp(msg: Uint8Array, client: string): Promise<Buffer | null> {
    if (this.resolvers.servers.length === 0) return Promise.resolve(servfail(msg));
    return new Promise((resolve) => this.exchange(msg, client, resolve));
  }

  /** Sends `msg` to the first resolver under a fresh id; `done` gets the answer or, in the end, null. */
  private exchange(msg: Uint8Array, client: string, done: (answer: Buffer | null) => void): void {
    const servers = this.resolvers.servers;
    let id = this.nextId;
    for (let i = 0; i < 0x10000 && this.pending.has(id); i++) id = (id + 1) & 0xffff;
    if (this.pending.has(id)) {
      done(null);
      return;
    }
    this.nextId = (id + 1) & 0xffff;
    const query = Buffer.from(msg);
    const original = query.readUInt16BE(0);
    query.writeUInt16BE(id, 0);
    const p: Pending = { client, done, id: original, query, servers, resolver: 0, sentAt: Date.now() };
    this.pending.set(id, p);
    this.upstream.send(query, 53, servers[0]);
  }

  /**
   * A VM's TCP connection to a DNS64 listener: each framed query is answered through answer64 over TCP
   * upstream, in whatever order the answers come (RFC 7766 7).
   */
  private serve64(vm: TcpSocket, prefix: Uint8Array): void {
    let got = Buffer.alloc(0);
    let inflight = 0;
    let ended = false;
    const pump = () => {
      while (inflight < MAX_TCP_INFLIGHT && got.length >= 2 && got.length >= 2 + got.readUInt16BE(0)) {
        const msg = got.subarray(2, 2 + got.readUInt16BE(0));
        got = got.subarray(2 + msg.length);
        if (msg.length < 12) continue;
        inflight++;
        answer64(msg, prefix, (m) => this.askTcp(m), false).then(
          (answer) => {
            inflight--;
            if (answer && !vm.destroyed) vm.write(framed(answer));
            pump();
          },
          () => vm.destroy(),
        );
      }
      if (inflight < MAX_TCP_INFLIGHT) vm.resume();
      else vm.pause();
      if (ended && inflight === 0 && !vm.destroyed) vm.end();
    };
    vm.setTimeout(TCP_IDLE_MS, () => {
      if (inflight === 0) vm.destroy();
    });
    vm.on('error', () => vm.destroy());
    vm.on('end', () => {
      ended = true;
      pump();
    });
    vm.on('data', (chunk) => {
      got = Buffer.concat([got, chunk]);
      pump();
    });
  }

  /** One upstream exchange of `msg` over TCP, with each resolver in turn; a SERVFAIL made here without one. */
  private async askTcp(msg: Uint8Array): Promise<Buffer | null> {
    const servers = this.resolvers.servers;
    if (servers.length === 0) return servfail(msg);
    for (const server of servers) {
      const answer = await tcpExchange(server, msg);
      if (answer) return answer;
    }
    return null;
  }

  private answer(msg: Buffer, from: RemoteInfo): void {
    if (msg.length < 12 || from.port !== 53) return;
    const id = msg.readUInt16BE(0);
    const p = this.pending.get(id);
    if (!p || from.address !== p.servers[p.resolver]) return;
    this.pending.delete(id);
    msg.writeUInt16BE(p.id, 0);
    p.done(msg);
  }

  private retry(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) {
      if (now - p.sentAt < RETRY_MS) continue;
      p.resolver++;
      if (p.resolver >= p.servers.length) {
        this.pending.delete(id);
        this.log.warn('dns query unanswered', { client: p.client });
        p.done(null);
        continue;
      }
      p.sentAt = now;
      this.upstream.send(p.query, 53, p.servers[p.resolver]);
    }
  }
}

/** Answers the first query of a TCP connection SERVFAIL and closes it (there is no resolver to ask). */
function failTcp(vm: TcpSocket): void {
  let got = Buffer.alloc(0);
  vm.on('error', () => vm.destroy());
  vm.on('data', (chunk) => {
    got = Buffer.concat([got, chunk]);
    if (got.length > MAX_TCP_MESSAGE) {
      vm.destroy();
      return;
    }
    if (got.length < 2 || got.length < 2 + got.readUInt16BE(0)) return;
    const fail = servfail(got.subarray(2, 2 + got.readUInt16BE(0)));
    if (!fail) {
      vm.destroy();
      return;
    }
    const len = Buffer.alloc(2);
    len.writeUInt16BE(fail.length);
    vm.end(Buffer.concat([len, fail]));
  });
}

/** `msg` with DNS's 2-byte TCP length prefix. */
function framed(msg: Uint8Array): Buffer {
  const out = Buffer.alloc(2 + msg.length);
  out.writeUInt16BE(msg.length, 0);
  out.set(msg, 2);
  return out;
}

/**
 * Sends `msg` to `server` over a TCP connection of its own and resolves to the answer carrying the same id,
 * or null on any failure or after RETRY_MS.
 */
function tcpExchange(server: string, msg: Uint8Array): Promise<Buffer | null> {
  return new Promise((resolve) => {
    let got = Buffer.alloc(0);
    const up = connect(53, server);
    const finish = (answer: Buffer | null) => {
      up.destroy();
      resolve(answer);
    };
    up.setTimeout(RETRY_MS, () => finish(null));
    up.on('error', () => finish(null));
    up.on('close', () => finish(null));
    up.on('data', (chunk) => {
      got = Buffer.concat([got, chunk]);
      if (got.length < 2 || got.length < 2 + got.readUInt16BE(0)) return;
      const answer = Buffer.from(got.subarray(2, 2 + got.readUInt16BE(0)));
      const sameId = answer.length >= 2 && answer[0] === msg[0] && answer[1] === msg[1];
      finish(sameId ? answer : null);
    });
    up.write(framed(msg));
  });
}
