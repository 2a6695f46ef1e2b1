// The rollout the demo plays, as data: which scenarios run, the Service and the EndpointSlice of each rollout
// phase as the EndpointSlice controller writes them, and which sysctls stand for which kernel. Pure, so the host
// tests can check it; test/demo/stage.ts performs it inside the VM with the real kube-apiserver and kube-proxy.
import type { IpvsSysctls, SysctlSetting } from '../../src/agent/sysctls.js';
import { POLICY_ANNOTATION } from '../../src/k8s/annotations.js';
import type { DestinationKey, ServiceKey } from '../../src/ipvs/types.js';
import { sliceObject as kubeSlice, serviceObject as kubeService, type EndpointSpec, type ServiceSpec } from '../support/kube-objects.js';
import { podAddresses } from '../support/netns.js';

export type AgentPolicy = 'none' | 'immediate' | 'graceful' | 'drain';
export type KernelEmulation = 'old-kernel' | 'new-kernel';
/**
 * When the old pod's process dies: as its endpoint leaves the slice (no head start for anyone), or `deathLeadMs`
 * before, as in clusters: kubelet stops the container, then the pod object goes, then the EndpointSlice
 * controller writes the slice.
 */
export type Death = 'with-slice-update' | 'before-slice-update';

export const POLICIES: readonly AgentPolicy[] = ['none', 'immediate', 'graceful', 'drain'];
export const EMULATIONS: readonly KernelEmulation[] = ['old-kernel', 'new-kernel'];

export const EMULATION_TEXT: Readonly<Record<KernelEmulation, string>> = {
  'old-kernel':
    'kernel < 5.9 (no c95c07836fa4) with kube-proxy\'s settings for it (conn_reuse_mode=0, expire_nodest_conn=1), ' +
    'emulated on 6.1 after kube-proxy wrote its own: conn_reuse_mode=0, and expire_nodest_conn stays 0 while the ' +
    'old real server exists (so port-reused connections stick to it at weight 0, as on the old kernel); a watcher ' +
    'polling the table every 10 ms sets it to 1 the moment the real server leaves the kernel, whoever removes it ' +
    '(so connections of the deleted server expire, as on the old kernel)',
  'new-kernel': 'kernel >= 5.9 with the sysctls kube-proxy set itself (conn_reuse_mode left at 1, expire_nodest_conn=1)',
};

export interface Timings {
  /** Short-request loops running in parallel, direct and through nginx each. */
  concurrency: number;
  requestTimeoutMs: number;
  /** Traffic against the old pod alone before the rollout starts. */
  warmupMs: number;
  /** Slow requests to the old pod, started before the rollout; the pod ends them at the end of its grace period. */
  longRequests: number;
  /** A slow request that receives nothing for this long is broken (the pod writes every 250 ms). */
  longIdleTimeoutMs: number;
  /** The old pod terminating (kube-proxy has set weight 0) but still serving its in-flight requests. */
  gracePeriodMs: number;
  /** Traffic after the old endpoint left the slice and the pod died. */
  afterDeathMs: number;
  /**
   * After its slow requests ended the pod keeps serving short requests this long before its process exits (a
   * preStop-like delay): the window in which `--policy drain` can act before the death.
   */
  lingerMs: number;
  /** `before-slice-update` scenes: from the pod's death to the slice update. */
  deathLeadMs: number;
  /** How long kube-proxy may take to apply one EndpointSlice change (its syncs take 8-80 s under TCG). */
  kubeProxyApplyMs: number;
}

export const DEFAULT_TIMINGS: Timings = {
  concurrency: 4,
  // A plain request took 0.2-0.7 s (median per scene) under TCG, 0.7 s with kube-apiserver and etcd in the VM too,
  // where a 1 s timeout failed 40% of them before any rollout.
  requestTimeoutMs: 5000,
  warmupMs: 3000,
  longRequests: 3,
  longIdleTimeoutMs: 10_000,
  gracePeriodMs: 6000,
  afterDeathMs: 15_000,
  lingerMs: 3000,
  deathLeadMs: 1500,
  kubeProxyApplyMs: 4 * 60_000,
};

/** More traffic before the rollout, and long enough after the death for kube-proxy's once-a-minute drain check
 * to run twice. */
