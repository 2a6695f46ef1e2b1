// The real kube-proxy against the agent, in one boot and on the same data (issue 11): a real kube-apiserver on the
// host's loopback, filled through the API with the api-start fixture (populate), which the test VM reaches through
// its one forwarded port (harness forwardToHost). Inside the VM (kube-proxy-in-vm.ts) kube-proxy in IPVS mode and
// then the agent start against it; their memory and the time each takes from a slice write to its kernel change are
// measured there, on the VM's clock only. Filling the API server inside the VM under TCG would take too long.
// `node dist/test/bench/kube-proxy.js [services] [endpointsPerSlice] [rollouts]` prints the figures as JSON.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { hostClusterEnv, hostClusterForward, type HostClusterEnv } from '../support/host-cluster.js';
import { KubeCluster } from '../support/kube-cluster.js';
import { populate } from '../support/kube-objects.js';
import { until } from '../support/poll.js';
import { runInVm, tailLines } from '../vm/harness.js';
import { renderKubeProxy, type KubeProxyBench } from './results.js';

export const BENCH_NAMESPACE = 'bench';

/** What the VM side reads from its environment. */
export interface KubeProxyBenchEnv extends HostClusterEnv {
  BENCH_SERVICES: string;
  BENCH_ENDPOINTS_PER_SLICE: string;
  BENCH_ROLLOUTS: string;
  BENCH_POPULATE_SECONDS: string;
}

export interface KubeProxyBenchOptions {
  services: number;
  endpointsPerSlice: number;
  rollouts: number;
  /** Progress, the VM's output included. */
  say?: (text: string) => void;
}

const GO_UNITS: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 1e-3, us: 1e-6, 'µs': 1e-6, ns: 1e-9 };

/** A Go time.Duration as printed ("1m2.5s", "850.1ms", "3µs") in seconds. */
export function goDurationSeconds(text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) throw new Error(`not a Go duration: "${text}"`);
  return parts.reduce((sum, p) => sum + Number(p[1]) * GO_UNITS[p[2]!]!, 0);
}

/** The elapsed times of kube-proxy's completed IPv4 syncs, from its log lines (verbosity 4 and up). */
export function ipv4SyncSeconds(lines: readonly string[]): number[] {
  const out: number[] = [];
  for (const line of lines) {
    if (!line.includes('"syncProxyRules complete"') || !line.includes('ipFamily="IPv4"')) continue;
    const elapsed = /elapsed="([^"]+)"/.exec(line)?.[1];
    if (elapsed !== undefined) out.push(goDurationSeconds(elapsed));
  }
  return out;
}

export async function benchKubeProxy(o: KubeProxyBenchOptions): Promise<KubeProxyBench> {
  const say = o.say ?? ((text: string) => process.stderr.write(`${text}\n`));
  const cluster = await KubeCluster.start({ dedicated: true });
  try {
    const t0 = Date.now();
    await populate(cluster, { namespace: BENCH_NAMESPACE, services: o.services, endpointsPerSlice: o.endpointsPerSlice });
    const populateSeconds = (Date.now() - t0) / 1000;
    say(`populated ${o.services} Services / ${o.services * o.endpointsPerSlice} endpoints on the host in ${populateSeconds.toFixed(0)} s`);
    // Another VM on the same cores would be measured too (a shared 2-core host runs the CI suite's VMs).
    const otherVm = () => spawnSync('pgrep', ['-f', 'qemu-system-x86_64']).status === 0;
    if (otherVm()) {
      say('another QEMU VM is running: waiting (up to 20 min) until it has ended');
      await until(() => !otherVm(), 'the other QEMU VM to end', 20 * 60_000, 30_000).catch(() =>
        say('the other QEMU VM still runs after 20 min: booting anyway (the figures share the host with it)'),
      );
    }
    const env: KubeProxyBenchEnv = {
      ...hostClusterEnv(cluster),
      BENCH_SERVICES: String(o.services),
      BENCH_ENDPOINTS_PER_SLICE: String(o.endpointsPerSlice),
      BENCH_ROLLOUTS: String(o.rollouts),
      BENCH_POPULATE_SECONDS: String(populateSeconds),
    };
    const vm = await runInVm({
      script: '"$NODE" dist/test/bench/kube-proxy-in-vm.js || { rc=$?; dmesg | tail -n 20; exit "$rc"; }',
      env: { ...env },
      forwardToHost: hostClusterForward(cluster),
      // kube-proxy, the agent and this benchmark's own process each hold the 10,000 Services.
      memoryMiB: 3072,
      timeoutMs: 100 * 60_000,
      onOutput: (chunk) => process.stderr.write(chunk),
    });
    let results: KubeProxyBench;
    try {
      results = JSON.parse(readFileSync(join(vm.outDir, 'kube-proxy.json'), 'utf8')) as KubeProxyBench;
    } catch {
      throw new Error(`the VM wrote no figures (exit ${vm.exitCode}); artifacts in ${vm.outDir}\n${tailLines(vm.output, 30)}`);
    }
    say(`VM artifacts (kube-proxy's and the agent's logs) in ${vm.outDir}`);
    return results;
  } finally {
    await cluster.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [services = 10_000, perSlice = 10, rollouts = 5] = process.argv.slice(2).map(Number);
  const results = await benchKubeProxy({ services, endpointsPerSlice: perSlice, rollouts });
  process.stderr.write(renderKubeProxy(results));
  process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
}
