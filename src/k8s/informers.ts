// Cluster-wide caches of Services and EndpointSlices, kept as slim records, that survive API server trouble.
//
// client-node's ListWatch lists, then watches from the list's resourceVersion; it relists by itself on 410 Gone
// and reconnects by itself when a stream ends cleanly, but any other failure stops it after one `error` event.
// Each informer here restarts its ListWatch after such a stop with capped, jittered exponential backoff; the
// restart resumes the watch from the last resourceVersion, so only an expired version costs a relist.
import { EventEmitter } from 'node:events';
import {
  CoreV1Api,
  DiscoveryV1Api,
  KubeConfig,
  ListWatch,
  Watch,
  type KubernetesListObject,
  type KubernetesObject,
  type V1EndpointSlice,
  type V1ListMeta,
  type V1Service,
} from '@kubernetes/client-node';
import type { ServiceRef } from '../reconcile/types.js';
import { describeKubeError } from './config.js';
import { toServiceRecord, toSliceRecord, type ServiceRecord, type SliceRecord } from './records.js';

export type Resource = 'services' | 'endpointslices';

export interface InformerEvents {
  /** The Service was added, changed or deleted. */
  serviceChanged: [ref: ServiceRef];
  /** A slice labelled with this Service was added, changed or deleted, or its label moved away. */
  sliceChanged: [ref: ServiceRef];
  /** Both caches hold a complete list and are watching. */
  synced: [];
  /** A cache stopped watching; its contents may be stale until `synced`. */
  unsynced: [reason: string];
  /** An informer stopped on an error and restarts in `retryInMs`. */
  informerError: [resource: Resource, message: string, retryInMs: number];
}

export interface InformerOptions {
  /** First restart delay after an error, doubled per consecutive failure. Default 1000. */
  initialBackoffMs?: number;
  /** Default 30000. */
  maxBackoffMs?: number;
  /**
   * Items per list request. Default 100: each page is transient garbage several times its slim size. With
   * 10,000 Services and 100,000 endpoints, pages of 500 (client-go's size) raised peak RSS by ~100 MB, pages
   * of 100 by ~45 MB.
   */
  pageSize?: number;
  /** Watches ask the server to end them after this many seconds up to twice that. Default 300. */
  watchTimeoutSeconds?: number;
}

export interface InformerStats {
  /** Restarts after the informer stopped on an error. */
  restarts: number;
  /** Complete lists: the first one, and one per expired resourceVersion. */
  lists: number;
  watching: boolean;
  resourceVersion: string;
}

interface WatchOwner {
  readonly stopped: boolean;
  watchEstablished(): void;
  watchBroken(reason: string): void;
}

/**
 * Converts watched objects before ListWatch caches them, asks for bookmarks (they keep the resourceVersion fresh
 * on a quiet resource, so a reconnect after a drop resumes instead of relisting) and a server-side timeout (a
 * watch the server ends is resumed cleanly; one it forgot would hang), and reports whether a stream is open.
 */
class SlimWatch<Api, R> extends Watch {
  constructor(
    kc: KubeConfig,
    private readonly convert: (obj: Api) => R,
    private readonly timeoutSeconds: number,
    private readonly owner: WatchOwner,
  ) {
    super(kc);
  }

  override async watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    // ListWatch starts a watch after a list that was in flight when it was stopped.
    if (this.owner.stopped) return new AbortController();
    let ended = false;
    const onEvent = (phase: string, obj: unknown) => {
      if (phase === 'ADDED' || phase === 'MODIFIED' || phase === 'DELETED') {
        callback(phase, this.convert(obj as Api));
        return;
      }
      if (phase === 'ERROR') {
        // The server ends the stream after an ERROR; ListWatch relists when its code is 410.
        const status = obj as { code?: number; message?: string };
        this.owner.watchBroken(`watch ended by the server: ${status.code} ${status.message ?? ''}`.trim());
      }
      callback(phase, obj);
    };
    const onDone = (err: unknown) => {
      ended = true;
      if (err) this.owner.watchBroken(describeKubeError(err));
      done(err);
    };
    const params = {
      ...queryParams,
      allowWatchBookmarks: true,
      timeoutSeconds: Math.floor(this.timeoutSeconds * (1 + Math.random())),
    };
    try {
      const controller = await super.watch(path, params, onEvent, onDone);
      if (!ended) this.owner.watchEstablished();
      return controller;
    } catch (err) {
      // Configuration failures throw before the request; ListWatch would let them escape as unhandled rejections.
      onDone(err);
      return new AbortController();
    }
  }
}

type ListPage<Api> = (continueToken: string | undefined) => Promise<{ metadata?: V1ListMeta; items: Api[] }>;

class ResourceInformer<Api, R extends KubernetesObject> implements WatchOwner {
  readonly cache: ListWatch<R>;
  watching = false;
  stopped = true;
  restarts = 0;
  lists = 0;
  private failures = 0;
  private retry: NodeJS.Timeout | undefined;

  constructor(
    readonly resource: Resource,
    kc: KubeConfig,
    path: string,
    private readonly listPage: ListPage<Api>,
    private readonly convert: (obj: Api) => R,
    private readonly options: Required<InformerOptions>,
    private readonly onStateChange: (reason: string) => void,
    private readonly onError: (message: string, retryInMs: number) => void,
  ) {
    const watch = new SlimWatch(kc, convert, options.watchTimeoutSeconds, this);
    this.cache = new ListWatch(path, watch, () => this.list(), false);
    this.cache.on('error', (err) => this.fail(err));
  }

