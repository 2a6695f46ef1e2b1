// The API server's cost of one agent start, read from the real kube-apiserver's own /metrics: the paginated
// consistent list the agent used to make (pages of 100, then a watch from the list's version), a list from the
// watch cache (resourceVersion=0, the fallback start), and the start it makes now (ClusterInformers: a streaming
// list per resource). Runs on the host:
// `node --expose-gc dist/test/bench/api-start.js [services] [endpointsPerSlice] [runs]`
// (default 10000 10 3); the figures go to stdout as JSON. Populating 10,000 Services and slices through the API
// takes minutes on a loaded 2-core machine.
import { pathToFileURL } from 'node:url';
import { loadKubeConfig } from '../../src/k8s/config.js';
import { ClusterInformers } from '../../src/k8s/informers.js';
import { toServiceRecord, toSliceRecord } from '../../src/k8s/records.js';
import { apiGet, readJson } from '../../src/k8s/transport.js';
import { KubeCluster } from '../support/kube-cluster.js';
import { populate } from '../support/kube-objects.js';

export type StartMode = 'paginated-list' | 'watch-cache-list' | 'streaming-list';

export interface ApiStartFigures {
  mode: StartMode;
  /** LIST and WATCH requests for Services and EndpointSlices. */
  requests: number;
  /** Bytes the API server sent for them (apiserver_response_sizes_sum). */
  bytes: number;
  /** kube-apiserver CPU seconds (process_cpu_seconds_total) from start to synced and the request's end. */
  apiserverCpuSeconds: number;
  /** From the start until the caches were complete. */
  timeToSyncedMs: number;
  /** Memory kube-apiserver allocated meanwhile (go_memstats_alloc_bytes_total): its garbage per agent start. */
  apiserverAllocatedMb: number;
  /** Peak V8 heap of this process (the client) during the start above its heap before it. */
  clientPeakHeapMb: number;
}

const RESOURCES = ['services', 'endpointslices'] as const;
const PATHS = { services: '/api/v1/services', endpointslices: '/apis/discovery.k8s.io/v1/endpointslices' } as const;

interface Snapshot {
  requests: number;
  bytes: number;
  cpu: number;
  allocated: number;
}

/** Sums the samples of `metric` whose labels name one of our resources and, for request metrics, LIST or WATCH. */
function sum(text: string, metric: string): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    if (!RESOURCES.some((r) => line.includes(`resource="${r}"`))) continue;
    if (line.includes('verb=') && !/verb="(LIST|WATCH)"/.test(line)) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

async function snapshot(cluster: KubeCluster): Promise<Snapshot> {
  const text = (await cluster.request('GET', '/metrics')).text;
  const gauge = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  return {
    requests: sum(text, 'apiserver_request_total'),
    // A watch's response size is recorded when it ends: measureStart closes them and waits before reading.
    bytes: sum(text, 'apiserver_response_sizes_sum'),
    cpu: gauge('process_cpu_seconds_total'),
    allocated: gauge('go_memstats_alloc_bytes_total'),
  };
}

/** The agent's former start: consistent pages of 100, converted page by page, then a watch from the version. */
async function listStart(cluster: KubeCluster, mode: StartMode): Promise<void> {
  const kc = loadKubeConfig(cluster.kubeconfig(cluster.users.admin));
  const abort = new AbortController();
  await Promise.all(
    RESOURCES.map(async (resource) => {
      const convert = resource === 'services' ? toServiceRecord : toSliceRecord;
      const kept: unknown[] = [];
      let query: Record<string, string | number> = { limit: 100, ...(mode === 'watch-cache-list' ? { resourceVersion: '0' } : {}) };
      let version = '';
      for (;;) {
        const page = await readJson<{ metadata: { resourceVersion: string; continue?: string }; items: never[] }>(
          await apiGet(kc, PATHS[resource], query, abort.signal),
          () => {},
        );
        for (const item of page.items) kept.push(convert(item));
        version = page.metadata.resourceVersion;
        if (!page.metadata.continue) break;
        query = { limit: 100, continue: page.metadata.continue };
      }
      // The former agent called itself synced once this watch answered with headers.
      const watch = await apiGet(kc, PATHS[resource], { watch: 1, resourceVersion: version, allowWatchBookmarks: true }, abort.signal);
      watch.on('error', () => {});
    }),
  );
  abort.abort();
}

