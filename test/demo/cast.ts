// Everything the demo's scenes share inside the VM, started once: the real etcd + kube-apiserver (on the host's
// loopback for `npm run demo`, inside the VM for demo.vmtest), the real kube-proxy in IPVS mode, nginx in its
// namespace, the two load clients, the kernel watcher, and one agent (each scene's Service picks its policy by
// annotation: two agents would both act on every Service).
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { setPriority, tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { readSysctls, type IpvsSysctls } from '../../src/agent/sysctls.js';
import { IpvsClient } from '../../src/ipvs/client.js';
import { reachHostCluster } from '../support/host-cluster.js';
import { KubeCluster } from '../support/kube-cluster.js';
import { createService, ensureNamespace, putSlice } from '../support/kube-objects.js';
import { KubeProxy } from '../support/kube-proxy.js';
import { createPod, enableForwarding, setSysctl, spawnInNetns, teardown } from '../support/netns.js';
import { Nginx } from '../support/nginx.js';
import { isEvent, JsonChild, type Message } from './json-child.js';
import type { LoadCommand, LoadEvent } from './load.js';
import {
  agentArgs,
  CLIENT_POD,
  CLIENT_PORT_RANGE,
  CLUSTER_CIDR,
  NAMESPACE,
  NGINX_POD,
  SERVICE_PORT,
  serviceSpec,
  sliceObject,
  USER_POD,
  type Scene,
} from './scene.js';
import type { WatchCommand, WatchEvent } from './watcher.js';

const script = (path: string) => fileURLToPath(new URL(path, import.meta.url));
const CLI = script('../../src/cli/main.js');
const LOAD = script('./load.js');
const WATCHER = script('./watcher.js');

// Under TCG, with other VMs on the same cores: kube-apiserver takes 30-150 s, importing the Kubernetes client minutes.
const API_START_MS = 8 * 60_000;
const AGENT_START_MS = 8 * 60_000;
export const PROCESS_START_MS = 3 * 60_000;
/**
 * The node's daemons, kube-proxy and the agent, run at nice -10, as a node reserves CPU for its system daemons:
 * the two emulated cores are saturated by the scenes' traffic, and kube-proxy's syncs (some 56 iptables and ipset
 * executions each) took 17-37 s at the same priority as the traffic, 13 s without traffic.
 */
const NODE_DAEMON_PRIORITY = -10;

export type LoadClient = JsonChild<LoadCommand, LoadEvent>;
export type Watcher = JsonChild<WatchCommand, WatchEvent>;
export type AgentLog = Message & { message?: string; service?: string; realServer?: string; reason?: string; weight?: number };
export type Agent = JsonChild<never, AgentLog>;

function node(args: readonly string[]): ChildProcess {
  return spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
}

async function startAgent(cluster: KubeCluster): Promise<Agent> {
  const agent: Agent = new JsonChild('agent', node([CLI, ...agentArgs(cluster.kubeconfig(cluster.users.admin))]));
  if (agent.child.pid !== undefined) setPriority(agent.child.pid, NODE_DAEMON_PRIORITY);
  await agent.wait((m): m is AgentLog => m.message === 'informers synced: full resync', 'informer sync', AGENT_START_MS);
  return agent;
}

/**
 * Where the API server runs. On the host it starts in seconds and leaves the VM's two emulated cores to kube-proxy,
 * whose every sync is dozens of process executions; the VM test suite boots without the forwarded port.
 */
export type ApiServerPlace = { kind: 'host'; env: NodeJS.ProcessEnv } | { kind: 'in-vm' };

export class Cast {
  private constructor(
    readonly cluster: KubeCluster,
    readonly kubeProxy: KubeProxy,
    /** What kube-proxy wrote at its start; the scenes' kernel behaviours start from it. */
    readonly kubeProxySysctls: IpvsSysctls,
    readonly nginx: Nginx,
    readonly ipvs: IpvsClient,
    /** The client of the ClusterIPs. */
    readonly direct: LoadClient,
    /** The users of nginx. */
    readonly viaNginx: LoadClient,
    readonly watcher: Watcher,
    readonly agent: Agent,
  ) {}

  static async open(scenes: readonly Scene[], api: ApiServerPlace, progress: (line: string) => void): Promise<Cast> {
    const started = Date.now();
    const since = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;
    enableForwarding();
    const client = createPod({ name: CLIENT_POD.name, index: CLIENT_POD.index });
    setSysctl('net.ipv4.ip_local_port_range', CLIENT_PORT_RANGE, client.netns);
    setSysctl('net.ipv4.tcp_tw_reuse', 1, client.netns);
    // A busy nginx reuses its upstream source ports the same way.
    const nginxPod = createPod({ name: NGINX_POD.name, index: NGINX_POD.index });
    setSysctl('net.ipv4.ip_local_port_range', CLIENT_PORT_RANGE, nginxPod.netns);
    setSysctl('net.ipv4.tcp_tw_reuse', 1, nginxPod.netns);
    const user = createPod({ name: USER_POD.name, index: USER_POD.index });
    // An IPv4-only node: kube-proxy runs one proxier, not one per family (each sync of each family execs some 56
    // iptables and ipset commands, 0.1 s apiece under TCG on an idle VM, 0.3-0.9 s among the scenes' traffic); the
    // demo's Services are IPv4. close() undoes it.
    setSysctl('net.ipv6.conf.all.disable_ipv6', 1);

    try {
      progress(`starting nginx, load clients, watcher${api.kind === 'in-vm' ? ', etcd, kube-apiserver' : ''}`);
      const nginx = await Nginx.start({
        dir: join(process.env.TMPDIR ?? tmpdir(), 'demo-nginx'),
        netns: nginxPod.netns,
        listen: nginxPod.ipv4,
        routes: scenes.map((s) => ({ prefix: s.nginxPrefix, upstream: `${s.clusterIP}:${SERVICE_PORT}` })),
      });
      const direct: LoadClient = new JsonChild('load client', spawnInNetns(client.netns, process.execPath, [LOAD], { stdio: ['pipe', 'pipe', 'pipe'] }));
      const viaNginx: LoadClient = new JsonChild('nginx users', spawnInNetns(user.netns, process.execPath, [LOAD], { stdio: ['pipe', 'pipe', 'pipe'] }));
      const watcher: Watcher = new JsonChild('watcher', node([WATCHER]));
      const cluster = api.kind === 'host' ? await reachHostCluster(api.env) : await KubeCluster.start({ readyTimeoutMs: API_START_MS });
      progress(`kube-apiserver (${api.kind}) ready after ${since()}; starting kube-proxy (mode ipvs) and the agent`);
      await ensureNamespace(cluster, NAMESPACE);
      // Every scene's Service and its slice with the old pod, before kube-proxy starts: its first sync, due anyway,
      // programs them all (created afterwards, they cost one or two more syncs, 60 s in one run).
      for (const s of scenes) {
        await createService(cluster, serviceSpec(s));
        await putSlice(cluster, sliceObject(s, 'old-ready'));
      }
      // Both take minutes to start under TCG: side by side.
      const [kubeProxy, agent] = await Promise.all([
        KubeProxy.start({ cluster, clusterCIDR: CLUSTER_CIDR, readyTimeoutMs: API_START_MS, priority: NODE_DAEMON_PRIORITY }).then((proxy) => {
          progress(`kube-proxy synced after ${since()}`);
          return proxy;
        }),
        startAgent(cluster).then((a) => {
          progress(`agent synced after ${since()}`);
          return a;
        }),
      ]);
      const kubeProxySysctls = await readSysctls();
      progress(`kube-proxy left the IPVS sysctls at ${JSON.stringify(kubeProxySysctls)}`);
      for (const c of [direct, viaNginx]) await c.wait(isEvent('ready'), 'ready', PROCESS_START_MS);
      await watcher.wait(isEvent('ready'), 'ready', PROCESS_START_MS);
      const ipvs = await IpvsClient.open();
      progress(`cast ready after ${since()}`);
      return new Cast(cluster, kubeProxy, kubeProxySysctls, nginx, ipvs, direct, viaNginx, watcher, agent);
    } catch (err) {
      // The tests after this one in the same VM boot use IPv6; close() never runs for a cast that did not open.
      setSysctl('net.ipv6.conf.all.disable_ipv6', 0);
      throw err;
    }
  }

  private async stopAgent(): Promise<void> {
    const agent = this.agent;
    if (agent.exited) return;
    const exited = new Promise<void>((resolve) => agent.child.once('exit', () => resolve()));
    agent.child.kill('SIGTERM');
    const timer = setTimeout(() => agent.child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }

  async close(): Promise<void> {
    this.direct.child.stdin?.end();
    this.viaNginx.child.stdin?.end();
    this.watcher.child.stdin?.end();
    await this.stopAgent();
    await this.nginx.stop();
    await this.kubeProxy.stop();
    await this.cluster.stop();
    this.ipvs.close();
    teardown();
    // Later tests in the same VM boot use IPv6.
    setSysctl('net.ipv6.conf.all.disable_ipv6', 0);
  }
}