  start(): void {
    this.stopped = false;
    this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watching = false;
    clearTimeout(this.retry);
    this.retry = undefined;
    await this.cache.stop();
  }

  watchEstablished(): void {
    this.failures = 0;
    this.setWatching(true, '');
  }

  watchBroken(reason: string): void {
    this.setWatching(false, reason);
  }

  private setWatching(watching: boolean, reason: string): void {
    if (this.stopped || watching === this.watching) return;
    this.watching = watching;
    this.onStateChange(`${this.resource}: ${reason}`);
  }

  private run(): void {
    // Rejects only when an event listener throws; treat it like any other stop.
    this.cache.start().catch((err: unknown) => this.fail(err));
  }

  /** Pages through the collection, converting each page before the next arrives. */
  private async list(): Promise<KubernetesListObject<R>> {
    const items: R[] = [];
    let resourceVersion: string | undefined;
    let continueToken: string | undefined;
    do {
      const page = await this.listPage(continueToken);
      for (const item of page.items) items.push(this.convert(item));
      resourceVersion = page.metadata?.resourceVersion;
      continueToken = page.metadata?._continue || undefined;
    } while (continueToken);
    this.lists++;
    return { metadata: { resourceVersion }, items };
  }

  private fail(err: unknown): void {
    if (this.stopped || this.retry) return;
    const message = describeKubeError(err);
    this.setWatching(false, message);
    const ceiling = Math.min(this.options.maxBackoffMs, this.options.initialBackoffMs * 2 ** this.failures);
    const delay = Math.round(ceiling * (0.5 + Math.random() / 2));
    this.failures++;
    this.onError(message, delay);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.restarts++;
      this.run();
    }, delay);
  }

  stats(): InformerStats {
    return {
      restarts: this.restarts,
      lists: this.lists,
      watching: this.watching,
      resourceVersion: this.cache.latestResourceVersion(),
    };
  }
}

type CachedService = ServiceRecord & KubernetesObject;
type CachedSlice = SliceRecord & KubernetesObject;

/**
 * Informers for v1 Services and discovery.k8s.io/v1 EndpointSlices in all namespaces. Listeners run inside the
 * informers' event handling and must not throw.
 */
export class ClusterInformers extends EventEmitter<InformerEvents> {
  private readonly services: ResourceInformer<V1Service, CachedService>;
  private readonly slices: ResourceInformer<V1EndpointSlice, CachedSlice>;
  /** "namespace/service" → slice name → slice. */
  private readonly slicesByService = new Map<string, Map<string, SliceRecord>>();
  /** "namespace/slice" → the Service name the slice was last indexed under. */
  private readonly sliceOwner = new Map<string, string>();
  private isSynced = false;

  constructor(kc: KubeConfig, options: InformerOptions = {}) {
    super();
    const opts: Required<InformerOptions> = {
      initialBackoffMs: options.initialBackoffMs ?? 1000,
      maxBackoffMs: options.maxBackoffMs ?? 30_000,
      pageSize: options.pageSize ?? 100,
      watchTimeoutSeconds: options.watchTimeoutSeconds ?? 300,
    };
    const core = kc.makeApiClient(CoreV1Api);
    const discovery = kc.makeApiClient(DiscoveryV1Api);
    const onState = (reason: string) => this.updateSynced(reason);
    const onError = (resource: Resource) => (message: string, retryInMs: number) =>
      this.emit('informerError', resource, message, retryInMs);

    this.services = new ResourceInformer(
      'services',
      kc,
      '/api/v1/services',
      (token) => core.listServiceForAllNamespaces({ limit: opts.pageSize, _continue: token }),
      toServiceRecord,
      opts,
      onState,
      onError('services'),
    );
    this.slices = new ResourceInformer(
      'endpointslices',
      kc,
      '/apis/discovery.k8s.io/v1/endpointslices',
      (token) => discovery.listEndpointSliceForAllNamespaces({ limit: opts.pageSize, _continue: token }),
      toSliceRecord,
      opts,
      onState,
      onError('endpointslices'),
    );

    this.services.cache.on('change', (svc) =>
      this.emit('serviceChanged', { namespace: svc.namespace, name: svc.name }),
    );
    this.slices.cache.on('add', (slice) => this.indexSlice(slice));
    this.slices.cache.on('update', (slice) => this.indexSlice(slice));
    this.slices.cache.on('delete', (slice) => this.unindexSlice(slice));
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
    return this.services.cache.get(ref.name, ref.namespace);
  }

  allServices(): readonly ServiceRecord[] {
    return this.services.cache.list();
  }

  /** The Service's slices: those labelled kubernetes.io/service-name=<name> in its namespace. */
  slicesFor(ref: ServiceRef): SliceRecord[] {
    return [...(this.slicesByService.get(`${ref.namespace}/${ref.name}`)?.values() ?? [])];
  }

  stats(): Record<Resource, InformerStats> {
    return { services: this.services.stats(), endpointslices: this.slices.stats() };
  }

  private updateSynced(reason: string): void {
    const synced = this.services.watching && this.slices.watching;
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
