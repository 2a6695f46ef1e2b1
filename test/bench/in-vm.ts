// The benchmark's measurements, run inside the test VM that test/bench/main.ts boots once. Every figure is a time
// from this boot compared with another time from this boot. Progress goes to stderr, the figures to
// $VM_OUT/bench.json.
import { spawnSync } from 'node:child_process';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { IpvsClient } from '../../src/ipvs/client.js';
import { readTable } from '../../src/ipvs/table.js';
import { reachHostCluster } from '../support/host-cluster.js';
import type { KubeCluster } from '../support/kube-cluster.js';
import { inParallel } from '../support/kube-objects.js';
import { addDummy, ip } from '../support/netns.js';
import { AgentProcess, metricValue, resyncSecondsSum } from './agent-process.js';
import {
  addServices,
  benchAgentArgs,
  destination,
  DESTINATIONS,
  ENDPOINT_RANGE,
  LARGE,
  serviceKey,
  servicePathOf,
  serviceName,
  slice,
  slicePathOf,
} from './fixture.js';
import { KernelTableWriter } from './kernel-table.js';
import { profile } from './profile.js';
import {
  distribution,
  type BenchResults,
  type LatencyFigures,
  type ReadFigures,
} from './results.js';

const SMALL_READ = 1_000;
const SMALL_LATENCY = 100;
/** Per table size: the in-process/ipvsadm pairs, and the CLI/ipvsadm pairs (a CLI run costs a Node start). */
const READ_RUNS = { [SMALL_READ]: { runs: 5, cliRuns: 3 }, [LARGE]: { runs: 3, cliRuns: 1 } } as const;
/** Enough that p99 is not simply the maximum. */
const LATENCY_SAMPLES = 300;
const LATENCY_WARMUPS = 10;
/** The services the iterations take in turn, at either table size. */
const LATENCY_SERVICES = 50;
const ELD_RESOLUTION_MS = 1;
const IDLE_MS = 10_000;
/** Loading @kubernetes/client-node over 9p under emulation takes minutes, and so may listing 20,000 objects. */
const AGENT_SYNC_TIMEOUT_MS = 15 * 60_000;
/** The first deletion after a size change waits behind every event the change caused. */
const FIRST_DELETION_TIMEOUT_MS = 10 * 60_000;
const DELETION_TIMEOUT_MS = 60_000;

const out = process.env.VM_OUT ?? '/tmp';
const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const started = performance.now();
const say = (text: string): void => {
  process.stderr.write(`[bench +${((performance.now() - started) / 1000).toFixed(0)}s] ${text}\n`);
};
const devNull = openSync('/dev/null', 'w');

/** Wall time of a whole process; its stdout is thrown away as a shell's `> /dev/null` would, unless kept. */
function runProcess(command: string, args: readonly string[], keepStdout = false): { ms: number; stdout: string } {
  const start = performance.now();
  const run = spawnSync(command, args, { stdio: ['ignore', keepStdout ? 'pipe' : devNull, 'pipe'], encoding: 'utf8' });
  const ms = performance.now() - start;
  if (run.status !== 0) throw new Error(`${command} ${args.join(' ')}: exit ${run.status ?? run.signal}: ${run.stderr}`);
  return { ms, stdout: run.stdout ?? '' };
}

const timeProcess = (command: string, args: readonly string[]): number => runProcess(command, args).ms;

/** What loading the agent's modules costs a process, in time and memory, before it does anything. */
function measureStartup(): BenchResults['startup'] {
  const agentModule = new URL('../../src/agent/agent.js', import.meta.url).href;
  // As `run` loads it: with the hook that keeps client-node's generated API index out.
  const hooks = new URL('../../src/k8s/client-node-hooks.js', import.meta.url).href;
  const loaded = runProcess(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `(await import('node:module')).register(${JSON.stringify(hooks)}); ` +
        `await import(${JSON.stringify(agentModule)}); console.log(process.memoryUsage().rss)`,
    ],
    true,
  );
  return {
    nodeMs: timeProcess(process.execPath, ['-e', '0']),
    agentImportMs: loaded.ms,
    agentImportRssMiB: Number(loaded.stdout.trim()) / 2 ** 20,
  };
}

