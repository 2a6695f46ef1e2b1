// The rollout the demo plays, as data: which scenarios run, the Kubernetes objects of each rollout phase, what
// kube-proxy does to the IPVS table in each phase and which sysctls stand for which kernel. Pure, so the host
// tests can check it; test/demo/stage.ts performs it inside the VM.
import type { KubeObject } from '../k8s/standin.js';
import type { SysctlSetting } from '../../src/agent/sysctls.js';
import type { DestinationKey, DestinationSpec, ServiceKey, ServiceSpec } from '../../src/ipvs/types.js';
import { SERVICE_NAME_LABEL } from '../../src/k8s/records.js';
import { podAddresses, vip4 } from '../support/netns.js';

export type AgentPolicy = 'none' | 'immediate' | 'graceful';
export type KernelEmulation = 'old-kernel' | 'new-kernel';

export const POLICIES: readonly AgentPolicy[] = ['none', 'immediate', 'graceful'];
export const EMULATIONS: readonly KernelEmulation[] = ['old-kernel', 'new-kernel'];

export const EMULATION_TEXT: Readonly<Record<KernelEmulation, string>> = {
  'old-kernel':
    'kernel < 5.9 (no c95c07836fa4) with kube-proxy\'s settings conn_reuse_mode=0, expire_nodest_conn=1, emulated ' +
    'on 6.1: expire_nodest_conn stays 0 while the old real server exists (so port-reused connections stick to it ' +
    'at weight 0, as on the old kernel) and a watcher polling the table every 10 ms sets it to 1 the moment the ' +
    'real server leaves the kernel, whoever removes it (so connections of the deleted server expire, as on the old ' +
    'kernel)',
  'new-kernel': 'kernel >= 5.9 with kube-proxy\'s settings: conn_reuse_mode=1, expire_nodest_conn=1',
};

export interface Timings {
  /** Short-request loops running in parallel. */
  concurrency: number;
  requestTimeoutMs: number;
  /** Traffic against the old pod alone before the rollout starts. */
  warmupMs: number;
  /** Slow requests to the old pod, started just before it starts terminating. */
  longRequests: number;
  longRequestMs: number;
  /** From the new pod's endpoint becoming ready to the old one terminating. */
  newReadyToTerminatingMs: number;
  /** The old pod terminating but still serving its in-flight requests. */
  gracePeriodMs: number;
  /** Traffic after the old endpoint left the slice and the pod died. */
  afterDeathMs: number;
}

export const DEFAULT_TIMINGS: Timings = {
  concurrency: 4,
  requestTimeoutMs: 1000,
  warmupMs: 3000,
  longRequests: 3,
  longRequestMs: 4000,
  newReadyToTerminatingMs: 1000,
  gracePeriodMs: 6000,
  afterDeathMs: 15_000,
};

/** More traffic before the rollout, and long enough after the death for kube-proxy's once-a-minute drain check
 * to run twice. */
export const FULL_TIMINGS: Timings = { ...DEFAULT_TIMINGS, warmupMs: 10_000, afterDeathMs: 130_000 };

/** The kube-proxy drain check interval (pkg/proxy/ipvs/graceful_termination.go, rsCheckDeleteInterval). */
export const KUBE_PROXY_DRAIN_CHECK_MS = 60_000;

/** The client's port range: small enough that every new connection reuses a tuple IPVS still remembers. */
export const CLIENT_PORT_RANGE = '40000 40063';

export const NAMESPACE = 'demo';
export const SERVICE_PORT = 80;
export const POD_PORT = 8080;
const PORT_NAME = 'http';

export interface ScenePod {
  /** Pod and netns name. */
  name: string;
  /** netns.ts pod index: picks the pod's addresses. */
  index: number;
  ipv4: string;
}

export interface Scene {
  /** 1-based; picks the VIP and the pods' addresses so no scene meets another's connection entries. */
  index: number;
  policy: AgentPolicy;
  emulation: KernelEmulation;
  serviceName: string;
  vip: string;
  pods: { old: ScenePod; new: ScenePod };
}

function pod(name: string, index: number): ScenePod {
  return { name, index, ipv4: podAddresses(index).ipv4 };
}

/** One client for every scene: each scene has its own VIP, so their connection tuples never meet. */
export const CLIENT_POD: ScenePod = pod('demo-client', 1);

export function scene(index: number, policy: AgentPolicy, emulation: KernelEmulation): Scene {
  return {
    index,
    policy,
    emulation,
    serviceName: `web-${index}`,
    vip: vip4(index),
    pods: { old: pod(`d${index}-old`, index * 4 + 1), new: pod(`d${index}-new`, index * 4 + 2) },
  };
}

