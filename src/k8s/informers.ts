// Cluster-wide caches of Services and EndpointSlices, kept as slim records, that survive API server trouble and
// say "synced" only when the API server vouches that both are complete (see reflector.ts).
import { EventEmitter } from 'node:events';
import type { KubeConfig, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import type { CacheCheck, ServiceRef } from '../reconcile/types.js';
import { describeKubeError } from './config.js';
import { Reflector, type ReflectorOptions, type ReflectorStats } from './reflector.js';
import { SERVICE_NAME_LABEL, toServiceRecord, toSliceRecord, type ServiceRecord, type SliceRecord } from './records.js';
import { apiGet, readJson } from './transport.js';

export type Resource = 'services' | 'endpointslices';

export interface InformerEvents {
  /** The Service was added, changed or deleted (or entered or left the selection of SERVICE_SELECTOR). */
  serviceChanged: [ref: ServiceRef];
  /** A slice labelled with this Service was added, changed or deleted, or its label moved away. */
  sliceChanged: [ref: ServiceRef];
  /** Both caches hold a state the API server vouched complete, and are watching. */
  synced: [];
  /** A cache stopped watching; its contents may be stale until `synced`. */
  unsynced: [reason: string];
  /** A list or watch failed; the informer retries in `retryInMs`. */
  informerError: [resource: Resource, message: string, retryInMs: number];
}

export type InformerOptions = Partial<ReflectorOptions>;

export type InformerStats = ReflectorStats;

/**
 * The Services kube-proxy programs: its Service informer leaves out those another proxy owns and headless ones
 * with the same selector, so the API server filters them, and a label added later reads as a deletion.
 */
export const SERVICE_SELECTOR = '!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless';

/** How long a confirmation read may take before the deletion it guards is put off. */
const CONFIRM_TIMEOUT_MS = 10_000;
/**
 * A slice version the server showed this long ago and the watch still has not delivered: the watch is not
 * delivering (a live one is milliseconds behind the server), and is restarted rather than left to idleTimeoutMs.
 */
const BEHIND_LIMIT_MS = 10_000;

export const DEFAULT_OPTIONS: ReflectorOptions = {
  initialBackoffMs: 1000,
  maxBackoffMs: 30_000,
  // Pages of the fallback list only (a list from the watch cache); each page is transient garbage several times
  // its slim size: with 10,000 Services and 100,000 endpoints, pages of 500 raised peak RSS by ~100 MB, 100 by ~45.
  pageSize: 100,
  watchTimeoutSeconds: 300,
  // The watch cache sends a bookmark on every watch about once a minute; 90 s leaves half an interval for a busy
  // server's delay, and bounds how long a stuck stream can pass for a live one.
  idleTimeoutMs: 90_000,
};

/**
 * Informers for v1 Services and discovery.k8s.io/v1 EndpointSlices in all namespaces. Listeners run inside the
 * informers' event handling and must not throw.
 */
export class ClusterInformers extends EventEmitter<InformerEvents> {
  private readonly services: Reflector<V1Service, ServiceRecord>;
  private readonly slices: Reflector<V1EndpointSlice, SliceRecord>;
  /** "namespace/service" → slice name → slice. */
  private readonly slicesByService = new Map<string, Map<string, SliceRecord>>();
  /** "namespace/slice" → the Service name the slice was last indexed under. */
  private readonly sliceOwner = new Map<string, string>();
  private isSynced = false;
  /** Per "namespace/service": "namespace/slice@version" the server showed and the cache lacked → first seen. */
  private readonly behindSince = new Map<string, Map<string, number>>();

  constructor(
    private readonly kc: KubeConfig,
    options: InformerOptions = {},
  ) {
    super();
    const opts = { ...DEFAULT_OPTIONS, ...options };
    const common = (resource: Resource) => ({
      syncChanged: (_synced: boolean, reason: string) => this.updateSynced(reason),
      failed: (message: string, retryInMs: number) => this.emit('informerError', resource, message, retryInMs),
    });
    const serviceChanged = (svc: ServiceRecord) => this.emit('serviceChanged', { namespace: svc.namespace, name: svc.name });
    this.services = new Reflector(kc, 'services', '/api/v1/services', SERVICE_SELECTOR, toServiceRecord, opts, {
      ...common('services'),
      upsert: serviceChanged,
      remove: serviceChanged,
    });
    this.slices = new Reflector(
      kc,
      'endpointslices',
      '/apis/discovery.k8s.io/v1/endpointslices',
      undefined,
      toSliceRecord,
      opts,
      {
        ...common('endpointslices'),
        upsert: (slice) => this.indexSlice(slice),
        remove: (slice) => this.unindexSlice(slice),
      },
    );
  }

  start(): void {
    this.services.start();
    this.slices.start();
  }

  async stop(): Promise<void> {
    this.isSynced = false;
    await Promise.all([this.services.stop(), this.slices.stop()]);
  }

  get synced(): boolean {
    return this.isSynced;
  }

  service(ref: ServiceRef): ServiceRecord | undefined {
    return this.services.get(ref.namespace, ref.name);
  }

  allServices(): readonly ServiceRecord[] {
    return this.services.list();
  }

  /** The Service's slices: those labelled kubernetes.io/service-name=<name> in its namespace. */
  slicesFor(ref: ServiceRef): SliceRecord[] {
    return [...(this.slicesByService.get(`${ref.namespace}/${ref.name}`)?.values() ?? [])];
  }

  /**
   * Asks the API server for the Service's slices (a consistent read, one small list) and says whether the cache
   * holds exactly them, version for version. Deletions that depend on an endpoint's state wait for 'current':
   * a watch can hang without a sign while its cache still looks complete. A version the cache has lacked for
   * longer than a live watch takes restarts the slice watch.
   */
  async confirmSlices(ref: ServiceRef): Promise<CacheCheck> {
    let items: { metadata?: { name?: string; resourceVersion?: string } }[];
    try {
      const res = await apiGet(
        this.kc,
        `/apis/discovery.k8s.io/v1/namespaces/${encodeURIComponent(ref.namespace)}/endpointslices`,
        { labelSelector: `${SERVICE_NAME_LABEL}=${ref.name}` },
        AbortSignal.timeout(CONFIRM_TIMEOUT_MS),
      );
      items = (await readJson<{ items?: typeof items }>(res, () => {})).items ?? [];
    } catch (err) {
      return { kind: 'unavailable', error: describeKubeError(err) };
    }
    const cached = new Map(this.slicesFor(ref).map((s) => [s.name, s.resourceVersion]));
    const missing: string[] = [];
    for (const item of items) {
      const name = item.metadata?.name ?? '';
      const version = item.metadata?.resourceVersion ?? '';
      if (cached.get(name) !== version) missing.push(`${ref.namespace}/${name}@${version}`);
      cached.delete(name);
    }
    for (const name of cached.keys()) missing.push(`${ref.namespace}/${name}@deleted`);
    const serviceKey = `${ref.namespace}/${ref.name}`;
    const seenBefore = this.behindSince.get(serviceKey);
    if (missing.length === 0) {
      this.behindSince.delete(serviceKey);
      return { kind: 'current' };
    }
    const now = Date.now();
    const since = new Map(missing.map((key) => [key, seenBefore?.get(key) ?? now]));
    this.behindSince.set(serviceKey, since);
    const oldest = Math.min(...since.values());
    if (now - oldest > BEHIND_LIMIT_MS) {
      this.behindSince.clear();
      this.slices.restart(
        `the watch has not delivered what the API server showed ${Math.round((now - oldest) / 1000)} s ago (${missing[0]})`,
      );
    }
    return { kind: 'behind', detail: `the API server has ${missing.join(', ')}` };
  }

  stats(): Record<Resource, InformerStats> {
    return { services: this.services.stats(), endpointslices: this.slices.stats() };
  }

  private updateSynced(reason: string): void {
    const synced = this.services.stats().watching && this.slices.stats().watching;
    if (synced === this.isSynced) return;
    this.isSynced = synced;
    if (synced) this.emit('synced');
    else this.emit('unsynced', reason);
  }

  private indexSlice(slice: SliceRecord): void {
    const previous = this.sliceOwner.get(`${slice.namespace}/${slice.name}`);
    if (previous !== undefined && previous !== slice.serviceName) this.unindexSlice(slice);
    if (slice.serviceName === '') return;
    const serviceKey = `${slice.namespace}/${slice.serviceName}`;
    let slices = this.slicesByService.get(serviceKey);
    if (!slices) this.slicesByService.set(serviceKey, (slices = new Map()));
    slices.set(slice.name, slice);
    this.sliceOwner.set(`${slice.namespace}/${slice.name}`, slice.serviceName);
    this.emit('sliceChanged', { namespace: slice.namespace, name: slice.serviceName });
  }

  /** Removes the slice from wherever it was indexed, which is not its current label after a relabel. */
  private unindexSlice(slice: SliceRecord): void {
    const sliceKey = `${slice.namespace}/${slice.name}`;
    const owner = this.sliceOwner.get(sliceKey);
    if (owner === undefined) return;
    this.sliceOwner.delete(sliceKey);
    const serviceKey = `${slice.namespace}/${owner}`;
    const slices = this.slicesByService.get(serviceKey);
    slices?.delete(slice.name);
    if (slices?.size === 0) this.slicesByService.delete(serviceKey);
    this.emit('sliceChanged', { namespace: slice.namespace, name: owner });
  }
}
