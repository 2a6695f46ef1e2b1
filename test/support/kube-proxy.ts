// The real kube-proxy (.tools/bin/kube-proxy, built by .ci/build-kube) in IPVS mode, for tests inside the test VM:
// started from a KubeProxyConfiguration file against a KubeCluster, its sysctls left as it sets them, its log
// kept (text format, verbosity 5: the level at which its graceful termination says what it does with each
// real server). Its syncs take tens of seconds under TCG, so callers wait for the kernel with until() (poll.ts), never
// for a fixed delay. See shared/docs/real-kubernetes.md.
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { TOOLS_BIN, type KubeCluster } from './kube-cluster.js';

export const KUBE_PROXY = join(TOOLS_BIN, 'kube-proxy');

export interface KubeProxyOptions {
  cluster: KubeCluster;
  /** Where the configuration file goes (the cluster's data dir by default). */
  dir?: string;
  /** The Node kube-proxy runs as (hostnameOverride); created in the API with InternalIP 127.0.0.1 if missing. */
  nodeName?: string;
  /** Traffic from outside this range to a ClusterIP is masqueraded. */
  clusterCIDR: string;
  /** How long the first sync may take (tens of seconds to minutes under TCG). Default 5 minutes. */
  readyTimeoutMs?: number;
  /** Every log line, as it arrives. */
  logTo?: (line: string) => void;
  /** os.setPriority() of kube-proxy, inherited by the iptables and ipset commands it runs (lower is favoured). */
  priority?: number;
}

/** One line of kube-proxy's graceful termination about a real server ("<vip>:<port>/<proto>/<ip>:<port>"). */
export interface RealServerLogLine {
  /** Date.now() when the line arrived. */
  at: number;
  message: string;
  realServer: string;
}

/** What kube-proxy's graceful termination says about real servers (pkg/proxy/ipvs/graceful_termination.go). */
export const GRACEFUL_MESSAGES = [
  'Adding real server to graceful delete real server list',
  'Skip deleting real server till all connection have expired',
  'Deleting real server',
  'Removed real server from graceful delete real server list',
  'Error in deleting real server',
] as const;

/** Log lines that mean a sync did not do all it meant to (pkg/proxy/ipvs/proxier.go). */
export const SYNC_FAILURES = [
  'Failed to sync endpoint for service',
  'Failed to sync service',
  'Failed to add destination',
  'Failed to delete destination',
  'Failed to update destination',
  'Failed to add IPVS service',
  'Failed to delete service',
  'Failed to execute iptables-restore',
  'Failed to delete endpoint in gracefulDeleteQueue',
] as const;

/** Logged right after a sync has updated its endpoints map: the moment it takes its view. */
const SYNC_START = 'Syncing ipvs proxier rules';
const SYNC_DONE = 'syncProxyRules complete';

export function kubeProxyProblems(): string[] {
  return existsSync(KUBE_PROXY) ? [] : [`${KUBE_PROXY} is missing (run .ci/setup)`];
}

/** `kube-proxy --version`, e.g. "Kubernetes v1.37.2". */
export function kubeProxyVersion(): string {
  return execFileSync(KUBE_PROXY, ['--version'], { encoding: 'utf8' }).trim();
}

/** Resolves at the next call of any function in `wake`, or at `deadline`. */
export function nextWake(wake: Set<() => void>, deadline: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      wake.delete(done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, deadline - Date.now()) + 1);
    wake.add(done);
  });
}

function quoted(line: string, key: string): string | undefined {
  return new RegExp(`${key}="([^"]*)"`).exec(line)?.[1];
}

/** The klog message of a text-format line: `I1202 12:57:08.123456 1234 file.go:185] "Message" key="value"`. */
export function klogMessage(line: string): string | undefined {
  return /^[IWEF]\d{4} [\d:.]+\s+\d+ [^\]]+\] "((?:[^"\\]|\\.)*)"/.exec(line)?.[1];
}

export class KubeProxy {
  /** Every log line with its arrival time. */
  readonly lines: { at: number; text: string }[] = [];
  private readonly wake = new Set<() => void>();
  private exit: string | undefined;

  private constructor(
    private readonly child: ChildProcess,
    readonly configFile: string,
  ) {
    const collect = (input: NodeJS.ReadableStream) =>
      createInterface({ input }).on('line', (text) => {
        this.lines.push({ at: Date.now(), text });
        this.wake.forEach((w) => w());
      });
    collect(child.stdout!);
    collect(child.stderr!);
    child.once('exit', (code, signal) => {
      this.exit = `kube-proxy exited (${signal ?? code})`;
      this.wake.forEach((w) => w());
    });
  }

