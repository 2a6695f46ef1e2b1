// Services and EndpointSlices as the real API takes them, written through a KubeCluster. No controllers run on the
// test server, so a selector-less Service plus a hand-written slice is what kube-proxy and the agent both see,
// the way the EndpointSlice controller would have written it.
import type { KubeCluster } from './kube-cluster.js';

export interface EndpointSpec {
  ip: string;
  ready?: boolean | null;
  serving?: boolean | null;
  terminating?: boolean | null;
}

export interface ServiceSpec {
  namespace: string;
  name: string;
  /** Omitted: the API server allocates one from 10.96.0.0/16. */
  clusterIP?: string;
  ports?: { name?: string; port: number; targetPort?: number; protocol?: 'TCP' | 'UDP' | 'SCTP'; nodePort?: number }[];
  type?: 'ClusterIP' | 'NodePort';
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** The value kube-proxy accepts for slices written by hand: anything without a '/' (the API validates it). */
export const MANAGED_BY = 'ipvs-janitor-tests';

export function serviceObject(spec: ServiceSpec): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { namespace: spec.namespace, name: spec.name, labels: spec.labels, annotations: spec.annotations },
    spec: {
      type: spec.type ?? 'ClusterIP',
      ...(spec.clusterIP ? { clusterIP: spec.clusterIP } : {}),
      ports: (spec.ports ?? [{ port: 80, targetPort: 8080 }]).map((p) => ({
        protocol: 'TCP',
        name: '',
        ...p,
        targetPort: p.targetPort ?? p.port,
      })),
    },
  };
}

export function sliceObject(
  namespace: string,
  name: string,
  serviceName: string,
  endpoints: readonly EndpointSpec[],
  port: { name?: string; port: number; protocol?: 'TCP' | 'UDP' | 'SCTP' } = { port: 8080 },
  addressType: 'IPv4' | 'IPv6' = 'IPv4',
): Record<string, unknown> {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      namespace,
      name,
      labels: { 'kubernetes.io/service-name': serviceName, 'endpointslice.kubernetes.io/managed-by': MANAGED_BY },
    },
    addressType,
    ports: [{ name: port.name ?? '', port: port.port, protocol: port.protocol ?? 'TCP' }],
    endpoints: endpoints.map((e) => ({
      addresses: [e.ip],
      // null leaves the condition out, as a writer that predates it would.
      conditions: Object.fromEntries(
        (['ready', 'serving', 'terminating'] as const)
          .filter((k) => e[k] !== undefined && e[k] !== null)
          .map((k) => [k, e[k]]),
      ),
    })),
  };
}

/** Creates the namespace unless it exists. */
export async function ensureNamespace(cluster: KubeCluster, name: string): Promise<void> {
  const res = await cluster.request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  if (res.status !== 201 && res.status !== 409) throw new Error(`create namespace ${name}: ${res.status} ${res.text}`);
}

export const servicePath = (ns: string, name = '') => `/api/v1/namespaces/${ns}/services${name ? `/${name}` : ''}`;
export const slicePath = (ns: string, name = '') =>
  `/apis/discovery.k8s.io/v1/namespaces/${ns}/endpointslices${name ? `/${name}` : ''}`;

export async function createService(cluster: KubeCluster, spec: ServiceSpec): Promise<{ clusterIP: string }> {
  const created = await cluster.call<{ spec: { clusterIP: string } }>('POST', servicePath(spec.namespace), serviceObject(spec));
  return { clusterIP: created.spec.clusterIP };
}

export async function deleteService(cluster: KubeCluster, namespace: string, name: string): Promise<void> {
  await cluster.call('DELETE', servicePath(namespace, name));
}

/** Creates the slice, or replaces its endpoints when it exists (what the EndpointSlice controller does). */
export async function putSlice(cluster: KubeCluster, slice: Record<string, unknown>): Promise<void> {
  const meta = slice.metadata as { namespace: string; name: string };
  const existing = await cluster.request<{ metadata: { resourceVersion: string } }>('GET', slicePath(meta.namespace, meta.name));
  if (existing.status === 404) {
    await cluster.call('POST', slicePath(meta.namespace), slice);
    return;
  }
  const withVersion = { ...slice, metadata: { ...meta, ...(slice.metadata as object), resourceVersion: existing.body.metadata.resourceVersion } };
  await cluster.call('PUT', slicePath(meta.namespace, meta.name), withVersion);
}

export async function deleteSlice(cluster: KubeCluster, namespace: string, name: string): Promise<void> {
  await cluster.call('DELETE', slicePath(namespace, name));
}

/** Runs `task` for every item with at most `concurrency` in flight (creating thousands of objects one by one is slow). */
export async function inParallel<T>(items: readonly T[], concurrency: number, task: (item: T) => Promise<void>): Promise<void> {
  let nextIndex = 0;
  const worker = async () => {
    while (nextIndex < items.length) await task(items[nextIndex++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
}

export interface Population {
  namespace: string;
  services: number;
  endpointsPerSlice: number;
  /** Requests in flight. Default 20. */
  concurrency?: number;
}

/**
 * `services` selector-less Services svc-<i> in `namespace`, each with one slice svc-<i>-1 of `endpointsPerSlice`
 * ready endpoints at distinct addresses (10.100.0.1 onwards), all created through the API.
 */
export async function populate(cluster: KubeCluster, p: Population): Promise<void> {
  await ensureNamespace(cluster, p.namespace);
  const indexes = Array.from({ length: p.services }, (_, i) => i);
  await inParallel(indexes, p.concurrency ?? 20, async (i) => {
    const name = `svc-${i}`;
    await cluster.call('POST', servicePath(p.namespace), serviceObject({ namespace: p.namespace, name }));
    const base = 100 * 65536 + i * p.endpointsPerSlice;
    const endpoints = Array.from({ length: p.endpointsPerSlice }, (_, j) => {
      const n = base + j + 1;
      return { ip: `10.${n >> 16}.${(n >> 8) & 255}.${n & 255}` };
    });
    await cluster.call('POST', slicePath(p.namespace), sliceObject(p.namespace, `${name}-1`, name, endpoints));
  });
}
