// An HTTP-level fault in front of the real kube-apiserver, for the one fault a TCP proxy cannot make: an HTTP 500
// answer to a list. It terminates TLS with the fixture's own serving certificate (so the agent still verifies the
// server against the cluster CA), forwards every request unchanged to the real server and streams the answer back;
// while armed it answers lists (GET without watch, or a streaming list with sendInitialEvents) with a 500 Status.
// It can also freeze watches alone (a stream that stops delivering while the server answers everything else), which
// no TCP proxy can: its toxics hit every connection of a proxy alike.
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer, request, type Server } from 'node:https';
import { join } from 'node:path';
import type { KubeCluster } from './kube-cluster.js';

const internalError = JSON.stringify({
  kind: 'Status',
  apiVersion: 'v1',
  metadata: {},
  status: 'Failure',
  message: 'Internal error injected by the test fault proxy',
  reason: 'InternalError',
  code: 500,
});

/** A list: a GET that is not a watch, or a watch that starts by sending every existing object. */
export function isListRequest(method: string | undefined, url: string): boolean {
  if (method !== 'GET') return false;
  const query = new URL(url, 'https://x').searchParams;
  const watch = query.get('watch');
  return !(watch === '1' || watch === 'true') || query.get('sendInitialEvents') === 'true';
}

// Hop-by-hop headers belong to one connection; Node sets its own on each side.
const endToEnd = (headers: Record<string, unknown>) => {
  const copy = { ...headers };
  for (const h of ['connection', 'keep-alive', 'transfer-encoding', 'host']) delete copy[h];
  return copy as Record<string, string | string[]>;
};

export class HttpFault {
  /** While true, lists answer 500. */
  failLists = false;
  /** Lists answered 500 so far. */
  failed = 0;
  private frozen = false;
  /** Watch answers being streamed, and watches held unanswered while frozen. */
  private readonly watches = new Map<ServerResponse, () => void>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(cluster: KubeCluster): Promise<HttpFault> {
    const [host, port] = ['127.0.0.1', cluster.apiserverPort];
    let fault: HttpFault | undefined;
    const server = createServer(
      { cert: readFileSync(join(cluster.dir, 'apiserver.crt')), key: readFileSync(join(cluster.dir, 'apiserver.key')) },
      (req, res) => {
        if (fault?.failLists && isListRequest(req.method, req.url ?? '/')) {
          fault.failed++;
          res.writeHead(500, { 'content-type': 'application/json' }).end(internalError);
          return;
        }
        // Streaming lists too: after their initial events they carry the changes like any watch.
        const watchParam = new URL(req.url ?? '/', 'https://x').searchParams.get('watch');
        const isWatch = req.method === 'GET' && (watchParam === '1' || watchParam === 'true');
        if (isWatch && fault?.frozen) {
          fault.watches.set(res, () => {});
          res.on('close', () => fault?.watches.delete(res));
          return;
        }
        const upstream = request(
          { host, port, path: req.url, method: req.method, headers: endToEnd(req.headers), ca: cluster.ca },
          (answer) => {
            res.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers));
            answer.pipe(res);
            if (isWatch && fault) {
              fault.watches.set(res, () => answer.unpipe(res));
              res.on('close', () => fault?.watches.delete(res));
            }
            // A stream the server cut (a restart) is cut for the client too, not ended as if complete.
            answer.on('aborted', () => res.destroy());
          },
        );
        upstream.on('error', () => res.destroy());
        res.on('close', () => upstream.destroy());
        req.pipe(upstream);
      },
    );
    await new Promise<void>((resolve) => server.listen(0, host, resolve));
    fault = new HttpFault(server, (server.address() as { port: number }).port);
    return fault;
  }

  /** Watch streams deliver nothing more and new watches get no answer; their connections stay open. */
  freezeWatches(): void {
    this.frozen = true;
    for (const stopDelivering of this.watches.values()) stopDelivering();
  }

  /** Cuts the frozen watches (their clients reconnect) and lets new ones through. */
  thawWatches(): void {
    this.frozen = false;
    for (const res of this.watches.keys()) res.destroy();
    this.watches.clear();
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
