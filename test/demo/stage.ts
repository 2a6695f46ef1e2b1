// Performs the scenes of scene.ts inside the test VM: the node is the VM's root namespace, pods and the client
// are network namespaces, each agent policy has its own API stand-in process (so an agent sees only its own
// scenes), the agents are real `ipvs-janitor run` processes, and this process plays kube-proxy with the
// project's IPVS client. Everything but the pods starts once for all scenes: a node process costs seconds to
// minutes under emulation.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { applySysctls, readSysctls, type IpvsSysctlName, type IpvsSysctls } from '../../src/agent/sysctls.js';
import { IpvsClient } from '../../src/ipvs/client.js';
import { isErrno } from '../../src/netlink/errors.js';
import { destinationKeyString } from '../../src/reconcile/keys.js';
import type { Kind, KubeObject } from '../k8s/standin.js';
import {
  addDummy,
  createPod,
  deleteDummy,
  deletePod,
  enableForwarding,
  setSysctl,
  spawnInNetns,
  teardown,
  waitForOutput,
} from '../support/netns.js';
import type { LoadCommand, LoadEvent } from './load.js';
import { summarize, type ScenarioMarks, type ScenarioResult } from './report.js';
import {
  agentArgs,
  CLIENT_POD,
  CLIENT_PORT_RANGE,
  flipsOnRemoval,
  KUBE_PROXY_DRAIN_CHECK_MS,
  kubeProxySteps,
  NAMESPACE,
  POD_PORT,
  realServer,
  SERVICE_PORT,
  serviceObject,
  sliceObject,
  sysctlsFor,
  virtualServiceKey,
  type AgentPolicy,
  type Phase,
  type Scene,
  type Timings,
} from './scene.js';
import type { WatchCommand, WatchEvent } from './watcher.js';

const script = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const CLI = script('../../src/cli/main.js');
const POD_SERVER = script('./pod-server.js');
const LOAD = script('./load.js');
const WATCHER = script('./watcher.js');
const STANDIN = script('../k8s/standin-main.js');

// Under TCG, and with other VMs on the same cores, importing the Kubernetes client takes minutes.
const AGENT_START_MS = 8 * 60_000;
const PROCESS_START_MS = 3 * 60_000;
const REPLY_MS = 60_000;
/** A long request that gets no answer this long after it should have ended is broken. */
const LONG_REQUEST_MARGIN_MS = 3000;
const VIP_DUMMY = 'demo-vip';

type Message = Record<string, unknown>;

/** A child process that speaks JSON lines: commands on stdin, messages on stdout. */
class JsonChild<Command extends object | string, Event extends Message> {
  readonly messages: Event[] = [];
  private stderr = '';
  private exit: string | undefined;
  private readonly wake = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.messages.push(JSON.parse(line) as Event);
      } catch {
        this.stderr = `${this.stderr}${line}\n`.slice(-4000);
      }
      this.wake.forEach((w) => w());
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4000)));
    const ended = (why: string) => {
      this.exit ??= `${name} ${why}`;
      this.wake.forEach((w) => w());
    };
    child.once('exit', (code, signal) => ended(`exited (${signal ?? code})`));
    child.once('error', (err) => ended(`failed: ${err.message}`));
  }

  send(command: Command): number {
    this.child.stdin!.write(`${typeof command === 'string' ? command : JSON.stringify(command)}\n`);
    return this.messages.length;
  }

  /** The first message at index `from` or later that passes `test`; an 'error' event or an exit rejects. */
  async wait<E extends Event>(test: (m: Event) => m is E, what: string, timeoutMs: number, from = 0): Promise<E> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(from).find((m) => test(m) || m.event === 'error');
      if (found?.event === 'error') throw new Error(`${this.name}: ${String(found.message)}`);
      if (found) return found as E;
      const why = this.exit ?? (Date.now() > deadline ? `no ${what} within ${timeoutMs} ms` : undefined);
      if (why) throw new Error(`${this.name}: ${why}\n${this.stderr}`);
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.wake.delete(done);
          resolve();
        };
        const timer = setTimeout(done, Math.max(0, deadline - Date.now()) + 1);
        this.wake.add(done);
      });
    }
  }
}

