// /metrics, /healthz (the process answers and the kernel's IPVS answers) and /readyz (informers synced).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IpvsApi } from '../ipvs/types.js';
import { describeIpvsError } from '../ipvs/errors.js';
import type { Metrics } from './metrics.js';

export interface HealthSources {
  ipvs: IpvsApi;
  metrics: Metrics;
  isSynced(): boolean;
}

const KERNEL_PROBE_TIMEOUT_MS = 5_000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** Listens on "host:port" ("[::]:9940", "0.0.0.0:9940", ":9940"); resolves once listening. */
export async function serveHttp(address: string, sources: HealthSources): Promise<Server & { port: number }> {
  const match = /^(?:\[?([^\]]*)\]?)?:(\d+)$/.exec(address);
  if (!match) throw new Error(`--metrics-address ${JSON.stringify(address)} is not host:port`);
  const server = createServer((req, res) => {
    const reply = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type }).end(body);
    };
    switch (req.url?.split('?')[0]) {
      case '/metrics':
        sources.metrics.registry
          .metrics()
          .then((text) => reply(200, text, sources.metrics.registry.contentType))
          .catch((err: unknown) => reply(500, String(err)));
        return;
      case '/healthz':
        withTimeout(sources.ipvs.info(), KERNEL_PROBE_TIMEOUT_MS)
          .then(() => reply(200, 'ok\n'))
          .catch((err: unknown) => reply(503, `IPVS unreachable: ${describeIpvsError(err)}\n`));
        return;
      case '/readyz':
        if (sources.isSynced()) reply(200, 'ok\n');
        else reply(503, 'informers not synced\n');
        return;
      default:
        reply(404, 'not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(match[2]), match[1] || undefined, () => resolve());
  });
  return Object.assign(server, { port: (server.address() as AddressInfo).port });
}
