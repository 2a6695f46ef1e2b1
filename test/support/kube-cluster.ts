// A real etcd + kube-apiserver on loopback for one test file: fresh data dir, a self-made CA, token users.
// Works on the host and inside the QEMU VM (the binaries come from .tools/bin, built by .ci/build-kube; the data
// dir goes to the TMPDIR, a tmpfs in the VM). See shared/docs/real-kubernetes.md for the flags and pitfalls.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from '../vm/harness.js';

export const TOOLS_BIN = join(repoRoot(), '.tools', 'bin');

/**
 * Set by the VM suite to the file in which test/support/kube-cluster-main.ts writes the control URL of one
 * cluster that every test file shares, once it is ready: under TCG each kube-apiserver start costs one to two
 * minutes, and the suite starts this one while the kernel tests run.
 */
export const SHARED_CLUSTER_ENV = 'KUBE_TEST_CLUSTER';

/** What a test file needs to talk to a cluster another process owns. */
export interface ClusterState {
  dir: string;
  apiserverPort: number;
  etcdUrl: string;
  apiserverArgs: readonly string[];
}

export interface KubeUser {
  readonly name: string;
  readonly token: string;
}

export interface ApiResponse<T = unknown> {
  status: number;
  body: T;
  text: string;
}

export interface StartOptions {
  /** How long kube-apiserver may take to answer /readyz. Default 60 s on the host, 6 min in the VM (TCG). */
  readyTimeoutMs?: number;
  /** Extra kube-apiserver flags, e.g. ['--feature-gates=WatchList=false']. */
  apiserverFlags?: readonly string[];
  /** Forwarded to the test's stderr, prefixed, when set. */
  logTo?: (line: string) => void;
  /** A cluster of its own even where the suite shares one (SHARED_CLUSTER_ENV); implied by apiserverFlags. */
  dedicated?: boolean;
}

/** The tools the fixture needs, with what to run when they are missing. */
export function kubeClusterProblems(): string[] {
  const problems: string[] = [];
  for (const tool of ['etcd', 'kube-apiserver']) {
    if (!existsSync(join(TOOLS_BIN, tool))) problems.push(`${join(TOOLS_BIN, tool)} is missing (run .ci/setup)`);
  }
  return problems;
}

/**
 * Below Linux's default ephemeral range (ip_local_port_range 32768-60999). A port the OS picked with listen(0)
 * comes from that range, and until its server binds it any outgoing connection may take it as its source port: in
 * CI, kube-apiserver once failed with EADDRINUSE on such a port (etcd, started just before, connects to itself).
 */
const PORT_RANGE = { from: 20_000, to: 32_767 } as const;
const handedOut = new Set<number>();

/** A port nobody listens on now, outside the ephemeral range, and not handed out before by this process. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = PORT_RANGE.from + Math.floor(Math.random() * (PORT_RANGE.to - PORT_RANGE.from + 1));
    if (handedOut.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.unref();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (!free) continue;
    handedOut.add(port);
    return port;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA, a serving certificate for IP:127.0.0.1 signed by it, and the service-account signing key. */
function makePki(dir: string): void {
  openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt',
    '-days', '2', '-subj', '/CN=ipvs-janitor-test-ca');
  openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'apiserver.key', '-out', 'apiserver.csr',
    '-subj', '/CN=kube-apiserver');
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(dir, 'x509', '-req', '-in', 'apiserver.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'apiserver.crt', '-days', '2', '-extfile', 'san.ext');
  openssl(dir, 'genrsa', '-out', 'sa.key', '2048');
}

/** Kills what the fixture started when the test process exits without calling stop(). */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

function startProcess(name: string, args: readonly string[], logTo?: (line: string) => void): ChildProcess {
  const child = spawn(join(TOOLS_BIN, name), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let tail = '';
  const collect = (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-8000);
    if (logTo) for (const line of chunk.toString().split('\n')) if (line) logTo(`[${name}] ${line}`);
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  (child as ChildProcess & { outputTail: () => string }).outputTail = () => tail;
  return child;
}

function outputTail(child: ChildProcess): string {
  return (child as ChildProcess & { outputTail?: () => string }).outputTail?.() ?? '';
}

async function stopProcess(child: ChildProcess | undefined, graceMs = 10_000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** The whole answer, its body parsed when it is JSON (metrics and health checks answer plain text). */
function collect<T>(res: IncomingMessage, resolve: (answer: ApiResponse<T>) => void): void {
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  res.on('end', () => {
    const text = Buffer.concat(chunks).toString();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* plain text */
    }
    resolve({ status: res.statusCode ?? 0, body: parsed as T, text });
  });
}

function plainRequest(url: string, method: string, body?: unknown): Promise<ApiResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method, headers: { 'content-type': 'application/json' } }, (res) => collect(res, resolve));
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