async function timedRead(client: IpvsClient, services: number): Promise<number> {
  const start = performance.now();
  const table = await readTable(client);
  const ms = performance.now() - start;
  const destinations = table.entries.reduce((n, e) => n + e.destinations.length, 0);
  if (table.entries.length !== services || destinations !== services * DESTINATIONS) {
    throw new Error(`read ${table.entries.length} services and ${destinations} real servers, expected ${services} and ${services * DESTINATIONS}`);
  }
  return ms;
}

/** The event-loop delay this process sees while it does nothing for `ms`. */
async function idleEventLoopDelay(ms: number): Promise<{ p99Ms: number; maxMs: number }> {
  const monitor = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  monitor.enable();
  await new Promise((resolve) => setTimeout(resolve, ms));
  monitor.disable();
  return { p99Ms: monitor.percentile(99) / 1e6, maxMs: monitor.max / 1e6 };
}

async function measureRead(
  client: IpvsClient,
  services: number,
  eventLoopDelay?: { p99Ms: number; maxMs: number }[],
): Promise<ReadFigures> {
  const { runs, cliRuns } = READ_RUNS[services as keyof typeof READ_RUNS];
  const figures: ReadFigures = { services, destinations: services * DESTINATIONS, ourMs: [], ipvsadmMs: [], cliMs: [], cliIpvsadmMs: [] };
  // Pairs alternate, so a change in the host's load falls on both sides of a ratio.
  for (let run = 1; run <= runs; run++) {
    const monitor = eventLoopDelay ? monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS }) : undefined;
    monitor?.enable();
    figures.ourMs.push(await timedRead(client, services));
    monitor?.disable();
    if (monitor) eventLoopDelay!.push({ p99Ms: monitor.percentile(99) / 1e6, maxMs: monitor.max / 1e6 });
    figures.ipvsadmMs.push(timeProcess('ipvsadm', ['-Ln']));
    say(`read ${services}: run ${run}/${runs}: readTable ${figures.ourMs.at(-1)!.toFixed(0)} ms, ipvsadm -Ln ${figures.ipvsadmMs.at(-1)!.toFixed(0)} ms`);
  }
  for (let run = 1; run <= cliRuns; run++) {
    figures.cliMs.push(timeProcess(process.execPath, [cli, 'list']));
    figures.cliIpvsadmMs.push(timeProcess('ipvsadm', ['-Ln']));
    say(`read ${services}: CLI run ${run}/${cliRuns}: list ${figures.cliMs.at(-1)!.toFixed(0)} ms, ipvsadm -Ln ${figures.cliIpvsadmMs.at(-1)!.toFixed(0)} ms`);
  }
  return figures;
}

const histogram = (text: string) => ({
  sum: metricValue(text, 'ipvs_janitor_event_to_deletion_seconds_sum'),
  count: metricValue(text, 'ipvs_janitor_event_to_deletion_seconds_count'),
});
const eventPasses = (text: string): number =>
  metricValue(text, 'ipvs_janitor_reconcile_duration_seconds_count{trigger="event"}');

/**
 * Per iteration, on the next of `services` in turn: the floor (this process's client dumps the service and
 * deletes a weight-0 real server, then puts it back); then kube-proxy's part (weight 0) and the endpoint's removal
 * from the slice, timed until the agent has deleted the real server; then both are put back, and the agent's pass
 * over that event awaited, so every iteration starts from the same table and an idle agent.
 */
