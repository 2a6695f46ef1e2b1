// `npm run bench`: one boot of the test VM runs test/bench/in-vm.ts, its agent phase against a real kube-apiserver
// on the host's loopback that this process fills with the fixture's Services before the boot; progress goes to
// stderr, the results table to stdout, and the figures as JSON to test/bench/results.json (or the path given as the
// only argument).
// `npm run bench -- --only read` measures only the reads (no agent): about a third of the time.
// Then, on the host, the API server's cost of one agent start against the real kube-apiserver (api-start.ts);
// `--only api` measures only that.
// Last, the real kube-proxy against the agent in one more boot, on the same Services in a real kube-apiserver on the
// host (kube-proxy.ts); `--only kube-proxy` measures only that, `--services N` / `--rollouts N` size it.
// `--only agent-memory [--node-options "--max-semi-space-size=4"]` boots once more for the agent's memory alone
// under the given V8 flags (agent-memory-in-vm.ts); each run is added to results.json's agentMemory.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { benchApiStart, renderApiStart, type ApiStartResults } from './api-start.js';
import { hostClusterEnv, hostClusterForward } from '../support/host-cluster.js';
import { KubeCluster } from '../support/kube-cluster.js';
import { createObjects, LARGE } from './fixture.js';
import { benchKubeProxy } from './kube-proxy.js';
import {
  renderAgentMemory,
  renderKubeProxy,
  renderTable,
  type AgentMemoryRun,
  type BenchResults,
  type KubeProxyBench,
} from './results.js';
import { repoRoot, runInVm, tailLines, type RunInVmResult } from '../vm/harness.js';

const VM_TIMEOUT_MS = 60 * 60_000;

const { values, positionals } = parseArgs({
  options: {
    only: { type: 'string' },
    services: { type: 'string' },
    rollouts: { type: 'string' },
    'node-options': { type: 'string' },
  },
  allowPositionals: true,
});
if (values.only !== undefined && !['read', 'api', 'kube-proxy', 'agent-memory'].includes(values.only)) {
  throw new Error(`--only ${values.only}: use read, api, kube-proxy or agent-memory`);
}
const jsonPath = resolve(positionals[0] ?? join(repoRoot(), 'test/bench/results.json'));
/** kubeProxyEarlier: the runs before the latest (an incomplete larger one says where the limit was). */
type Saved = BenchResults & {
  apiStart?: ApiStartResults;
  kubeProxy?: KubeProxyBench;
  kubeProxyEarlier?: KubeProxyBench[];
  agentMemory?: AgentMemoryRun[];
};
const previous = JSON.parse(readFileSync(jsonPath, 'utf8')) as Saved;

const API_SERVICES = 10_000;
const API_ENDPOINTS_PER_SLICE = 10;
async function apiStart(): Promise<ApiStartResults> {
  const figures = await benchApiStart(API_SERVICES, API_ENDPOINTS_PER_SLICE, 3);
  const results = { date: new Date().toISOString().slice(0, 10), services: API_SERVICES, endpoints: API_SERVICES * API_ENDPOINTS_PER_SLICE, figures };
  process.stdout.write(renderApiStart(results));
  return results;
}

/** Saved even when incomplete (its `failure` says what is missing); the exit code says so too. */
async function kubeProxy(saved: Saved): Promise<void> {
  const figures = await benchKubeProxy({
    services: Number(values.services ?? 10_000),
    endpointsPerSlice: API_ENDPOINTS_PER_SLICE,
    rollouts: Number(values.rollouts ?? 5),
  });
  process.stdout.write(renderKubeProxy(figures));
  const earlier = [...(saved.kubeProxyEarlier ?? []), ...(saved.kubeProxy ? [saved.kubeProxy] : [])];
  writeFileSync(jsonPath, `${JSON.stringify({ ...saved, kubeProxy: figures, kubeProxyEarlier: earlier }, null, 2)}\n`);
  if (figures.failure || figures.rollouts.some((r) => r.error)) process.exitCode = 1;
}

if (values.only === 'kube-proxy') {
  await kubeProxy(previous);
  process.exit();
}
if (values.only === 'api') {
  writeFileSync(jsonPath, `${JSON.stringify({ ...previous, apiStart: await apiStart() }, null, 2)}\n`);
  process.exit(0);
}
/**
 * Boots the VM for `script` (a file in dist/test/bench); with `withCluster`, against a kube-apiserver on the host's
 * loopback that holds the fixture's LARGE Services, filled before the boot.
 */
async function benchVm(script: string, env: Record<string, string>, withCluster: boolean): Promise<RunInVmResult> {
  const cluster = withCluster ? await KubeCluster.start({ dedicated: true }) : undefined;
  try {
    if (cluster) {
      const t0 = Date.now();
      await createObjects(cluster, LARGE);
      process.stderr.write(`created ${LARGE} Services and their slices on the host in ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    }
    return await runInVm({
      env: { ...env, ...(cluster ? hostClusterEnv(cluster) : {}) },
      ...(cluster ? { forwardToHost: hostClusterForward(cluster) } : {}),
      // The kernel's log tells of an OOM kill or a crash that the benchmark's own output cannot.
      script: `"$NODE" dist/test/bench/${script} || { rc=$?; dmesg | tail -n 20; exit "$rc"; }`,
      timeoutMs: VM_TIMEOUT_MS,
      onOutput: (chunk) => process.stderr.write(chunk),
    });
  } finally {
    await cluster?.stop();
  }
}

if (values.only === 'agent-memory') {
  const nodeOptions = values['node-options'] ?? '';
  const vm = await benchVm('agent-memory-in-vm.js', { AGENT_NODE_OPTIONS: nodeOptions }, true);
  if (vm.exitCode !== 0) throw new Error(`the agent-memory run failed in the VM (exit ${vm.exitCode}); artifacts in ${vm.outDir}`);
  const runs = [...(previous.agentMemory ?? []), JSON.parse(readFileSync(join(vm.outDir, 'agent-memory.json'), 'utf8')) as AgentMemoryRun];
  process.stdout.write(renderAgentMemory(runs));
  writeFileSync(jsonPath, `${JSON.stringify({ ...previous, agentMemory: runs }, null, 2)}\n`);
  process.exit(0);
}
const vm = await benchVm('in-vm.js', values.only ? { BENCH_ONLY: values.only } : {}, values.only !== 'read');
if (vm.exitCode !== 0) {
  process.stderr.write(`benchmark failed inside the VM (exit ${vm.exitCode}); artifacts in ${vm.outDir}\n${tailLines(vm.output, 20)}\n`);
  process.exit(1);
}
const results = JSON.parse(readFileSync(join(vm.outDir, 'bench.json'), 'utf8')) as BenchResults;
process.stdout.write(renderTable(results));
const apiStartResults = values.only === 'read' ? previous.apiStart : await apiStart();
const saved: Saved = { ...results, apiStart: apiStartResults, kubeProxy: previous.kubeProxy, kubeProxyEarlier: previous.kubeProxyEarlier };
writeFileSync(jsonPath, `${JSON.stringify(saved, null, 2)}\n`);
process.stderr.write(`figures written to ${jsonPath}; VM artifacts (CPU profile, if any) in ${vm.outDir}\n`);
if (values.only !== 'read') await kubeProxy(saved);
