// One scene of the demo inside the test VM, as the steps test/demo/stage.ts schedules: set up (the pods' namespaces;
// the cast created the Service and the old pod's slice), start traffic, add the new pod, then the finale (the old pod
// terminating, its death, the traffic after it) that yields the scene's result. The node is the VM's root namespace;
// pods, the client, nginx and its users are network namespaces; the Service and its EndpointSlice are objects in the
// real kube-apiserver; the real kube-proxy (mode ipvs) turns them into the kernel's IPVS table; the agent is the real
// `ipvs-janitor run`. Every step that needs kube-proxy waits until the kernel shows its effect: its syncs take tens of
// seconds under emulation.
import { execFileSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Destination } from '../../src/ipvs/types.js';
import { isErrno } from '../../src/netlink/errors.js';
import { putSlice } from '../support/kube-objects.js';
import { until } from '../support/poll.js';
import { createPod, deletePod, killPod, spawnInNetns, waitForOutput, type Pod } from '../support/netns.js';
import { PROCESS_START_MS, type Cast } from './cast.js';
import { isEvent, isRunEvent } from './json-child.js';
import type { LoadEvent } from './load.js';
import { summarize, type ScenarioMarks, type ScenarioResult } from './report.js';
import {
  expectedWeights,
  flipsOnRemoval,
  kubeProxyRealServerName,
  NAMESPACE,
  NGINX_POD,
  POD_PORT,
  realServer,
  SERVICE_PORT,
  sliceObject,
  virtualServiceKey,
  type Phase,
  type Scene,
  type Timings,
} from './scene.js';

const POD_SERVER = fileURLToPath(new URL('./pod-server.js', import.meta.url));
const REPLY_MS = 3 * 60_000;

/**
 * A few answers from a new pod before the clock starts: its first requests pay for ARP and a cold JIT, which
 * under emulation can exceed the client's timeout and would be counted as failures of the rollout.
 */
async function warmUp(address: string): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await new Promise<void>((resolve, reject) => {
      get({ host: address, port: POD_PORT, path: '/', timeout: REPLY_MS }, (res) => res.resume().on('end', resolve)).on('error', reject);
    });
  }
}

type SlowStart = Extract<LoadEvent, { event: 'long-started' | 'long-ended' }>;

export class ScenePlay {
  readonly label: string;
  private pods: { old: Pod; new: Pod } | undefined;
  private oldServer: ChildProcess | undefined;
  /** The direct client's message index at which this scene's slow requests were sent. */
  private longFrom = 0;
  /** The watcher's message index at which the watch of the old real server began. */
  private watchFrom = 0;

  constructor(
    readonly scene: Scene,
    private readonly cast: Cast,
    private readonly t: Timings,
    private readonly progress: (line: string) => void,
    private readonly recordsDir: string | undefined,
  ) {
    this.label = `scene ${scene.index} (${scene.emulation}, ${scene.policy === 'none' ? 'no agent' : `policy ${scene.policy}`})`;
  }

  private get loads() {
    const { cast, scene } = this;
    return [
      { client: cast.direct, host: scene.clusterIP, port: SERVICE_PORT, pathPrefix: '' },
      { client: cast.viaNginx, host: NGINX_POD.ipv4, port: 80, pathPrefix: `/${scene.nginxPrefix}` },
    ];
  }

  /**
   * Both pods' namespaces (the Service and its slice with the old pod are the cast's). The pods' servers start
   * with the traffic: ten scenes' at once would crowd the VM's memory.
   */
  setUp(): void {
    const { scene } = this;
    this.pods = {
      old: createPod({ name: scene.pods.old.name, index: scene.pods.old.index }),
      new: createPod({ name: scene.pods.new.name, index: scene.pods.new.index }),
    };
  }

  /** Waits until kube-proxy has programmed the Service with the old pod. */
  async programmed(): Promise<void> {
    await this.applied('old-ready');
    this.progress(`${this.label}: kube-proxy programmed the Service`);
  }