export class KubeCluster {
  readonly url: string;
  readonly caFile: string;
  readonly ca: string;
  readonly users: { readonly admin: KubeUser; readonly agent: KubeUser; readonly nobody: KubeUser };
  private apiserver: ChildProcess | undefined;
  private etcd: ChildProcess | undefined;

  private constructor(
    readonly dir: string,
    readonly apiserverPort: number,
    readonly etcdUrl: string,
    private readonly apiserverArgs: readonly string[],
    private readonly options: StartOptions,
    /** Set when another process owns the cluster: lifecycle requests go to its control server. */
    private readonly control?: string,
    /** Set by reach(): the cluster runs elsewhere and answers at this URL with a certificate for this name. */
    private readonly reached?: { url: string; tlsServerName: string },
  ) {
    this.url = reached?.url ?? `https://127.0.0.1:${apiserverPort}`;
    this.caFile = join(dir, 'ca.crt');
    this.ca = readFileSync(this.caFile, 'utf8');
    this.users = {
      admin: { name: 'test-admin', token: tokenOf(dir, 'test-admin') },
      agent: { name: 'ipvs-janitor-agent', token: tokenOf(dir, 'ipvs-janitor-agent') },
      nobody: { name: 'nobody', token: tokenOf(dir, 'nobody') },
    };
  }