async function measureLatency(
  agent: AgentProcess,
  client: IpvsClient,
  cluster: KubeCluster,
  tableSize: number,
  services: readonly number[],
): Promise<LatencyFigures> {
  const agentMs: number[] = [];
  let deletedByResync = 0;
  const endToEndMs: number[] = [];
  const floorMs: number[] = [];
  let before = await agent.metrics();
  for (let n = 0; n < LATENCY_WARMUPS + LATENCY_SAMPLES; n++) {
    const i = services[n % services.length]!;
    const key = serviceKey(i);
    const spare = destination(i, DESTINATIONS - 1, 0);
    await client.updateDestination(key, spare);
    const floorStart = performance.now();
    await client.listDestinations(key);
    await client.deleteDestination(key, spare);
    const floor = performance.now() - floorStart;
    await client.createDestination(key, destination(i, DESTINATIONS - 1));

    const gone = destination(i, 0, 0);
    await client.updateDestination(key, gone);
    const deleted = agent.waitFor(
      (l) => l.message === 'deleted real server' && l.realServer === `${gone.address}:${gone.port}`,
      `the deletion of ${gone.address} from ${serviceName(i)}`,
      n === 0 ? FIRST_DELETION_TIMEOUT_MS : DELETION_TIMEOUT_MS,
    );
    // An update without resourceVersion (EndpointSlices allow it): one round trip, as the controller's write.
    const written = Date.now();
    await cluster.call('PUT', slicePathOf(i), slice(i, [0]));
    const line = await deleted;
    const after = await agent.metrics();
    const observed = histogram(after).count - histogram(before).count;
    // Resyncs run back to back: now and then the pass's step for this Service reads the kernel first.
    const byEvent = line.trigger === 'event';
    if (!byEvent) deletedByResync++;
    if (observed !== (byEvent ? 1 : 0)) throw new Error(`expected ${byEvent ? 1 : 0} event_to_deletion observations, got ${observed}`);
    if ((await client.listDestinations(key)).some((d) => d.address === gone.address)) {
      throw new Error(`the agent logged deleting ${gone.address} but the kernel still has it`);
    }
    if (n >= LATENCY_WARMUPS && byEvent) {
      agentMs.push((histogram(after).sum - histogram(before).sum) * 1000);
      endToEndMs.push(Date.parse(String(line.timestamp)) - written);
      floorMs.push(floor);
    }

    await client.createDestination(key, destination(i, 0));
    await cluster.call('PUT', slicePathOf(i), slice(i));
    before = await agent.metrics();
    while (eventPasses(before) < eventPasses(after) + 1) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      before = await agent.metrics();
    }
  }
  const figures = { services: tableSize, agent: distribution(agentMs), endToEnd: distribution(endToEndMs), floor: distribution(floorMs) };
  say(
    `latency ${tableSize}: agent p50 ${figures.agent.p50.toFixed(1)} / p99 ${figures.agent.p99.toFixed(1)} ms, ` +
      `end to end p50 ${figures.endToEnd.p50.toFixed(1)} / p99 ${figures.endToEnd.p99.toFixed(1)} ms, ` +
      `floor p50 ${figures.floor.p50.toFixed(1)} / p99 ${figures.floor.p99.toFixed(1)} ms; ` +
      `${deletedByResync} deletions by the resync left out`,
  );
  return figures;
}