  /** The pods' servers, the load against the Service alone (the old pod), then the slow requests, which must land on the old pod. */
  async startTraffic(concurrency: number): Promise<void> {
    const { cast, scene, t, label } = this;
    const run = scene.serviceName;
    [this.oldServer] = await Promise.all([this.startServer(this.pods!.old), this.startServer(this.pods!.new)]);
    for (const l of this.loads) {
      const from = l.client.send({ cmd: 'start', run, host: l.host, port: l.port, pathPrefix: l.pathPrefix, concurrency, timeoutMs: t.requestTimeoutMs });
      await l.client.wait(isRunEvent('started', run), 'started', REPLY_MS, from);
    }
    await sleep(t.warmupMs);
    this.longFrom = cast.direct.send({ cmd: 'long', run, count: t.longRequests, idleTimeoutMs: t.longIdleTimeoutMs });
    for (let i = 0, from = this.longFrom; i < t.longRequests; i++) {
      const isStartOrEnd = (m: LoadEvent): m is SlowStart => (m.event === 'long-started' || m.event === 'long-ended') && m.run === run;
      const first = await cast.direct.wait(isStartOrEnd, 'long request start', REPLY_MS, from);
      if (first.event === 'long-ended') throw new Error(`${label}: a slow request failed before its first byte (${first.error})`);
      if (first.pod !== scene.pods.old.name) throw new Error(`${label}: a slow request went to ${first.pod}, not the old pod`);
      from = cast.direct.messages.indexOf(first) + 1;
    }
  }

  /** The new pod joins the slice; waits until kube-proxy has it in the table. */
  async newReady(): Promise<void> {
    await putSlice(this.cast.cluster, sliceObject(this.scene, 'new-ready'));
    await this.applied('new-ready');
    this.progress(`${this.label}: new pod in the table`);
  }

  /** The watcher follows the old real server from here on (before the finale, so its start delays no slice write). */
  async watchOld(): Promise<void> {
    const { cast, scene } = this;
    const run = scene.serviceName;
    this.watchFrom = cast.watcher.send({
      cmd: 'watch',
      run,
      service: virtualServiceKey(scene),
      dest: realServer(scene.pods.old),
      flipExpireNodestConn: flipsOnRemoval(scene.emulation),
    });
    await cast.watcher.wait(isRunEvent('watching', run), 'watching', REPLY_MS, this.watchFrom);
  }

  /** After watchOld(): the old pod terminates, ends its slow requests, dies; the traffic runs on for afterDeathMs. */
  async finale(): Promise<ScenarioResult> {
    const { cast, scene, t, label } = this;
    const run = scene.serviceName;
    const agentFrom = cast.agent.messages.length;
    const kubeProxyFrom = cast.kubeProxy.lines.length;
    const terminatingAt = Date.now();
    await putSlice(cast.cluster, sliceObject(scene, 'old-terminating'));
    await this.applied('old-terminating');
    this.progress(`${label}: old pod terminating, kube-proxy applied it after ${((Date.now() - terminatingAt) / 1000).toFixed(1)} s`);
    await sleep(t.gracePeriodMs);
    // The pod finishes its in-flight work at the end of its grace period; a broken request has ended already.
    this.oldServer!.kill('SIGUSR1');
    await until(() => cast.direct.messages.slice(this.longFrom).filter(isRunEvent('long-ended', run)).length >= t.longRequests, 'slow requests ended', REPLY_MS);
    await sleep(t.lingerMs);

    // kube-proxy has the old real server at weight 0 on its graceful list already: the slice update changes
    // nothing in IPVS, so nothing waits for it.
    const gone = () => putSlice(cast.cluster, sliceObject(scene, 'old-gone'));
    let sliceRemovedAt: number;
    let deathAt: number;
    if (scene.death === 'with-slice-update') {
      // No head start for the agent (or kube-proxy): the pod dies as the update goes out. (Killed only once the
      // write had returned, it outlived the update by the write's two round trips, 2.2 s in one run; killed
      // before the write with synchronous `ip` calls, it died 2 s before the update went out.)
      deathAt = sliceRemovedAt = Date.now();
      await Promise.all([killPod(this.pods!.old), gone()]);
    } else {
      deathAt = Date.now();
      await killPod(this.pods!.old);
      await sleep(Math.max(0, deathAt + t.deathLeadMs - Date.now()));
      sliceRemovedAt = Date.now();
      await gone();
    }
    this.progress(`${label}: old endpoint left the slice, old pod dead (${scene.death})`);
    await sleep(t.afterDeathMs);

    const [stopped, stoppedNginx] = await Promise.all(
      this.loads.map((l) => l.client.wait(isRunEvent('stopped', run), 'stop', REPLY_MS, l.client.send({ cmd: 'stop', run }))),
    );
    await cast.watcher.wait(isRunEvent('stopped', run), 'stop', REPLY_MS, cast.watcher.send({ cmd: 'stop', run }));
    const watched = cast.watcher.messages.slice(this.watchFrom).filter((m) => 'run' in m && m.run === run);
    const removed = watched.find(isEvent('gone'));
    const zero = watched.find(isEvent('weight-zero'));
    const inFlightEndedAt = Math.max(...stopped!.records.filter((r) => r.kind === 'long').map((r) => r.endedAt));
    const service = `${NAMESPACE}/${scene.serviceName}`;
    const deletion = cast.agent.messages.slice(agentFrom).find((m) => m.message === 'deleted real server' && m.service === service);
    if (scene.policy !== 'none' && !deletion) {
      // A scene whose agent deleted nothing (seen once under a loaded host): what it said about the Service.
      const said = cast.agent.messages.slice(agentFrom).filter((m) => m.service === service || m.level === 'warn');
      this.progress(`${label}: the agent deleted nothing; it logged: ${said.slice(-10).map((m) => JSON.stringify(m)).join(' ') || 'nothing about the Service'}`);
    }
    const marks: ScenarioMarks = {
      terminatingAt,
      ...(zero ? { weightZeroAt: zero.at } : {}),
      inFlightEndedAt,
      sliceRemovedAt,
      deathAt,
      ...(removed ? { realServerGoneAt: removed.at } : {}),
      ...(removed?.flippedAt ? { emulationCompleteAt: removed.flippedAt } : {}),
    };
    const oldName = kubeProxyRealServerName(scene, scene.pods.old);
    const kubeProxy = cast.kubeProxy.realServerLines(kubeProxyFrom).filter((l) => l.realServer === oldName);
    const nginx = cast.nginx.accessLog().filter((e) => e.prefix === scene.nginxPrefix);
    const result = summarize({
      policy: scene.policy,
      emulation: scene.emulation,
      death: scene.death,
      records: [...stopped!.records],
      marks,
      removedByAgent: deletion ? `agent (${deletion.reason})` : undefined,
      portsExhausted: stopped!.portsExhausted,
      nginx,
      kubeProxy,
      counters: watched.find(isEvent('counters'))?.timeline ?? [],
    });
    if (this.recordsDir) {
      const raw = { scene, marks, deletion, kubeProxy, nginx, watcher: watched, records: stopped!.records, nginxUsers: stoppedNginx!.records };
      writeFileSync(join(this.recordsDir, `scene-${scene.index}.json`), JSON.stringify(raw));
    }
    this.progress(
      `${label}: ${result.requests} direct requests, ${result.failedAfterDeath} failed after death; through nginx ` +
        `${result.nginx.requests}, ${result.nginx.badGatewayAfterDeath} 502s after death; ` +
        `${result.longBroken}/${result.longRequests} slow requests broken`,
    );
    return result;
  }