export const FULL_TIMINGS: Timings = { ...DEFAULT_TIMINGS, warmupMs: 10_000, afterDeathMs: 130_000 };

/** The client's port range: small enough that every new connection reuses a tuple IPVS still remembers. */
export const CLIENT_PORT_RANGE = '40000 40063';

export const NAMESPACE = 'demo';
export const SERVICE_PORT = 80;
export const POD_PORT = 8080;
const PORT_NAME = 'http';
/** Pods, the client and nginx live here; traffic from inside it to a ClusterIP is not masqueraded. */
export const CLUSTER_CIDR = '10.240.0.0/16';

export interface ScenePod {
  /** Pod and netns name. */
  name: string;
  /** netns.ts pod index: picks the pod's addresses. */
  index: number;
  ipv4: string;
}

export interface Scene {
  /** 1-based; picks the ClusterIP and the pods' addresses so no scene meets another's connection entries. */
  index: number;
  policy: AgentPolicy;
  emulation: KernelEmulation;
  death: Death;
  serviceName: string;
  clusterIP: string;
  /** nginx serves the Service under /<prefix>/. */
  nginxPrefix: string;
  pods: { old: ScenePod; new: ScenePod };
}

function pod(name: string, index: number): ScenePod {
  return { name, index, ipv4: podAddresses(index).ipv4 };
}

/** The direct client: 64 source ports, reused tuples certain. */
export const CLIENT_POD: ScenePod = pod('demo-client', 1);
/** nginx's namespace: as busy as the client, so its upstream connections reuse tuples too. */
export const NGINX_POD: ScenePod = pod('demo-nginx', 2);
/** The users in front of nginx. */
export const USER_POD: ScenePod = pod('demo-user', 3);

export function scene(index: number, policy: AgentPolicy, emulation: KernelEmulation, death: Death = 'with-slice-update'): Scene {
  return {
    index,
    policy,
    emulation,
    death,
    serviceName: `web-${index}`,
    // Inside the API server's --service-cluster-ip-range (10.96.0.0/16).
    clusterIP: `10.96.100.${index}`,
    nginxPrefix: `s${index}`,
    pods: { old: pod(`d${index}-old`, index * 4 + 1), new: pod(`d${index}-new`, index * 4 + 2) },
  };
}

/** The policies whose difference shows only when the pod dies before its endpoint leaves the slice. */
const EARLY_DEATH_POLICIES: readonly AgentPolicy[] = ['graceful', 'drain'];

/**
 * Every policy under every emulation, kernel by kernel (the IPVS sysctls are one per node, so the scenes of one
 * kernel behaviour play together), no agent first in each, so its failures are seen before the cures. `graceful`
 * and `drain` also play the old kernel with the pod dying before the slice update, where they part ways.
 */
export function demoScenes(): Scene[] {
  const plays = EMULATIONS.flatMap((emulation) =>
    POLICIES.flatMap((policy) => [
      { policy, emulation, death: 'with-slice-update' as const },
      ...(emulation === 'old-kernel' && EARLY_DEATH_POLICIES.includes(policy) ? [{ policy, emulation, death: 'before-slice-update' as const }] : []),
    ]),
  );
  return plays.map((p, i) => scene(i + 1, p.policy, p.emulation, p.death));
}

/** `--scenes 8,10`: scene numbers of demoScenes(); throws naming what is not one. */
export function selectScenes(list: string): number[] {
  const count = demoScenes().length;
  const numbers = list.split(',').map((part) => part.trim());
  for (const n of numbers)
    if (!/^\d+$/.test(n) || Number(n) < 1 || Number(n) > count) throw new Error(`--scenes ${list}: ${JSON.stringify(n)} is not a scene number (1-${count})`);
  return numbers.map(Number);
}

/**
 * One agent serves every scene (all read the one API server): each Service names its scene's policy in the
 * agent's per-Service annotation, `skip` for the scenes without an agent.
 */
export function serviceSpec(s: Scene): ServiceSpec {
  return {
    namespace: NAMESPACE,
    name: s.serviceName,
    clusterIP: s.clusterIP,
    ports: [{ name: PORT_NAME, port: SERVICE_PORT, targetPort: POD_PORT, protocol: 'TCP' }],
    annotations: { [POLICY_ANNOTATION]: s.policy === 'none' ? 'skip' : s.policy },
  };
}

