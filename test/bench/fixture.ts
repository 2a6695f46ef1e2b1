// The benchmark's cluster, the same in the kernel and in the real API server: Service i has cluster IP
// 10.96.<1 + i / 256>.<i % 256>:80/TCP and DESTINATIONS endpoints on :8080, each a real server (masq, weight 1) of
// its virtual service.
import type { DestinationSpec, ServiceKey } from '../../src/ipvs/types.js';
import type { KubeCluster } from '../support/kube-cluster.js';
import { ensureNamespace, inParallel, servicePath, slicePath } from '../support/kube-objects.js';
import type { KernelTableWriter } from './kernel-table.js';

export const DESTINATIONS = 10;
/** The large table's Services: the kernel's, and the API server's during the agent phase. */
export const LARGE = 10_000;
const NAMESPACE = 'bench';
const TARGET_PORT = 8080;
/** Holds every endpoint address: routed through a dummy link so the kernel accepts them as masq real servers. */
export const ENDPOINT_RANGE = '10.128.0.0/9';

/** Inside the test API server's 10.96.0.0/16, clear of its network address and of 10.96.0.1 (default/kubernetes). */
const clusterIP = (i: number): string => `10.96.${1 + (i >> 8)}.${i & 255}`;

export function serviceKey(i: number): ServiceKey {
  return { kind: 'address', family: 'ipv4', protocol: 'tcp', address: clusterIP(i), port: 80 };
}

function endpointAddress(i: number, d: number): string {
  const n = i * DESTINATIONS + d;
  return `10.${128 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`;
}

export function destination(i: number, d: number, weight = 1): DestinationSpec {
  return { family: 'ipv4', address: endpointAddress(i, d), port: TARGET_PORT, forwarding: 'masq', weight };
}

/** Queues services [from, to) with all their real servers. */
export function addServices(writer: KernelTableWriter, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    const key = serviceKey(i);
    writer.createService({ key, scheduler: 'rr' });
    for (let d = 0; d < DESTINATIONS; d++) writer.createDestination(key, destination(i, d));
  }
}

export const serviceName = (i: number): string => `svc-${i}`;
const sliceName = (i: number): string => `svc-${i}-x7k2p`;

type ApiObject = Record<string, unknown>;

function service(i: number): ApiObject {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: NAMESPACE, name: serviceName(i), labels: { app: serviceName(i) } },
    spec: {
      type: 'ClusterIP',
      clusterIP: clusterIP(i),
      clusterIPs: [clusterIP(i)],
      ipFamilies: ['IPv4'],
      selector: { app: serviceName(i) },
      ports: [{ name: 'http', port: 80, protocol: 'TCP', targetPort: TARGET_PORT }],
    },
  };
}

/** The Service's one slice, with its endpoints except those listed in `without`. */
export function slice(i: number, without: readonly number[] = []): ApiObject {
  const endpoints = [];
  for (let d = 0; d < DESTINATIONS; d++) {
    if (without.includes(d)) continue;
    endpoints.push({
      addresses: [endpointAddress(i, d)],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: `node-${d % 3}`,
      targetRef: { kind: 'Pod', namespace: NAMESPACE, name: `${serviceName(i)}-${d}` },
      zone: `zone-${d % 3}`,
    });
  }
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      namespace: NAMESPACE,
      name: sliceName(i),
      labels: { 'kubernetes.io/service-name': serviceName(i), 'endpointslice.kubernetes.io/managed-by': 'endpointslice-controller.k8s.io' },
    },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: TARGET_PORT, protocol: 'TCP' }],
    endpoints,
  };
}

/** The API paths of Service i and of its slice. */
export const servicePathOf = (i: number): string => servicePath(NAMESPACE, serviceName(i));
export const slicePathOf = (i: number): string => slicePath(NAMESPACE, sliceName(i));

/**
 * `ipvs-janitor run` against `cluster` for the bench: a resync period far shorter than a pass, so resyncs run back
 * to back and every latency sample is taken during one.
 */
export function benchAgentArgs(cluster: KubeCluster): string[] {
  return ['--kubeconfig', cluster.kubeconfig(cluster.users.admin), '--node-name', 'bench', '--metrics-address', '127.0.0.1:0', '--resync-period', '1s'];
}

/** Creates services [0, count) and their slices through the API. */
export async function createObjects(cluster: KubeCluster, count: number): Promise<void> {
  await ensureNamespace(cluster, NAMESPACE);
  await inParallel(Array.from({ length: count }, (_, i) => i), 20, async (i) => {
    await cluster.call('POST', servicePath(NAMESPACE), service(i));
    await cluster.call('POST', slicePath(NAMESPACE), slice(i));
  });
}