  /** The pods go; the Service stays until the stage closes (deleting it costs kube-proxy a sync the next scene waits for). */
  tearDown(): void {
    if (!this.pods) return;
    deletePod(this.pods.old);
    deletePod(this.pods.new);
  }

  private async startServer(pod: Pod): Promise<ChildProcess> {
    const server = spawnInNetns(pod.netns, process.execPath, [POD_SERVER, pod.name, String(POD_PORT)]);
    await waitForOutput(server, /^listening/, PROCESS_START_MS);
    await warmUp(pod.ipv4);
    return server;
  }

  /** Waits until kube-proxy has applied `phase` to the kernel. */
  private async applied(phase: Exclude<Phase, 'old-gone'>): Promise<void> {
    const { scene, t } = this;
    const want = expectedWeights(scene, phase);
    const old = scene.pods.old.ipv4;
    await until(async () => {
      let dests: Destination[];
      try {
        dests = await this.cast.ipvs.listDestinations(virtualServiceKey(scene));
      } catch (err) {
        if (isErrno(err, 'ESRCH') || isErrno(err, 'ENOENT')) return undefined; // no virtual service yet
        throw err;
      }
      const have = new Map(dests.map((d) => [d.address, d.weight]));
      const wanted = Object.entries(want).every(([address, weight]) => have.get(address) === weight);
      // Terminating: the old real server is at weight 0, or gone (idle, or an agent was faster than this poll).
      const oldOk = phase !== 'old-terminating' || !have.has(old) || have.get(old) === 0;
      return wanted && oldOk;
    }, `${scene.serviceName}: kube-proxy applies ${phase}`, t.kubeProxyApplyMs);
    // A new ClusterIP is on kube-ipvs0 (KUBE-IPVS-IPS) before its ip:port is in KUBE-CLUSTER-IP, later in the same
    // sync (9 s apart in one run): until then kube-proxy's KUBE-IPVS-FILTER rejects connections to it.
    if (phase === 'old-ready') {
      const entry = `${scene.clusterIP},tcp:${SERVICE_PORT}`;
      await until(() => {
        try {
          execFileSync('ipset', ['test', 'KUBE-CLUSTER-IP', entry], { stdio: 'ignore' });
          return true;
        } catch {
          return false;
        }
      }, `${scene.serviceName}: kube-proxy lists ${entry} in KUBE-CLUSTER-IP`, t.kubeProxyApplyMs, 500);
    }
  }
}