export function serviceObject(s: Scene): Record<string, unknown> {
  return kubeService(serviceSpec(s));
}

export type Phase = 'old-ready' | 'new-ready' | 'old-terminating' | 'old-gone';
export const PHASES: readonly Phase[] = ['old-ready', 'new-ready', 'old-terminating', 'old-gone'];

const READY = { ready: true, serving: true, terminating: false };
const TERMINATING = { ready: false, serving: true, terminating: true };

/** The Service's one EndpointSlice as the EndpointSlice controller writes it in each phase. */
export function sliceObject(s: Scene, phase: Phase): Record<string, unknown> {
  const ep = (p: ScenePod, conditions: typeof READY): EndpointSpec => ({ ip: p.ipv4, ...conditions });
  const endpoints = {
    'old-ready': [ep(s.pods.old, READY)],
    'new-ready': [ep(s.pods.old, READY), ep(s.pods.new, READY)],
    'old-terminating': [ep(s.pods.old, TERMINATING), ep(s.pods.new, READY)],
    'old-gone': [ep(s.pods.new, READY)],
  }[phase];
  return kubeSlice(NAMESPACE, `${s.serviceName}-abcde`, s.serviceName, endpoints, { name: PORT_NAME, port: POD_PORT });
}

/** The real servers (address -> weight) kube-proxy programs for a phase, once it has applied it. */
export function expectedWeights(s: Scene, phase: Exclude<Phase, 'old-gone'>): Record<string, number> {
  const { old, new: neu } = s.pods;
  switch (phase) {
    case 'old-ready':
      return { [old.ipv4]: 1 };
    case 'new-ready':
      return { [old.ipv4]: 1, [neu.ipv4]: 1 };
    case 'old-terminating':
      // Weight 0, or already gone when it had no connections (kube-proxy deletes at once then) or an agent removed it.
      return { [neu.ipv4]: 1 };
  }
}

export function virtualServiceKey(s: Scene): ServiceKey {
  return { kind: 'address', family: 'ipv4', protocol: 'tcp', address: s.clusterIP, port: SERVICE_PORT };
}

export function realServer(p: ScenePod): DestinationKey {
  return { family: 'ipv4', address: p.ipv4, port: POD_PORT };
}

/** How kube-proxy names a real server in its log: "<vip>:<port>/TCP/<ip>:<port>". */
export function kubeProxyRealServerName(s: Scene, p: ScenePod): string {
  return `${s.clusterIP}:${SERVICE_PORT}/TCP/${p.ipv4}:${POD_PORT}`;
}

/**
 * The sysctls of a scene, given what kube-proxy wrote at its start: as it left them for the new kernel; for the
 * old kernel, conn_reuse_mode=0 (what it sets below 5.9) and expire_nodest_conn held at 0 until the watcher flips it.
 */
export function sysctlsFor(emulation: KernelEmulation, kubeProxy: IpvsSysctls): SysctlSetting[] {
  const values: IpvsSysctls = emulation === 'old-kernel' ? { ...kubeProxy, connReuseMode: 0, expireNodestConn: 0 } : kubeProxy;
  return (Object.keys(values) as (keyof IpvsSysctls)[]).map((name) => ({ name, value: values[name] }));
}

/** The emulation flips expire_nodest_conn to 1 once the old real server is gone. */
export function flipsOnRemoval(emulation: KernelEmulation): boolean {
  return emulation === 'old-kernel';
}

/** The agent's own default; every demo Service overrides it with its annotation. */
export const AGENT_DEFAULT_POLICY = 'graceful';

export function agentArgs(kubeconfig: string): string[] {
  return [
    'run',
    '--kubeconfig', kubeconfig,
    '--policy', AGENT_DEFAULT_POLICY,
    '--resync-period', '60s',
    // The demo's Services have no node ports; any address keeps the agent from listing the VM's interfaces.
    '--nodeport-addresses', '127.0.0.1',
    '--metrics-address', '127.0.0.1:0',
    '--log-level', 'info',
  ];
}