const isEvent =
  <E extends { event: string }, K extends E['event']>(event: K) =>
  (m: E): m is Extract<E, { event: K }> =>
    m.event === event;

type LoadClient = JsonChild<LoadCommand, LoadEvent>;
type Watcher = JsonChild<WatchCommand, WatchEvent>;
type AgentLog = { message?: string; service?: string; reason?: string };
type Agent = JsonChild<never, AgentLog & Message>;

function node(args: readonly string[]): ChildProcess {
  return spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
}

type StandInAnswer = Message & { kubeconfig?: string; ok?: boolean; error?: string };

/**
 * test/k8s/standin-main.ts in a process of its own: the orchestrator's synchronous iproute2 calls (a pod's death)
 * must not hold back the watch event that tells the agent about it.
 */
class StandInProcess {
  private constructor(
    private readonly io: JsonChild<string, StandInAnswer>,
    readonly kubeconfig: string,
  ) {}

  static async start(policy: AgentPolicy): Promise<StandInProcess> {
    const io = new JsonChild<string, StandInAnswer>(`API stand-in (${policy})`, node([STANDIN]));
    const hasKubeconfig = (m: StandInAnswer): m is StandInAnswer & { kubeconfig: string } => typeof m.kubeconfig === 'string';
    const hello = await io.wait(hasKubeconfig, 'kubeconfig', PROCESS_START_MS);
    return new StandInProcess(io, hello.kubeconfig);
  }

  apply(object: KubeObject): Promise<void> {
    return this.command(`apply ${JSON.stringify(object)}`);
  }

  delete(kind: Kind, namespace: string, name: string): Promise<void> {
    return this.command(`delete ${kind} ${namespace} ${name}`);
  }

  close(): void {
    this.io.child.stdin?.end();
  }

  private async command(line: string): Promise<void> {
    const answer = await this.io.wait((m): m is StandInAnswer => 'ok' in m, 'answer', REPLY_MS, this.io.send(line));
    if (!answer.ok) throw new Error(`${this.io.name}: ${line.slice(0, 60)}...: ${answer.error}`);
  }
}