  /**
   * A fresh cluster, or the suite's shared one when SHARED_CLUSTER_ENV is set and the caller needs no cluster of
   * its own. Test files sharing one cluster keep to their own namespaces and undo the RBAC they grant.
   */
  static async start(options: StartOptions = {}): Promise<KubeCluster> {
    const shared = process.env[SHARED_CLUSTER_ENV];
    if (shared && !options.dedicated && !options.apiserverFlags) return KubeCluster.attach(await controlUrl(shared), options);
    const problems = kubeClusterProblems();
    if (problems.length > 0) throw new Error(`cannot start the real API server: ${problems.join('; ')}`);
    const dir = mkdtempSync(join(process.env.TMPDIR ?? tmpdir(), 'kube-'));
    makePki(dir);
    const token = () => execFileSync('openssl', ['rand', '-hex', '16']).toString().trim();
    // token,user,uid,"groups": an admin, the agent's own identity (no rights until a test grants them), nobody.
    writeFileSync(
      join(dir, 'tokens.csv'),
      [
        `${token()},test-admin,1,"system:masters"`,
        `${token()},ipvs-janitor-agent,2`,
        `${token()},nobody,3`,
      ].join('\n') + '\n',
    );
    const [apiserverPort, etcdPort, etcdPeerPort] = [await freePort(), await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const apiserverArgs = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${apiserverPort}`,
      // The loopback address cannot be the kubernetes Service's endpoint; nothing here needs that endpoint.
      '--endpoint-reconciler-type=none',
      `--tls-cert-file=${join(dir, 'apiserver.crt')}`,
      `--tls-private-key-file=${join(dir, 'apiserver.key')}`,
      `--client-ca-file=${join(dir, 'ca.crt')}`,
      // Dual-stack, so a test can make a dual-stack Service; single-stack ones still get IPv4 from 10.96.0.0/16.
      '--service-cluster-ip-range=10.96.0.0/16,fd00:96::/108',
      '--authorization-mode=RBAC',
      `--token-auth-file=${join(dir, 'tokens.csv')}`,
      '--service-account-issuer=https://kubernetes.default.svc',
      `--service-account-key-file=${join(dir, 'sa.key')}`,
      `--service-account-signing-key-file=${join(dir, 'sa.key')}`,
      // As kubeadm sets it: the chart's DaemonSet is privileged.
      '--allow-privileged=true',
      // Tests compact etcd when they mean to; a background compaction would make 410s appear at random.
      '--etcd-compaction-interval=0',
      ...(options.apiserverFlags ?? []),
    ];
    const cluster = new KubeCluster(dir, apiserverPort, etcdUrl, apiserverArgs, options);
    try {
      await cluster.startEtcd(etcdPeerPort);
      await cluster.startApiserver();
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  static async attach(control: string, options: StartOptions = {}): Promise<KubeCluster> {
    const res = await plainRequest(`${control}/state`, 'GET');
    if (res.status !== 200) throw new Error(`the shared cluster at ${control} answered ${res.status}: ${res.text}`);
    const state = res.body as ClusterState;
    return new KubeCluster(state.dir, state.apiserverPort, state.etcdUrl, state.apiserverArgs, options, control);
  }

  /**
   * A cluster another machine runs, for requests only: the host's, from the test VM, through a port QEMU forwards
   * to the host's loopback (harness forwardToHost). `dir` holds its ca.crt and tokens.csv. The certificate names
   * 127.0.0.1 and localhost, not the forwarded address: clients check it against `tlsServerName` (kubeconfig
   * tls-server-name), never skip the check.
   */
  static reach(dir: string, url: string, tlsServerName: string): KubeCluster {
    return new KubeCluster(dir, Number(new URL(url).port), '', [], {}, undefined, { url, tlsServerName });
  }

  get state(): ClusterState {
    return { dir: this.dir, apiserverPort: this.apiserverPort, etcdUrl: this.etcdUrl, apiserverArgs: this.apiserverArgs };
  }

  private async remote(operation: string): Promise<void> {
    const res = await plainRequest(`${this.control}/${operation}`, 'POST');
    if (res.status !== 200) throw new Error(`shared cluster: ${operation} failed: ${res.text}`);
  }

  private async startEtcd(peerPort: number): Promise<void> {
    const peer = `http://127.0.0.1:${peerPort}`;
    this.etcd = startProcess('etcd', [
      '--name=test',
      `--data-dir=${join(this.dir, 'etcd')}`,
      `--listen-client-urls=${this.etcdUrl}`,
      `--advertise-client-urls=${this.etcdUrl}`,
      `--listen-peer-urls=${peer}`,
      `--initial-advertise-peer-urls=${peer}`,
      `--initial-cluster=test=${peer}`,
      '--unsafe-no-fsync', // tests only: durability is not what they measure
      '--log-level=warn',
    ], this.options.logTo);
    await this.waitFor('etcd', this.etcd, async () => (await plainRequest(`${this.etcdUrl}/health`, 'GET')).status === 200);
  }

  private async startApiserver(): Promise<void> {
    this.apiserver = startProcess('kube-apiserver', this.apiserverArgs, this.options.logTo);
    await this.waitFor('kube-apiserver', this.apiserver, async () => (await this.request('GET', '/readyz')).status === 200);
    // The default namespace appears a moment after /readyz.
    await this.waitFor('kube-apiserver', this.apiserver, async () =>
      (await this.request('GET', '/api/v1/namespaces/default')).status === 200);
  }

  private async waitFor(name: string, child: ChildProcess, ready: () => Promise<boolean>): Promise<void> {
    const timeoutMs = this.options.readyTimeoutMs ?? (process.env.IN_TEST_VM ? 360_000 : 60_000);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${name} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${outputTail(child)}`);
      }
      if (await ready().catch(() => false)) return;
      if (Date.now() > deadline) throw new Error(`${name} not ready after ${timeoutMs} ms:\n${outputTail(child)}`);
      await sleep(200);
    }
  }

  /** The apiserver's pid, for CPU accounting in benchmarks. */
  get apiserverPid(): number | undefined {
    return this.apiserver?.pid;
  }

  /** User + system CPU seconds kube-apiserver has used so far (Linux /proc). */
  apiserverCpuSeconds(): number {
    const stat = readFileSync(`/proc/${this.apiserverPid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  }

  /** A REST request with a user's token (admin by default); JSON in, JSON (or text) out. */
  request<T = unknown>(
    method: string,
    path: string,
    body?: unknown,
    user: KubeUser = this.users.admin,
    contentType = 'application/json',
  ): Promise<ApiResponse<T>> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        `${this.url}${path}`,
        {
          method,
          ca: this.ca,
          servername: this.reached?.tlsServerName,
          headers: { authorization: `Bearer ${user.token}`, 'content-type': contentType, accept: 'application/json' },
        },
        (res) => collect(res, resolve),
      );
      req.on('error', reject);
      req.end(body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body));
    });
  }

  /** Like request(), but a status outside 2xx is an error naming the request and the API's answer. */
  async call<T = unknown>(method: string, path: string, body?: unknown, user?: KubeUser): Promise<T> {
    const res = await this.request<T>(method, path, body, user);
    if (res.status < 200 || res.status > 299) {
      throw new Error(`${method} ${path} answered ${res.status}: ${res.text.slice(0, 500)}`);
    }
    return res.body;
  }

  /** A kubeconfig file for `user`, against this server or `server` (a fault proxy in front of it). */
  kubeconfig(user: KubeUser, server: string = this.url): string {
    const path = join(this.dir, `kubeconfig-${user.name}-${server.replace(/\W+/g, '_')}.json`);
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'test',
          cluster: {
            server,
            'certificate-authority': this.caFile,
            ...(this.reached ? { 'tls-server-name': this.reached.tlsServerName } : {}),
          },
        },
      ],
      users: [{ name: user.name, user: { token: user.token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user: user.name } }],
      'current-context': 'test',
    };
    writeFileSync(path, JSON.stringify(config, null, 2));
    return path;
  }

  /** A ServiceAccount's token from the TokenRequest API: exactly the rights RBAC grants that account. */
  async serviceAccountToken(namespace: string, name: string, expirationSeconds = 3600): Promise<KubeUser> {
    const review = await this.call<{ status: { token: string } }>(
      'POST',
      `/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
      { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenRequest', spec: { expirationSeconds } },
    );
    return { name: `system:serviceaccount:${namespace}:${name}`, token: review.status.token };
  }

  /** Stops kube-apiserver and starts it again on the same port and etcd; its watch cache starts afresh. */
  async restartApiserver(): Promise<void> {
    if (this.control) return this.remote('restart-apiserver');
    await stopProcess(this.apiserver);
    await this.startApiserver();
  }

  /** Stops kube-apiserver (connections refused until startApiserverAgain()). */
  async stopApiserver(): Promise<void> {
    if (this.control) return this.remote('stop-apiserver');
    await stopProcess(this.apiserver);
  }

  async startApiserverAgain(): Promise<void> {
    if (this.control) return this.remote('start-apiserver');
    await this.startApiserver();
  }

  /** etcd's current revision. */
  async etcdRevision(): Promise<number> {
    const res = await plainRequest(`${this.etcdUrl}/v3/kv/range`, 'POST', { key: Buffer.from('/').toString('base64') });
    return Number((res.body as { header: { revision: string } }).header.revision);
  }

  /**
   * Compacts etcd at its current revision, so any resourceVersion older than now is gone for good: a watch from
   * one (once the API server's watch cache no longer holds it either) gets 410 Gone.
   */
  async compact(): Promise<number> {
    const revision = await this.etcdRevision();
    const res = await plainRequest(`${this.etcdUrl}/v3/kv/compaction`, 'POST', { revision: String(revision), physical: true });
    if (res.status !== 200) throw new Error(`etcd compaction at ${revision} answered ${res.status}: ${res.text}`);
    return revision;
  }

  /** Stops what this process started; a shared cluster stays up for the next test file. */
  async stop(): Promise<void> {
    if (this.control || this.reached) return;
    await stopProcess(this.apiserver);
    await stopProcess(this.etcd);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function controlUrl(urlFile: string): Promise<string> {
  const deadline = Date.now() + 480_000;
  while (!existsSync(urlFile)) {
    if (Date.now() > deadline) throw new Error(`the shared cluster did not start: no ${urlFile} after 8 min`);
    await sleep(500);
  }
  return readFileSync(urlFile, 'utf8').trim();
}

function tokenOf(dir: string, user: string): string {
  const line = readFileSync(join(dir, 'tokens.csv'), 'utf8').split('\n').find((l) => l.split(',')[1] === user);
  if (!line) throw new Error(`no token for ${user}`);
  return line.split(',')[0]!;
}
