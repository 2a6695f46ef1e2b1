// Toxiproxy (Shopify's fault proxy, built by .ci/build-kube) between the agent and the real API server, for the
// faults the real server cannot be made to produce on demand: a stream that hangs, a connection cut mid-event,
// latency. It proxies TCP, so TLS passes through and the API server's certificate for 127.0.0.1 still verifies.
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { freePort, TOOLS_BIN } from './kube-cluster.js';

export type ToxicType = 'latency' | 'timeout' | 'reset_peer' | 'limit_data' | 'bandwidth' | 'slicer' | 'slow_close';

export interface Toxic {
  name: string;
  type: ToxicType;
  stream?: 'upstream' | 'downstream';
  toxicity?: number;
  attributes: Record<string, number>;
}

function call(port: number, method: string, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method, headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

export class Toxiproxy {
  private constructor(
    private readonly child: ChildProcess,
    private readonly apiPort: number,
  ) {}

  static async start(): Promise<Toxiproxy> {
    const apiPort = await freePort();
    const child = spawn(join(TOOLS_BIN, 'toxiproxy-server'), ['-host', '127.0.0.1', '-port', String(apiPort)], {
      stdio: 'ignore',
    });
    const proxy = new Toxiproxy(child, apiPort);
    process.once('exit', () => child.kill('SIGKILL'));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`toxiproxy-server exited with ${child.exitCode}`);
      const up = await call(apiPort, 'GET', '/version').then((r) => r.status === 200, () => false);
      if (up) return proxy;
      if (Date.now() > deadline) throw new Error('toxiproxy-server did not answer in 20 s');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private async ok(method: string, path: string, body?: unknown): Promise<string> {
    const res = await call(this.apiPort, method, path, body);
    if (res.status < 200 || res.status > 299) throw new Error(`toxiproxy ${method} ${path}: ${res.status} ${res.text}`);
    return res.text;
  }

  /** A proxy listening on a free loopback port in front of `upstream` ("127.0.0.1:PORT"); returns its address. */
  async proxy(name: string, upstream: string): Promise<string> {
    const listen = `127.0.0.1:${await freePort()}`;
    await this.ok('POST', '/proxies', { name, listen, upstream, enabled: true });
    return listen;
  }

  /** Disabling cuts every open connection and refuses new ones; enabling accepts again. */
  async setEnabled(name: string, enabled: boolean): Promise<void> {
    await this.ok('POST', `/proxies/${name}`, { enabled });
  }

  async addToxic(proxy: string, toxic: Toxic): Promise<void> {
    await this.ok('POST', `/proxies/${proxy}/toxics`, { stream: 'downstream', toxicity: 1, ...toxic });
  }

  async removeToxic(proxy: string, name: string): Promise<void> {
    await this.ok('DELETE', `/proxies/${proxy}/toxics/${name}`);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }
}