/** Every emulation with every policy, no agent first so its failures are seen before the cures. */
export function demoScenes(): Scene[] {
  return EMULATIONS.flatMap((emulation, e) =>
    POLICIES.map((policy, p) => scene(e * POLICIES.length + p + 1, policy, emulation)),
  );
}

export function serviceObject(s: Scene): KubeObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: s.serviceName, namespace: NAMESPACE },
    spec: {
      type: 'ClusterIP',
      clusterIP: s.vip,
      clusterIPs: [s.vip],
      ipFamilies: ['IPv4'],
      selector: { app: s.serviceName },
      ports: [{ name: PORT_NAME, port: SERVICE_PORT, targetPort: POD_PORT, protocol: 'TCP' }],
    },
  };
}

export type Phase = 'old-ready' | 'new-ready' | 'old-terminating' | 'old-gone';
export const PHASES: readonly Phase[] = ['old-ready', 'new-ready', 'old-terminating', 'old-gone'];

const READY = { ready: true, serving: true, terminating: false };
const TERMINATING = { ready: false, serving: true, terminating: true };

/** The Service's one EndpointSlice as the EndpointSlice controller writes it in each phase. */
export function sliceObject(s: Scene, phase: Phase): KubeObject {
  const endpoint = (pod: ScenePod, conditions: typeof READY) => ({
    addresses: [pod.ipv4],
    conditions,
    targetRef: { kind: 'Pod', namespace: NAMESPACE, name: pod.name },
  });
  const endpoints = {
    'old-ready': [endpoint(s.pods.old, READY)],
    'new-ready': [endpoint(s.pods.old, READY), endpoint(s.pods.new, READY)],
    'old-terminating': [endpoint(s.pods.old, TERMINATING), endpoint(s.pods.new, READY)],
    'old-gone': [endpoint(s.pods.new, READY)],
  }[phase];
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: `${s.serviceName}-abcde`, namespace: NAMESPACE, labels: { [SERVICE_NAME_LABEL]: s.serviceName } },
    addressType: 'IPv4',
    ports: [{ name: PORT_NAME, port: POD_PORT, protocol: 'TCP' }],
    endpoints,
  };
}

export function virtualServiceKey(s: Scene): ServiceKey {
  return { kind: 'address', family: 'ipv4', protocol: 'tcp', address: s.vip, port: SERVICE_PORT };
}

export function realServer(pod: ScenePod): DestinationKey {
  return { family: 'ipv4', address: pod.ipv4, port: POD_PORT };
}

export type KubeProxyStep =
  | { op: 'create-service'; spec: ServiceSpec }
  | { op: 'create-destination'; dest: DestinationSpec }
  | { op: 'update-destination'; dest: DestinationSpec }
  /** kube-proxy's graceful termination: a TCP real server is deleted only once it has no connections at all. */
  | { op: 'delete-if-idle'; dest: DestinationKey };

/** What kube-proxy's IPVS proxier does to the table when the slice enters `phase`. */
export function kubeProxySteps(s: Scene, phase: Phase): KubeProxyStep[] {
  const masq = (pod: ScenePod, weight: number): DestinationSpec => ({ ...realServer(pod), forwarding: 'masq', weight });
  switch (phase) {
    case 'old-ready':
      return [
        { op: 'create-service', spec: { key: virtualServiceKey(s), scheduler: 'rr' } },
        { op: 'create-destination', dest: masq(s.pods.old, 1) },
      ];
    case 'new-ready':
      return [{ op: 'create-destination', dest: masq(s.pods.new, 1) }];
    case 'old-terminating':
      return [{ op: 'update-destination', dest: masq(s.pods.old, 0) }];
    case 'old-gone':
      return [{ op: 'delete-if-idle', dest: realServer(s.pods.old) }];
  }
}

/** kube-proxy sets conntrack and expire_quiescent_template on every kernel; the two others decide exposure. */
export function sysctlsFor(emulation: KernelEmulation): SysctlSetting[] {
  const old = emulation === 'old-kernel';
  return [
    { name: 'conntrack', value: 1 },
    { name: 'expireQuiescentTemplate', value: 1 },
    { name: 'connReuseMode', value: old ? 0 : 1 },
    { name: 'expireNodestConn', value: old ? 0 : 1 },
  ];
}

/** The emulation flips expire_nodest_conn to 1 once the old real server is gone. */
export function flipsOnRemoval(emulation: KernelEmulation): boolean {
  return emulation === 'old-kernel';
}

export function agentArgs(policy: Exclude<AgentPolicy, 'none'>, kubeconfig: string): string[] {
  return [
    'run',
    '--kubeconfig', kubeconfig,
    '--policy', policy,
    '--resync-period', '60s',
    // The demo's Services have no node ports; any address keeps the agent from listing the VM's interfaces.
    '--nodeport-addresses', '127.0.0.1',
    '--metrics-address', '127.0.0.1:0',
    '--log-level', 'info',
  ];
}
