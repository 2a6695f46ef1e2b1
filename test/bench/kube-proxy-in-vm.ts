// Inside the test VM (kube-proxy.ts boots it): the real kube-proxy in IPVS mode and then the agent, against the
// host's kube-apiserver reached at HOST_FORWARD_ADDRESS. Every time here is read from this VM's clock: the slice
// writes go out from this process too, so a write and the kernel change it causes are measured on one clock.
// Writes the figures to $VM_OUT/kube-proxy.json, complete or not; a phase that fails is named in `failure`.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { release } from 'node:os';
import { join } from 'node:path';
import { IpvsClient } from '../../src/ipvs/client.js';
import { readTable } from '../../src/ipvs/table.js';
import type { ServiceKey } from '../../src/ipvs/types.js';
import { reachHostCluster } from '../support/host-cluster.js';
import type { KubeCluster } from '../support/kube-cluster.js';
import { KubeProxy, kubeProxyVersion } from '../support/kube-proxy.js';
import { addDummy, ip } from '../support/netns.js';
import { until } from '../support/poll.js';
import { AgentProcess, metricValue, processMemory, resyncSecondsSum } from './agent-process.js';
import { entriesTouchedByKubeProxy, kubeProxyIpsetEntries, loadOnceCreated } from './kube-proxy-ipsets.js';
import { BENCH_NAMESPACE, ipv4SyncSeconds, type KubeProxyBenchEnv } from './kube-proxy.js';
import type { KubeProxyBench, RolloutSample } from './results.js';

const env = process.env as Partial<KubeProxyBenchEnv> & NodeJS.ProcessEnv;
const SERVICES = Number(env.BENCH_SERVICES);
const PER_SLICE = Number(env.BENCH_ENDPOINTS_PER_SLICE);
const ROLLOUTS = Number(env.BENCH_ROLLOUTS);
/**
 * kube-proxy's first sync at 10,000 Services, its ipset entries loaded for it: every virtual service was in the
 * kernel within 25 minutes in a run where it then went on adding entries one execution at a time.
 */
const FULL_TABLE_TIMEOUT_MS = 45 * 60_000;
const AGENT_SYNC_TIMEOUT_MS = 15 * 60_000;
/** One kube-proxy sync of the whole table, behind at most one already running. */
const WEIGHT_ZERO_TIMEOUT_MS = 20 * 60_000;
const DELETION_TIMEOUT_MS = 5 * 60_000;
const KERNEL_POLL_MS = 15;
/** How long the table stays untouched before kube-proxy's memory is read. */
const SETTLE_MS = 30_000;
const TARGET_PORT = 8080;
/**
 * kube-proxy deletes a real server that has no connections at once instead of setting it to weight 0
 * (graceful_termination.go deleteRsFunc). Connection attempts to the virtual service keep an IPVS entry on each real
 * server (counted as InactConn; the endpoint addresses lead nowhere, so they stay in SYN state); a fresh round every
 * 20 s keeps them above 0 through syncs of minutes and kube-proxy's one-minute checks, until the agent deletes.
 */
const KEEP_ALIVE_EVERY_MS = 20_000;
const ATTEMPT_LIFETIME_MS = 60_000;

function keepConnectionEntries(vip: string): () => void {
  const sockets = new Set<Socket>();
  const round = () => {
    for (let n = 0; n < PER_SLICE; n++) {
      const socket = connect({ host: vip, port: 80 });
      socket.on('error', () => {});
      sockets.add(socket);
      setTimeout(() => {
        socket.destroy();
        sockets.delete(socket);
      }, ATTEMPT_LIFETIME_MS).unref();
    }
  };
  round();
  const timer = setInterval(round, KEEP_ALIVE_EVERY_MS);
  return () => {
    clearInterval(timer);
    for (const socket of sockets) socket.destroy();
  };
}