async function main(): Promise<BenchResults> {
  addDummy('bench0', []);
  ip('route', 'add', ENDPOINT_RANGE, 'dev', 'bench0');
  const writer = await KernelTableWriter.open();
  const client = await IpvsClient.open();

  say(`building ${SMALL_READ} services × ${DESTINATIONS} real servers`);
  addServices(writer, 0, SMALL_READ);
  writer.flush();
  const read = [await measureRead(client, SMALL_READ)];
  const startup = measureStartup();
  say(
    `process start: node -e 0 ${startup.nodeMs.toFixed(0)} ms; importing the agent module ${startup.agentImportMs.toFixed(0)} ms, ` +
      `RSS ${startup.agentImportRssMiB.toFixed(0)} MiB`,
  );
  say(`read ${SMALL_READ}: profiling one more read`);
  const profiled = {
    services: SMALL_READ,
    entries: await profile(() => readTable(client), `${out}/read-${SMALL_READ}.cpuprofile`),
  };

  say(`building ${LARGE} services × ${DESTINATIONS} real servers`);
  addServices(writer, SMALL_READ, LARGE);
  writer.flush();
  const eventLoopDelay: { p99Ms: number; maxMs: number }[] = [];
  read.push(await measureRead(client, LARGE, eventLoopDelay));
  const idle = await idleEventLoopDelay(IDLE_MS);
  say(`event-loop delay: reads p99 ${Math.max(...eventLoopDelay.map((e) => e.p99Ms)).toFixed(1)} ms, idle p99 ${idle.p99Ms.toFixed(1)} ms`);
  const worst = (pick: (e: { p99Ms: number; maxMs: number }) => number) => Math.max(...eventLoopDelay.map(pick));
  const readResults = {
    date: new Date().toISOString().slice(0, 10),
    kernel: release(),
    node: process.versions.node,
    clockSource: readFileSync('/sys/devices/system/clocksource/clocksource0/current_clocksource', 'utf8').trim(),
    read,
    eventLoopDelay: {
      services: LARGE,
      resolutionMs: ELD_RESOLUTION_MS,
      p99Ms: worst((e) => e.p99Ms),
      maxMs: worst((e) => e.maxMs),
      idleP99Ms: idle.p99Ms,
      idleMaxMs: idle.maxMs,
    },
    startup,
    profile: profiled,
  };
  if (process.env.BENCH_ONLY === 'read') {
    client.close();
    writer.close();
    return { ...readResults, totalSeconds: (performance.now() - started) / 1000 };
  }

  // The real kube-apiserver on the host's loopback (main.ts filled it with the same Services before the boot),
  // reached through the VM's one forwarded port: inside the VM under TCG it could not be filled in the bench's time.
  const cluster = await reachHostCluster(process.env);
  const agentStart = performance.now();
  const agent = AgentProcess.start(benchAgentArgs(cluster), say);
  try {
    await agent.waitFor((l) => l.message === 'informers synced: full resync', 'informers synced', AGENT_SYNC_TIMEOUT_MS);
    const syncSeconds = (performance.now() - agentStart) / 1000;
    say(`agent synced after ${syncSeconds.toFixed(0)} s; waiting for its full resync`);
    const resyncSeconds = resyncSecondsSum(await agent.afterResyncs(1, AGENT_SYNC_TIMEOUT_MS));
    const { rssMiB, hwmMiB } = agent.memory();
    const memory = { services: LARGE, endpoints: LARGE * DESTINATIONS, vmRssMiB: rssMiB, vmHwmMiB: hwmMiB, syncSeconds, resyncSeconds };
    say(`agent: full resync took ${resyncSeconds.toFixed(1)} s; VmRSS ${rssMiB.toFixed(0)} MiB, VmHWM ${hwmMiB.toFixed(0)} MiB`);

    // Spread over the table; the services that stay for the small table are left alone.
    const largeIds = Array.from({ length: LATENCY_SERVICES }, (_, n) => SMALL_LATENCY + ((n * 7919) % (LARGE - SMALL_LATENCY)));
    const latency = [await measureLatency(agent, client, cluster, LARGE, largeIds)];

    say(`shrinking the table and the API server to ${SMALL_LATENCY} services`);
    // The kernel first, as kube-proxy would after the Services' deletion: the API's deletions take a minute or two,
    // and a real server left in the kernel meanwhile would be one the agent must judge.
    const removed = Array.from({ length: LARGE - SMALL_LATENCY }, (_, n) => SMALL_LATENCY + n);
    for (const i of removed) writer.deleteService(serviceKey(i));
    writer.flush();
    await inParallel(removed, 20, async (i) => {
      await cluster.call('DELETE', servicePathOf(i));
      await cluster.call('DELETE', slicePathOf(i));
    });
    const smallIds = Array.from({ length: LATENCY_SERVICES }, (_, n) => Math.floor((n * SMALL_LATENCY) / LATENCY_SERVICES));
    latency.push(await measureLatency(agent, client, cluster, SMALL_LATENCY, smallIds));

    return {
      ...readResults,
      memory,
      latency,
      totalSeconds: (performance.now() - started) / 1000,
    };
  } catch (err) {
    say(agent.describe());
    throw err;
  } finally {
    await agent.stop();
    client.close();
    writer.close();
  }
}

const results = await main();
writeFileSync(`${out}/bench.json`, `${JSON.stringify(results, null, 2)}\n`);
say(`done in ${results.totalSeconds.toFixed(0)} s`);
