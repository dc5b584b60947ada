/*
 * DNS at the gateway: the VMs' resolver is the gateway address, and softnet forwards their queries to the
 * host's own resolvers (the nameservers of /etc/resolv.conf, a local stub such as 127.0.0.53 included).
 *
 * Theory of operation
 * - The forwarder listens on the gateway address of the host link, UDP and TCP port 53, in softnet's
 *   namespace; a VM's query reaches it through the host link like any other host service.
 * - UDP: each query gets a fresh 16-bit id on the upstream socket (two VMs may pick the same id), and is
 *   sent to the first resolver; unanswered after 2 s it goes to the next, and after every resolver had its
 *   turn it is forgotten. Answers go back with the client's id, truncated ones too: the client then asks
 *   over TCP.
 * - TCP: each connection from a VM is spliced to a connection to a resolver; DNS's own 2-byte length
 *   framing passes through untouched.
 * - Nothing here is on the per-frame hot path.
 */

import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import type { Logger } from '../util/log.js';

const RETRY_MS = 2000;

/** The IPv4 nameservers of a resolv.conf. */
export function resolversFrom(path = '/etc/resolv.conf'): string[] {
  let text = '';
  try {
    text = readFileSync(path, 'utf8');
  } catch {}
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (m) out.push(m[1]);
  }
  return out;
}

interface Pending {
  client: RemoteInfo;
  id: number;
  query: Buffer;
  resolver: number;
  sentAt: number;
}

/** The UDP and TCP forwarder at one gateway address. */
export class DnsForwarder {
  private readonly pending = new Map<number, Pending>();
  private nextId = Math.floor(Math.random() * 0x10000);
  private readonly timer: NodeJS.Timeout;

  private constructor(
    private readonly server: Socket,
    private readonly upstream: Socket,
    private readonly tcp: Server,
    private readonly resolvers: string[],
    private readonly log: Logger,
  ) {
    server.on('message', (msg, rinfo) => this.query(msg, rinfo));
    upstream.on('message', (msg, rinfo) => this.answer(msg, rinfo));
    tcp.on('connection', (vm) => {
      if (this.resolvers.length === 0) {
        vm.destroy();
        return;
      }
      const up = connect(53, this.resolvers[0]);
      vm.pipe(up).pipe(vm);
      const end = () => {
        vm.destroy();
        up.destroy();
      };
      vm.on('error', end);
      up.on('error', end);
    });
    this.timer = setInterval(() => this.retry(), 500);
    this.timer.unref();
  }

  /** Binds UDP and TCP port 53 on `addr`; rejects when they cannot be bound. */
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
    if (resolvers.length === 0)
      log.warn('dns: no IPv4 nameserver in /etc/resolv.conf; queries will go unanswered');
    return new DnsForwarder(server, upstream, tcp, resolvers, log);
  }

  /** Stops listening. */
  close(): void {
    clearInterval(this.timer);
    this.server.close();
    this.upstream.close();
    this.tcp.close();
  }

  private query(msg: Buffer, client: RemoteInfo): void {
    if (msg.length < 12 || this.resolvers.length === 0) return;
    let id = this.nextId;
    for (let i = 0; i < 0x10000 && this.pending.has(id); i++) id = (id + 1) & 0xffff;
    if (this.pending.has(id)) return;
    this.nextId = (id + 1) & 0xffff;
    const query = Buffer.from(msg);
    const original = query.readUInt16BE(0);
    query.writeUInt16BE(id, 0);
    const p: Pending = { client, id: original, query, resolver: 0, sentAt: Date.now() };
    this.pending.set(id, p);
    this.upstream.send(query, 53, this.resolvers[0]);
  }

  private answer(msg: Buffer, from: RemoteInfo): void {
    if (msg.length < 12 || from.port !== 53) return;
    const id = msg.readUInt16BE(0);
    const p = this.pending.get(id);
    if (!p || from.address !== this.resolvers[p.resolver]) return;
    this.pending.delete(id);
    msg.writeUInt16BE(p.id, 0);
    this.server.send(msg, p.client.port, p.client.address);
  }

  private retry(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) {
      if (now - p.sentAt < RETRY_MS) continue;
      p.resolver++;
      if (p.resolver >= this.resolvers.length) {
        this.pending.delete(id);
        this.log.warn('dns query unanswered', { client: p.client.address });
        continue;
      }
      p.sentAt = now;
      this.upstream.send(p.query, 53, this.resolvers[p.resolver]);
    }
  }
}