const out = process.env.VM_OUT ?? '/tmp';
const started = performance.now();
const say = (text: string): void => {
  process.stderr.write(`[kube-proxy bench +${((performance.now() - started) / 1000).toFixed(0)}s] ${text}\n`);
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const results: KubeProxyBench = {
  date: new Date().toISOString().slice(0, 10),
  kernel: release(),
  kubeProxyVersion: kubeProxyVersion(),
  services: SERVICES,
  endpoints: SERVICES * PER_SLICE,
  populateSeconds: Number(env.BENCH_POPULATE_SECONDS),
  kubeProxy: { servicesProgrammed: 0, syncSeconds: [] },
  agent: {},
  rollouts: [],
  totalSeconds: 0,
};

const histogram = (text: string) => ({
  sum: metricValue(text, 'ipvs_janitor_event_to_deletion_seconds_sum'),
  count: metricValue(text, 'ipvs_janitor_event_to_deletion_seconds_count'),
});

const vipOf = (clusterIP: string): ServiceKey => ({ kind: 'address', family: 'ipv4', protocol: 'tcp', address: clusterIP, port: 80 });

/** Every bench Service's cluster IP, from one list. */
async function clusterIPs(cluster: KubeCluster): Promise<Map<string, string>> {
  const list = await cluster.call<{ items: { metadata: { name: string }; spec: { clusterIP: string } }[] }>(
    'GET',
    `/api/v1/namespaces/${BENCH_NAMESPACE}/services`,
  );
  return new Map(list.items.map((s) => [s.metadata.name, s.spec.clusterIP]));
}

/** Waits until the kernel holds every bench virtual service with all its real servers; records how far it got. */
async function waitForFullTable(client: IpvsClient, ips: ReadonlySet<string>, deadline: number): Promise<void> {
  const present = async () => (await client.listServices()).filter((s) => s.key.kind === 'address' && ips.has(s.key.address)).length;
  for (;;) {
    results.kubeProxy.servicesProgrammed = await present();
    if (results.kubeProxy.servicesProgrammed === ips.size) {
      const table = await readTable(client);
      const realServers = table.entries
        .filter((e) => e.service.key.kind === 'address' && ips.has(e.service.key.address))
        .reduce((n, e) => n + e.destinations.length, 0);
      if (realServers === ips.size * PER_SLICE) return;
      say(`all ${ips.size} virtual services present, ${realServers} of ${ips.size * PER_SLICE} real servers`);
    } else {
      say(`kernel: ${results.kubeProxy.servicesProgrammed} of ${ips.size} virtual services`);
    }
    if (Date.now() > deadline) {
      throw new Error(
        `kube-proxy did not program the full table within ${FULL_TABLE_TIMEOUT_MS / 60_000} min: ` +
          `${results.kubeProxy.servicesProgrammed} of ${ips.size} virtual services in the kernel`,
      );
    }
    // Each look at the kernel takes CPU from the sync it waits for.
    await sleep(10_000);
  }
}

interface Slice {
  metadata: { name: string; resourceVersion: string };
  endpoints: { addresses: string[]; conditions: Record<string, boolean> }[];
}

/** PUTs the slice; returns when the PUT went out and its round trip (ms, VM clock). */
async function writeSlice(cluster: KubeCluster, slice: Slice): Promise<{ sentAt: number; sentWall: number; roundTripMs: number }> {
  const sentAt = performance.now();
  const sentWall = Date.now();
  await cluster.call('PUT', `/apis/discovery.k8s.io/v1/namespaces/${BENCH_NAMESPACE}/endpointslices/${slice.metadata.name}`, slice);
  return { sentAt, sentWall, roundTripMs: performance.now() - sentAt };
}

async function rollout(cluster: KubeCluster, client: IpvsClient, proxy: KubeProxy, agent: AgentProcess, i: number, clusterIP: string): Promise<void> {
  const name = `svc-${i}`;
  const slicePath = `/apis/discovery.k8s.io/v1/namespaces/${BENCH_NAMESPACE}/endpointslices/${name}-1`;
  const slice = await cluster.call<Slice>('GET', slicePath);
  const address = slice.endpoints[0]!.addresses[0]!;
  const sample: RolloutSample = { service: `${BENCH_NAMESPACE}/${name}`, realServer: `${address}:${TARGET_PORT}`, writeMs: [] };
  results.rollouts.push(sample);
  const key = vipOf(clusterIP);
  const weight = async () => (await client.listDestinationWeights(key)).find((d) => d.address === address)?.weight;
  const stopKeeping = keepConnectionEntries(clusterIP);
  try {
    if ((await weight()) !== 1) throw new Error(`${sample.realServer} is not at weight 1 in the kernel before the rollout`);
    await until(async () => {
      const dest = (await client.listDestinations(key)).find((d) => d.address === address);
      return dest !== undefined && dest.activeConnections + dest.inactiveConnections > 0;
    }, `a connection entry on ${sample.realServer}`, 30_000, 100);
    slice.endpoints[0]!.conditions = { ready: false, serving: true, terminating: true };
    const terminating = await writeSlice(cluster, slice);
    sample.writeMs.push(terminating.roundTripMs);
    await until(async () => (await weight()) === 0, `kube-proxy setting ${sample.realServer} to weight 0`, WEIGHT_ZERO_TIMEOUT_MS, KERNEL_POLL_MS);
    sample.kubeProxyWeightZeroMs = performance.now() - terminating.sentAt;
    say(`${name}: kube-proxy set weight 0 ${(sample.kubeProxyWeightZeroMs / 1000).toFixed(2)} s after the slice said terminating`);

    const current = await cluster.call<Slice>('GET', slicePath);
    current.endpoints = current.endpoints.filter((e) => e.addresses[0] !== address);
    const deleted = agent.waitFor(
      (l) => l.message === 'deleted real server' && l.realServer === sample.realServer,
      `the deletion of ${sample.realServer}`,
      DELETION_TIMEOUT_MS,
    );
    deleted.catch(() => {});
    const mark = proxy.lines.length;
    const before = histogram(await agent.metrics());
    const removal = await writeSlice(cluster, current);
    sample.writeMs.push(removal.roundTripMs);
    await until(async () => (await weight()) === undefined, `the deletion of ${sample.realServer}`, DELETION_TIMEOUT_MS, KERNEL_POLL_MS);
    sample.agentDeletionMs = performance.now() - removal.sentAt;
    const line = await deleted;
    sample.agentLogMs = Date.parse(String(line.timestamp)) - removal.sentWall;
    sample.trigger = String(line.trigger);
    const after = histogram(await agent.metrics());
    // One observation: the event that led to this deletion (a deletion by the resync records none).
    if (after.count - before.count === 1) sample.agentEventToDeletionMs = (after.sum - before.sum) * 1000;
    say(`${name}: the agent deleted it ${sample.agentDeletionMs.toFixed(0)} ms after the endpoint left the slice (trigger ${sample.trigger})`);
    // The next rollout starts once kube-proxy has taken this one in, so that it does not wait behind this sync.
    await proxy.waitForSync(mark, WEIGHT_ZERO_TIMEOUT_MS);
  } catch (err) {
    sample.error = err instanceof Error ? err.message.split('\n')[0] : String(err);
    say(`${name}: ${sample.error}`);
  } finally {
    stopKeeping();
  }
}

async function main(): Promise<void> {
  // The endpoints (populate: 10.100.0.1 onwards) get a route, as the kernel wants of a masq real server's address.
  addDummy('bench0', []);
  ip('route', 'add', '10.100.0.0/14', 'dev', 'bench0');
  const cluster = await reachHostCluster(env);
  const ips = await clusterIPs(cluster);
  if (ips.size !== SERVICES) throw new Error(`the API server holds ${ips.size} bench Services, expected ${SERVICES}`);
  const vips = new Set(ips.values());
  const client = await IpvsClient.open();
  const dir = mkdtempSync(join(process.env.TMPDIR ?? '/tmp', 'kube-proxy-'));
  const entries = await kubeProxyIpsetEntries(cluster);
  say(`starting kube-proxy (mode ipvs) for ${SERVICES} Services / ${SERVICES * PER_SLICE} endpoints`);
  const proxyStart = performance.now();
  const deadline = Date.now() + FULL_TABLE_TIMEOUT_MS;
  const seeding = loadOnceCreated(entries, deadline).then(
    (seconds) => {
      results.kubeProxy.ipsetSeed = { entries: entries.length, loadSeconds: seconds };
      say(`${entries.length} ipset entries loaded into kube-proxy's sets in ${seconds.toFixed(1)} s`);
    },
    (err: unknown) => {
      throw new Error(`loading kube-proxy's ipset entries: ${err instanceof Error ? err.message : String(err)}`);
    },
  );
  seeding.catch(() => {});
  let proxy: KubeProxy;
  try {
    proxy = await KubeProxy.start({
      cluster,
      dir,
      clusterCIDR: '10.244.0.0/16',
      readyTimeoutMs: FULL_TABLE_TIMEOUT_MS,
      // Its errors and sync ends show progress; the whole log (verbosity 5) goes to $VM_OUT/kube-proxy.log.
      logTo: (line) => {
        if (/^[EF]\d{4} /.test(line) || line.includes('"syncProxyRules complete"')) say(`kube-proxy: ${line.slice(0, 300)}`);
      },
    });
  } catch (err) {
    // start() stopped it; what it programmed stays in the kernel.
    results.kubeProxy.servicesProgrammed = (await client.listServices()).filter((v) => v.key.kind === 'address' && vips.has(v.key.address)).length;
    throw err;
  }
  let agent: AgentProcess | undefined;
  try {
    await seeding;
    await waitForFullTable(client, vips, deadline);
    results.kubeProxy.firstSyncSeconds = (performance.now() - proxyStart) / 1000;
    Object.assign(results.kubeProxy.ipsetSeed!, entriesTouchedByKubeProxy(proxy));
    say(`kube-proxy: full table in the kernel ${results.kubeProxy.firstSyncSeconds.toFixed(0)} s after its start`);
    await sleep(SETTLE_MS);
    Object.assign(results.kubeProxy, processMemory(proxy.pid!));
    say(`kube-proxy: VmRSS ${results.kubeProxy.rssMiB!.toFixed(0)} MiB, VmHWM ${results.kubeProxy.hwmMiB!.toFixed(0)} MiB`);

    const agentStart = performance.now();
    agent = AgentProcess.start(
      ['--kubeconfig', cluster.kubeconfig(cluster.users.admin), '--node-name', 'vm-node', '--policy', 'graceful',
        '--nodeport-addresses', '127.0.0.1', '--metrics-address', '127.0.0.1:0'],
      say,
    );
    await agent.waitFor((l) => l.message === 'informers synced: full resync', 'informers synced', AGENT_SYNC_TIMEOUT_MS);
    results.agent.syncSeconds = (performance.now() - agentStart) / 1000;
    results.agent.resyncSeconds = resyncSecondsSum(await agent.afterResyncs(1, AGENT_SYNC_TIMEOUT_MS));
    const { rssMiB, hwmMiB } = agent.memory();
    Object.assign(results.agent, { rssMiB, hwmMiB });
    say(`agent: synced in ${results.agent.syncSeconds.toFixed(0)} s, full resync ${results.agent.resyncSeconds.toFixed(1)} s; VmRSS ${rssMiB.toFixed(0)} MiB, VmHWM ${hwmMiB.toFixed(0)} MiB`);

    for (let r = 0; r < ROLLOUTS; r++) {
      const i = Math.floor(((r + 0.5) * SERVICES) / ROLLOUTS);
      await rollout(cluster, client, proxy, agent, i, ips.get(`svc-${i}`)!);
    }
    results.kubeProxy.rssEndMiB = processMemory(proxy.pid!).rssMiB;
    results.agent.rssEndMiB = agent.memory().rssMiB;
  } catch (err) {
    results.failure = err instanceof Error ? err.message.split('\n')[0] : String(err);
    say(`FAILED: ${results.failure}`);
    if (agent) say(agent.describe());
  } finally {
    results.kubeProxy.syncSeconds = ipv4SyncSeconds(proxy.lines.map((l) => l.text));
    writeFileSync(join(out, 'kube-proxy.log'), proxy.lines.map((l) => l.text).join('\n'));
    await agent?.stop();
    await proxy.stop();
    client.close();
  }
}

try {
  await main();
} catch (err) {
  results.failure ??= err instanceof Error ? err.message.split('\n')[0] : String(err);
  say(`FAILED: ${err instanceof Error ? err.stack : String(err)}`);
}
results.totalSeconds = (performance.now() - started) / 1000;
writeFileSync(join(out, 'kube-proxy.json'), `${JSON.stringify(results, null, 2)}\n`);
say(`done in ${results.totalSeconds.toFixed(0)} s${results.failure ? `, incomplete: ${results.failure}` : ''}`);
