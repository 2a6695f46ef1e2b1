// Performs the scenes of scene.ts inside the test VM. The node is the VM's root namespace; pods, the client, nginx
// and its users are network namespaces; the Service and its EndpointSlice are objects in the real kube-apiserver;
// the real kube-proxy (mode ipvs) turns them into the kernel's IPVS table; the agent is the real
// `ipvs-janitor run`. Every step that needs kube-proxy waits until the kernel shows its effect: its syncs take
// tens of seconds under emulation.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { applySysctls } from '../../src/agent/sysctls.js';
import type { Destination } from '../../src/ipvs/types.js';
import { isErrno } from '../../src/netlink/errors.js';
import { createService, deleteService, putSlice } from '../support/kube-objects.js';
import { until } from '../support/poll.js';
import { createPod, deletePod, spawnInNetns, waitForOutput, type Pod } from '../support/netns.js';
import { Cast, PROCESS_START_MS } from './cast.js';
import { isEvent } from './json-child.js';
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
  serviceSpec,
  sliceObject,
  sysctlsFor,
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

export class Stage {
  private constructor(
    private readonly cast: Cast,
    private readonly progress: (line: string) => void,
    private readonly recordsDir: string | undefined,
  ) {}

  /** With `recordsDir`, each scene's raw records, marks and logs land there as scene-<index>.json. */
  static async open(scenes: readonly Scene[], progress: (line: string) => void, recordsDir?: string): Promise<Stage> {
    return new Stage(await Cast.open(scenes, progress), progress, recordsDir);
  }

  get kubeProxyLines(): number {
    return this.cast.kubeProxy.lines.length;
  }

