// The `--metrics` endpoint: a small HTTP server (Node's own) answering GET /metrics with what `render`
// returns at that moment, in Prometheus text format. Anything else gets 404 or 405; a render that throws
// gets 500 and a log line, never a crash. Connections and request times are bounded, since anyone who
// can reach the address can connect.

import { createServer, type Server } from 'node:http';
import type { Logger } from '../util/log.js';
import { EXPOSITION_CONTENT_TYPE } from './prometheus.js';

/** Where the endpoint listens. */
export interface MetricsAddress {
  host: string;
  port: number;
}

const MAX_CONNECTIONS = 32;
const REQUEST_TIMEOUT_MS = 10_000;

/** Listens at `addr`; resolves with the server once it listens, rejects with the bind error. */
export function serveMetrics(addr: MetricsAddress, render: () => string, log: Logger): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain' }).end('GET or HEAD only\n');
      return;
    }
    let body: string;
    try {
      body = render();
    } catch (e) {
      log.error('metrics failed', { error: e instanceof Error ? e.message : String(e) });
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics failed\n');
      return;
    }
    res.writeHead(200, {
      'Content-Type': EXPOSITION_CONTENT_TYPE,
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  server.maxConnections = MAX_CONNECTIONS;
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = REQUEST_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(addr.port, addr.host, () => {
      server.off('error', reject);
      // Later failures (out of fds) are the endpoint's, not the engine's.
      server.on('error', (e) => log.error('metrics endpoint failed', { error: e.message }));
      resolve(server);
    });
  });
}