async function informerStart(cluster: KubeCluster): Promise<void> {
  const informers = new ClusterInformers(loadKubeConfig(cluster.kubeconfig(cluster.users.admin)));
  const synced = new Promise<void>((resolve) => informers.once('synced', resolve));
  informers.start();
  await synced;
  await informers.stop();
}

const heapMb = () => process.memoryUsage().heapUsed / 2 ** 20;

export async function measureStart(cluster: KubeCluster, mode: StartMode): Promise<ApiStartFigures> {
  // Run with --expose-gc, so that garbage of the previous start does not count.
  (globalThis as { gc?: () => void }).gc?.();
  const before = await snapshot(cluster);
  const heap0 = heapMb();
  let heapPeak = heap0;
  const sampler = setInterval(() => (heapPeak = Math.max(heapPeak, heapMb())), 20);
  const started = performance.now();
  await (mode === 'streaming-list' ? informerStart(cluster) : listStart(cluster, mode));
  const timeToSyncedMs = Math.round(performance.now() - started);
  clearInterval(sampler);
  // Let the server finish the requests the client closed, so their sizes are recorded.
  await new Promise((r) => setTimeout(r, 1000));
  const after = await snapshot(cluster);
  return {
    mode,
    requests: after.requests - before.requests,
    bytes: after.bytes - before.bytes,
    apiserverCpuSeconds: Math.round((after.cpu - before.cpu) * 100) / 100,
    timeToSyncedMs,
    apiserverAllocatedMb: Math.round((after.allocated - before.allocated) / 2 ** 20),
    clientPeakHeapMb: Math.round(heapPeak - heap0),
  };
}

export interface ApiStartResults {
  date: string;
  services: number;
  endpoints: number;
  figures: ApiStartFigures[];
}

const START_NAMES: Record<StartMode, string> = {
  'paginated-list': 'paginated consistent list (pages of 100), then watch: the old start',
  'watch-cache-list': 'one list from the watch cache (resourceVersion=0), then watch: the fallback',
  'streaming-list': 'streaming list (sendInitialEvents), synced at initial-events-end: the start now',
};

export function renderApiStart(r: ApiStartResults): string {
  return [
    `API server cost of one agent start, ${r.services.toLocaleString('en')} Services / ${r.endpoints.toLocaleString('en')} endpoints, ` +
      `real kube-apiserver v1.37.2 on the host, ${r.date} (median of 3 by CPU; from the server's own /metrics):`,
    '',
    '| start | requests | bytes sent | kube-apiserver CPU | kube-apiserver allocated | client peak heap | time to synced |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...r.figures.map(
      (f) =>
        `| ${START_NAMES[f.mode]} | ${f.requests} | ${(f.bytes / 1e6).toFixed(1)} MB | ${f.apiserverCpuSeconds.toFixed(2)} s | ` +
        `${f.apiserverAllocatedMb} MB | ${f.clientPeakHeapMb} MB | ${(f.timeToSyncedMs / 1000).toFixed(1)} s |`,
    ),
    '',
  ].join('\n');
}

/** Each mode `runs` times, interleaved, on one populated cluster; the median run of each mode by CPU. */
export async function benchApiStart(services: number, endpointsPerSlice: number, runs: number): Promise<ApiStartFigures[]> {
  const cluster = await KubeCluster.start({ dedicated: true });
  try {
    const t0 = Date.now();
    await populate(cluster, { namespace: 'bench', services, endpointsPerSlice });
    process.stderr.write(`populated ${services} Services / ${services * endpointsPerSlice} endpoints in ${Date.now() - t0} ms\n`);
    const modes: StartMode[] = ['paginated-list', 'watch-cache-list', 'streaming-list'];
    const all = new Map<StartMode, ApiStartFigures[]>(modes.map((m) => [m, []]));
    for (let run = 0; run < runs; run++) {
      for (const mode of modes) {
        const figures = await measureStart(cluster, mode);
        process.stderr.write(`${JSON.stringify(figures)}\n`);
        all.get(mode)!.push(figures);
      }
    }
    return modes.map((mode) => {
      const sorted = [...all.get(mode)!].sort((a, b) => a.apiserverCpuSeconds - b.apiserverCpuSeconds);
      return sorted[Math.floor(sorted.length / 2)]!;
    });
  } finally {
    await cluster.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [services = 10_000, perSlice = 10, runs = 3] = process.argv.slice(2).map(Number);
  const figures = await benchApiStart(services, perSlice, runs);
  process.stdout.write(`${JSON.stringify({ services, endpoints: services * perSlice, figures }, null, 2)}\n`);
}