  static async start(options: KubeProxyOptions): Promise<KubeProxy> {
    const problems = kubeProxyProblems();
    if (problems.length > 0) throw new Error(`cannot start kube-proxy: ${problems.join('; ')}`);
    const { cluster } = options;
    const nodeName = options.nodeName ?? 'vm-node';
    // Without a Node that has an address kube-proxy waits 30 s for one, then goes on without.
    const node = await cluster.request('POST', '/api/v1/nodes', {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: nodeName, labels: { 'kubernetes.io/hostname': nodeName } },
      status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }, { type: 'Hostname', address: nodeName }] },
    });
    if (node.status !== 201 && node.status !== 409) throw new Error(`create Node ${nodeName}: ${node.status} ${node.text.slice(0, 300)}`);
    const configFile = join(options.dir ?? cluster.dir, 'kube-proxy.yaml');
    const config = {
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      mode: 'ipvs',
      clientConnection: { kubeconfig: cluster.kubeconfig(cluster.users.admin) },
      hostnameOverride: nodeName,
      clusterCIDR: options.clusterCIDR,
      bindAddress: '127.0.0.1',
      healthzBindAddress: '127.0.0.1:10256',
      metricsBindAddress: '127.0.0.1:10249',
      // The default 30 s is shorter than one sync under TCG (30-50 s measured), so kube-proxy would sync back to
      // back and every change would wait for the sync in progress. Changes still trigger a sync at once.
      ipvs: { scheduler: 'rr', syncPeriod: '5m' },
      logging: { format: 'text', verbosity: 5 },
    };
    // JSON is valid YAML.
    writeFileSync(configFile, `${JSON.stringify(config, null, 2)}\n`);
    const child = spawn(KUBE_PROXY, [`--config=${configFile}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    if (options.priority !== undefined && child.pid !== undefined) setPriority(child.pid, options.priority);
    const proxy = new KubeProxy(child, configFile);
    if (options.logTo) {
      const forward = options.logTo;
      let next = 0;
      proxy.wake.add(() => {
        for (; next < proxy.lines.length; next++) forward(proxy.lines[next]!.text);
      });
    }
    try {
      await proxy.waitForLog((text) => text.includes(SYNC_DONE), 'its first sync', options.readyTimeoutMs ?? 5 * 60_000);
    } catch (err) {
      await proxy.stop();
      throw err;
    }
    return proxy;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Resolves with the first line at index `from` or later that passes `test`; rejects on exit or timeout. */
  async waitForLog(test: (text: string) => boolean, what: string, timeoutMs: number, from = 0): Promise<{ at: number; text: string; index: number }> {
    const deadline = Date.now() + timeoutMs;
    // Each line is tested once: at 100,000 endpoints kube-proxy logs hundreds of thousands of lines, and rescanning
    // them on every new one would take the VM's CPU from kube-proxy itself.
    for (let index = from; ; ) {
      for (; index < this.lines.length; index++) {
        if (test(this.lines[index]!.text)) return { ...this.lines[index]!, index };
      }
      const why = this.exit ?? (Date.now() > deadline ? `no ${what} within ${Math.round(timeoutMs / 1000)} s` : undefined);
      if (why) throw new Error(`kube-proxy: ${why}; last lines:\n${this.lines.slice(-25).map((l) => l.text).join('\n')}`);
      await nextWake(this.wake, deadline);
    }
  }

  /**
   * Waits for an IPv4 sync that started at line `from` or later and for its end; returns when it ended. A change
   * made in the API just before `from` may still be on its way through kube-proxy's informers: wait for its
   * effect in the kernel when there is one.
   */
  async waitForSync(from: number, timeoutMs: number): Promise<number> {
    const v4 = (t: string) => t.includes('ipFamily="IPv4"');
    const started = await this.waitForLog((t) => v4(t) && t.includes(SYNC_START), 'sync start', timeoutMs, from);
    const done = await this.waitForLog((t) => v4(t) && t.includes(SYNC_DONE), 'sync end', timeoutMs, started.index + 1);
    return done.at;
  }

  /**
   * The IPv4 syncs whose start is at line `from` or later: when each took its view of the endpoints (the "Syncing"
   * line follows right after it updates its endpoints map) and when it ended (Infinity while it runs).
   */
  syncs(from = 0): { viewAt: number; endAt: number }[] {
    const out: { viewAt: number; endAt: number }[] = [];
    for (const { at, text } of this.lines.slice(from)) {
      if (!text.includes('ipFamily="IPv4"')) continue;
      if (text.includes(SYNC_START)) out.push({ viewAt: at, endAt: Number.POSITIVE_INFINITY });
      else if (text.includes(SYNC_DONE) && out.length > 0 && out.at(-1)!.endAt === Number.POSITIVE_INFINITY) out.at(-1)!.endAt = at;
    }
    return out;
  }

  /** Graceful-termination lines about real servers since line `from` (all when omitted). */
  realServerLines(from = 0): RealServerLogLine[] {
    const out: RealServerLogLine[] = [];
    for (const { at, text } of this.lines.slice(from)) {
      const message = klogMessage(text);
      if (!message || !(GRACEFUL_MESSAGES as readonly string[]).includes(message)) continue;
      // "Error in deleting real server" names it `realServer` too (the list key).
      const realServer = quoted(text, 'realServer');
      if (realServer !== undefined) out.push({ at, message, realServer });
    }
    return out;
  }

  /** Lines whose message is one of SYNC_FAILURES. */
  syncFailures(from = 0): string[] {
    return this.lines
      .slice(from)
      .map((l) => l.text)
      .filter((t) => (SYNC_FAILURES as readonly string[]).includes(klogMessage(t) ?? ''));
  }

  /** Lines whose message is `message`. */
  count(message: string, from = 0): number {
    return this.lines.slice(from).filter((l) => klogMessage(l.text) === message).length;
  }

  async stop(): Promise<void> {
    if (this.exit) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