async function startAgent(policy: Exclude<AgentPolicy, 'none'>, kubeconfig: string): Promise<Agent> {
  const agent: Agent = new JsonChild(`agent --policy ${policy}`, node([CLI, ...agentArgs(policy, kubeconfig)]));
  await agent.wait((m): m is AgentLog & Message => m.message === 'informers synced: full resync', 'informer sync', AGENT_START_MS);
  return agent;
}

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
    private readonly ipvs: IpvsClient,
    private readonly standins: ReadonlyMap<AgentPolicy, StandInProcess>,
    private readonly agents: ReadonlyMap<AgentPolicy, Agent>,
    private readonly load: LoadClient,
    private readonly watcher: Watcher,
    private readonly originalSysctls: IpvsSysctls,
    private readonly progress: (line: string) => void,
    private readonly recordsDir: string | undefined,
  ) {}

  /**
   * Everything the scenes share: forwarding, the client netns, one API stand-in per policy, agents, watcher.
   * With `recordsDir`, each scene's raw records, marks and watcher events land there as scene-<index>.json.
   */
  static async open(policies: readonly AgentPolicy[], progress: (line: string) => void, recordsDir?: string): Promise<Stage> {
    const originalSysctls = await readSysctls();
    enableForwarding();
    const client = createPod({ name: CLIENT_POD.name, index: CLIENT_POD.index });
    setSysctl('net.ipv4.ip_local_port_range', CLIENT_PORT_RANGE, client.netns);
    setSysctl('net.ipv4.tcp_tw_reuse', 1, client.netns);
    const ipvs = await IpvsClient.open();

    const agentNames = policies.filter((p) => p !== 'none').map((p) => `agent --policy ${p}`);
    progress(`starting API stand-ins, ${agentNames.join(', ') || 'no agent'}, load client, watcher`);
    const started = Date.now();
    const standins = new Map(await Promise.all([...new Set(policies)].map(async (p) => [p, await StandInProcess.start(p)] as const)));
    const loadProcess = spawnInNetns(client.netns, process.execPath, [LOAD], { stdio: ['pipe', 'pipe', 'pipe'] });
    const load: LoadClient = new JsonChild('load client', loadProcess);
    const watcher: Watcher = new JsonChild('watcher', node([WATCHER]));
    const agentList = await Promise.all(
      [...standins].flatMap(([policy, standin]) =>
        policy === 'none' ? [] : [startAgent(policy, standin.kubeconfig).then((a) => [policy, a] as const)],
      ),
    );
    await load.wait(isEvent('ready'), 'ready', PROCESS_START_MS);
    await watcher.wait(isEvent('ready'), 'ready', PROCESS_START_MS);
    progress(`started in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return new Stage(ipvs, standins, new Map(agentList), load, watcher, originalSysctls, progress, recordsDir);
  }

  async play(scene: Scene, t: Timings): Promise<ScenarioResult> {
    const label = `scene ${scene.index} (${scene.emulation}, ${scene.policy === 'none' ? 'no agent' : `--policy ${scene.policy}`})`;
    const standin = this.standins.get(scene.policy);
    if (!standin) throw new Error(`${label}: the stage was opened without policy ${scene.policy}`);
    await applySysctls(sysctlsFor(scene.emulation));
    const oldPod = createPod({ name: scene.pods.old.name, index: scene.pods.old.index });
    const newPod = createPod({ name: scene.pods.new.name, index: scene.pods.new.index });
    try {
      addDummy(VIP_DUMMY, [scene.vip]);
      await Promise.all(
        [oldPod, newPod].map((pod) =>
          waitForOutput(spawnInNetns(pod.netns, process.execPath, [POD_SERVER, pod.name, String(POD_PORT)]), /^listening/, PROCESS_START_MS).then(
            () => warmUp(pod.ipv4),
          ),
        ),
      );
      await standin.apply(serviceObject(scene));
      await this.enter(scene, standin, 'old-ready');

      const watchFrom = this.watcher.send({
        cmd: 'watch',
        service: virtualServiceKey(scene),
        dest: realServer(scene.pods.old),
        flipExpireNodestConn: flipsOnRemoval(scene.emulation),
      });
      await this.watcher.wait(isEvent('watching'), 'watching', REPLY_MS, watchFrom);
      const loadFrom = this.load.send({
        cmd: 'start',
        host: scene.vip,
        port: SERVICE_PORT,
        concurrency: t.concurrency,
        timeoutMs: t.requestTimeoutMs,
      });
      await this.load.wait(isEvent('started'), 'started', REPLY_MS, loadFrom);
      this.progress(`${label}: traffic on the old pod`);
      await sleep(t.warmupMs);

      let from = this.load.send({ cmd: 'long', count: t.longRequests, ms: t.longRequestMs, timeoutMs: t.longRequestMs + LONG_REQUEST_MARGIN_MS });
      for (let i = 0; i < t.longRequests; i++) {
        const started = await this.load.wait(isEvent('long-started'), 'long request start', REPLY_MS, from);
        if (started.pod !== scene.pods.old.name) throw new Error(`${label}: a long request went to ${started.pod}, not the old pod`);
        from = this.load.messages.indexOf(started) + 1;
      }
      await this.enter(scene, standin, 'new-ready');
      await sleep(t.newReadyToTerminatingMs);
      const terminatingAt = Date.now();
      await this.enter(scene, standin, 'old-terminating');
      this.progress(`${label}: old pod terminating (weight 0)`);
      await sleep(t.gracePeriodMs);

      // The endpoint leaves and the pod dies together: no head start for the agent (or kube-proxy).
      const sliceRemovedAt = Date.now();
      await standin.apply(sliceObject(scene, 'old-gone'));
      const deathAt = Date.now();
      deletePod(oldPod);
      let removedByKubeProxy = await this.kubeProxy(scene, 'old-gone');
      this.progress(`${label}: old endpoint left the slice, old pod dead`);
      const drainCheck = setInterval(() => {
        void this.kubeProxy(scene, 'old-gone').then((deleted) => (removedByKubeProxy ||= deleted));
      }, KUBE_PROXY_DRAIN_CHECK_MS);
      await sleep(t.afterDeathMs);
      clearInterval(drainCheck);

      const stopped = await this.load.wait(isEvent('stopped'), 'stop', REPLY_MS + t.longRequestMs, this.load.send({ cmd: 'stop' }));
      await this.watcher.wait(isEvent('stopped'), 'stop', REPLY_MS, this.watcher.send({ cmd: 'stop' }));
      const gone = this.watcher.messages.slice(watchFrom).find(isEvent('gone'));
      const deletion = this.agents
        .get(scene.policy)
        ?.messages.find((m) => m.message === 'deleted real server' && m.service === `${NAMESPACE}/${scene.serviceName}`);
      const marks: ScenarioMarks = {
        terminatingAt,
        sliceRemovedAt,
        deathAt,
        ...(gone ? { realServerGoneAt: gone.at } : {}),
        ...(gone?.flippedAt ? { emulationCompleteAt: gone.flippedAt } : {}),
      };
      const result = summarize({
        policy: scene.policy,
        emulation: scene.emulation,
        records: stopped.records,
        marks,
        removedBy: deletion ? `agent (${deletion.reason})` : removedByKubeProxy ? 'kube-proxy' : undefined,
        portsExhausted: stopped.portsExhausted,
      });
      if (this.recordsDir) {
        const raw = { scene, marks, deletion, watcher: this.watcher.messages.slice(watchFrom), records: stopped.records };
        writeFileSync(join(this.recordsDir, `scene-${scene.index}.json`), JSON.stringify(raw));
      }
      this.progress(
        `${label}: ${result.requests} requests, ${result.failedAfterDeath} failed after death, ${result.failed} overall, ` +
          `${result.longBroken}/${result.longRequests} long broken`,
      );
      return result;
    } finally {
      deletePod(oldPod);
      deletePod(newPod);
      deleteDummy(VIP_DUMMY);
      await this.ipvs.deleteService(virtualServiceKey(scene)).catch(() => undefined);
      await standin.delete('EndpointSlice', NAMESPACE, sliceObject(scene, 'old-gone').metadata.name);
      await standin.delete('Service', NAMESPACE, scene.serviceName);
    }
  }

  async close(): Promise<void> {
    this.load.child.stdin?.end();
    this.watcher.child.stdin?.end();
    for (const agent of this.agents.values()) agent.child.kill('SIGTERM');
    for (const standin of this.standins.values()) standin.close();
    this.ipvs.close();
    teardown();
    const names = Object.keys(this.originalSysctls) as IpvsSysctlName[];
    await applySysctls(names.map((name) => ({ name, value: this.originalSysctls[name] })));
  }

  /**
   * A phase's IPVS changes, then its slice. kube-proxy reacts to the same slice event as the agent, but the agent
   * reads the kernel once per event: had the slice come first, whether `immediate` saw weight 0 at the
   * terminating phase would depend on which process won the race (it lost in some runs and deleted only when the
   * endpoint left). This order shows each policy as designed.
   */
  private async enter(scene: Scene, standin: StandInProcess, phase: Phase): Promise<void> {
    await this.kubeProxy(scene, phase);
    await standin.apply(sliceObject(scene, phase));
  }

  /** True when kube-proxy deleted a real server. */
  private async kubeProxy(scene: Scene, phase: Phase): Promise<boolean> {
    const key = virtualServiceKey(scene);
    let deleted = false;
    for (const step of kubeProxySteps(scene, phase)) {
      switch (step.op) {
        case 'create-service':
          await this.ipvs.createService(step.spec);
          break;
        case 'create-destination':
          await this.ipvs.createDestination(key, step.dest);
          break;
        case 'update-destination':
          await this.ipvs.updateDestination(key, step.dest);
          break;
        case 'delete-if-idle': {
          const wanted = destinationKeyString(step.dest);
          const dest = (await this.ipvs.listDestinations(key)).find((d) => destinationKeyString(d) === wanted);
          if (!dest || dest.activeConnections + dest.inactiveConnections > 0) break;
          await this.ipvs.deleteDestination(key, step.dest).catch((err: unknown) => {
            if (!isErrno(err, 'ENOENT')) throw err;
          });
          deleted = true;
        }
      }
    }
    return deleted;
  }
}