  async play(scene: Scene, t: Timings): Promise<ScenarioResult> {
    const { cast } = this;
    const label = `scene ${scene.index} (${scene.emulation}, ${scene.policy === 'none' ? 'no agent' : `--policy ${scene.policy}`})`;
    const agent = await cast.agentFor(scene.policy);
    const agentFrom = agent?.messages.length ?? 0;
    const kubeProxyFrom = cast.kubeProxy.lines.length;
    // After kube-proxy wrote its own: the old kernel's behaviour is laid over them.
    await applySysctls(sysctlsFor(scene.emulation, cast.kubeProxySysctls));
    const oldPod = createPod({ name: scene.pods.old.name, index: scene.pods.old.index });
    const newPod = createPod({ name: scene.pods.new.name, index: scene.pods.new.index });
    const oldServer = await this.startServer(oldPod);
    await this.startServer(newPod);
    try {
      await createService(cast.cluster, serviceSpec(scene));
      await this.enter(scene, 'old-ready', t);
      this.progress(`${label}: kube-proxy programmed the Service`);

      const watchFrom = cast.watcher.send({
        cmd: 'watch',
        service: virtualServiceKey(scene),
        dest: realServer(scene.pods.old),
        flipExpireNodestConn: flipsOnRemoval(scene.emulation),
      });
      await cast.watcher.wait(isEvent('watching'), 'watching', REPLY_MS, watchFrom);
      const loads = [
        { client: cast.direct, host: scene.clusterIP, port: SERVICE_PORT, pathPrefix: '' },
        { client: cast.viaNginx, host: NGINX_POD.ipv4, port: 80, pathPrefix: `/${scene.nginxPrefix}` },
      ];
      for (const l of loads) {
        const from = l.client.send({ cmd: 'start', host: l.host, port: l.port, pathPrefix: l.pathPrefix, concurrency: t.concurrency, timeoutMs: t.requestTimeoutMs });
        await l.client.wait(isEvent('started'), 'started', REPLY_MS, from);
      }
      await sleep(t.warmupMs);

      // Before the new pod exists in the table, so every slow request lands on the old pod.
      const longFrom = cast.direct.send({ cmd: 'long', count: t.longRequests, idleTimeoutMs: t.longIdleTimeoutMs });
      for (let i = 0, from = longFrom; i < t.longRequests; i++) {
        const isStartOrEnd = (m: LoadEvent): m is Extract<LoadEvent, { event: 'long-started' | 'long-ended' }> =>
          m.event === 'long-started' || m.event === 'long-ended';
        const first = await cast.direct.wait(isStartOrEnd, 'long request start', REPLY_MS, from);
        if (first.event === 'long-ended') throw new Error(`${label}: a slow request failed before its first byte (${first.error})`);
        if (first.pod !== scene.pods.old.name) throw new Error(`${label}: a slow request went to ${first.pod}, not the old pod`);
        from = cast.direct.messages.indexOf(first) + 1;
      }
      await this.enter(scene, 'new-ready', t);
      this.progress(`${label}: new pod in the table`);
      const terminatingAt = Date.now();
      await this.enter(scene, 'old-terminating', t);
      this.progress(`${label}: old pod terminating, kube-proxy applied it after ${((Date.now() - terminatingAt) / 1000).toFixed(1)} s`);
      await sleep(t.gracePeriodMs);
      // The pod finishes its in-flight work at the end of its grace period; a broken request has ended already.
      oldServer.kill('SIGUSR1');
      await this.waitForLongEnds(longFrom, t.longRequests);
      await sleep(t.lingerMs);

      let sliceRemovedAt: number;
      let deathAt: number;
      if (scene.death === 'with-slice-update') {
        // No head start for the agent (or kube-proxy).
        sliceRemovedAt = Date.now();
        await this.enter(scene, 'old-gone', t);
        deathAt = Date.now();
        deletePod(oldPod);
      } else {
        deathAt = Date.now();
        deletePod(oldPod);
        await sleep(t.deathLeadMs);
        sliceRemovedAt = Date.now();
        await this.enter(scene, 'old-gone', t);
      }
      this.progress(`${label}: old endpoint left the slice, old pod dead (${scene.death})`);
      await sleep(t.afterDeathMs);

      const [stopped, stoppedNginx] = await Promise.all(
        loads.map((l) => l.client.wait(isEvent('stopped'), 'stop', REPLY_MS, l.client.send({ cmd: 'stop' }))),
      );
      await cast.watcher.wait(isEvent('stopped'), 'stop', REPLY_MS, cast.watcher.send({ cmd: 'stop' }));
      const watched = cast.watcher.messages.slice(watchFrom);
      const gone = watched.find(isEvent('gone'));
      const zero = watched.find(isEvent('weight-zero'));
      const inFlightEndedAt = Math.max(...stopped!.records.filter((r) => r.kind === 'long').map((r) => r.endedAt));
      const deletion = agent?.messages
        .slice(agentFrom)
        .find((m) => m.message === 'deleted real server' && m.service === `${NAMESPACE}/${scene.serviceName}`);
      if (agent && !deletion) {
        // A scene whose agent deleted nothing (seen once under a loaded host): what it said about the Service.
        const said = agent.messages.slice(agentFrom).filter((m) => m.service === `${NAMESPACE}/${scene.serviceName}` || m.level === 'warn');
        this.progress(`${label}: the agent deleted nothing; it logged: ${said.slice(-10).map((m) => JSON.stringify(m)).join(' ') || 'nothing about the Service'}`);
      }
      const marks: ScenarioMarks = {
        terminatingAt,
        ...(zero ? { weightZeroAt: zero.at } : {}),
        inFlightEndedAt,
        sliceRemovedAt,
        deathAt,
        ...(gone ? { realServerGoneAt: gone.at } : {}),
        ...(gone?.flippedAt ? { emulationCompleteAt: gone.flippedAt } : {}),
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
    } finally {
      deletePod(oldPod);
      deletePod(newPod);
      await deleteService(cast.cluster, NAMESPACE, scene.serviceName).catch(() => undefined);
      // kube-proxy removes the virtual service in a later sync; the next scene has its own ClusterIP.
    }
  }

  async close(): Promise<void> {
    if (this.recordsDir) writeFileSync(join(this.recordsDir, 'kube-proxy.log'), this.cast.kubeProxy.lines.map((l) => l.text).join('\n'));
    await this.cast.close();
  }

  private async startServer(pod: Pod) {
    const server = spawnInNetns(pod.netns, process.execPath, [POD_SERVER, pod.name, String(POD_PORT)]);
    await waitForOutput(server, /^listening/, PROCESS_START_MS);
    await warmUp(pod.ipv4);
    return server;
  }

  private async waitForLongEnds(from: number, count: number): Promise<void> {
    await until(() => this.cast.direct.messages.slice(from).filter(isEvent('long-ended')).length >= count, 'slow requests ended', REPLY_MS);
  }

  /** Writes the phase's slice and, except when nothing changes in IPVS, waits until kube-proxy applied it. */
  private async enter(scene: Scene, phase: Phase, t: Timings): Promise<void> {
    await putSlice(this.cast.cluster, sliceObject(scene, phase));
    if (phase === 'old-gone') return; // kube-proxy has the old real server at weight 0 on its graceful list already
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
