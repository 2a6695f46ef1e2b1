// One resource's cache of slim records, kept the way client-go's reflector keeps it, and called complete only at a
// point the API server vouches for.
//
// A full sync is a streaming list (a watch with sendInitialEvents: every object as an ADDED event, then a BOOKMARK
// annotated k8s.io/initial-events-end) served from the API server's watch cache, and the same stream then carries
// the changes. A server that refuses streaming lists gets a list (resourceVersion=0: from its watch cache) and a
// watch from the list's resourceVersion. Either way the cache is complete at the end bookmark or the end of the
// list, never earlier.
//
// A watch the server ends cleanly (timeoutSeconds) is resumed from the last resourceVersion and the cache stays
// complete: nothing was missed. After a failure (a cut connection, a refused request, a stream silent for longer
// than bookmarks allow) the watch is resumed too, but the cache is incomplete until the resumed watch delivers an
// event or bookmark at or past a resourceVersion read afresh from the server: the headers of a watch say nothing
// about what it will deliver (one from an expired resourceVersion answers 200 and then ERROR 410), and the events
// missed meanwhile arrive after them. An expired resourceVersion (410) costs a full sync.
import type { KubeConfig } from '@kubernetes/client-node';
import type { IncomingMessage } from 'node:http';
import { describeKubeError } from './config.js';
import { ApiStatusError, apiGet, forEachLine, readJson, STATUS_GONE, type Query } from './transport.js';

export interface Keyed {
  readonly namespace: string;
  readonly name: string;
  readonly resourceVersion: string;
}

export interface ReflectorOptions {
  /** First retry delay after a failure, doubled per consecutive failure, jittered down by up to half. */
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Items per page of a list, when the server pages one (only the fallback start lists). */
  pageSize: number;
  /** Watches ask the server to end them after this many seconds up to twice that. */
  watchTimeoutSeconds: number;
  /** A watch or list that delivers nothing for this long is dead: it is abandoned and retried, the cache incomplete. */
  idleTimeoutMs: number;
}

export interface ReflectorHandlers<R> {
  /** `record` entered the cache or replaced `previous`. */
  upsert(record: R, previous: R | undefined): void;
  /** `record` left the cache. */
  remove(record: R): void;
  /** The cache became complete, or stopped being so for `reason`. */
  syncChanged(synced: boolean, reason: string): void;
  /** A request failed; the next attempt starts in `retryInMs`. */
  failed(message: string, retryInMs: number): void;
}

/** How the latest full sync was made: 'none' before the first. */
export type FullSync = 'none' | 'streaming-list' | 'list';

export interface ReflectorStats {
  /** Restarts after a failure. */
  restarts: number;
  /** Full syncs: the first one, and one after each failure or expired resourceVersion. */
  lists: number;
  /**
   * Watches (and lists) abandoned because they delivered nothing, not even a bookmark, for idleTimeoutMs, or
   * because a read found the cache behind the server for longer than a live watch takes to deliver (restart()).
   */
  deadWatches: number;
  /** The cache is complete and watching. */
  watching: boolean;
  fullSync: FullSync;
  resourceVersion: string;
}

const INITIAL_EVENTS_END = 'k8s.io/initial-events-end';

/**
 * While a resumed watch has not caught up, it asks the server to end it this soon: the watch cache sends a
 * bookmark 2 s before a watch's deadline, which proves the catch-up on a resource with no events.
 */
const CATCH_UP_WATCH_SECONDS = 5;

interface ApiObject {
  metadata?: { resourceVersion?: string; annotations?: Record<string, string> };
  /** Set on the Status object of an ERROR event. */
  code?: number;
  message?: string;
}

interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: ApiObject;
}

/** resourceVersions are etcd revisions on every API server there is; ordering them is what client-go does too. */
function revision(resourceVersion: string | undefined): bigint | undefined {
  return resourceVersion && /^\d+$/.test(resourceVersion) ? BigInt(resourceVersion) : undefined;
}

interface ListResponse<Api> {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: Api[];
}

/** A watch or list that delivered nothing for idleTimeoutMs. */
class DeadStreamError extends Error {
  override readonly name = 'DeadStreamError';
}

/** The server answered a streaming list as a plain watch: a bookmark came before the initial-events-end one. */
class StreamingIgnoredError extends Error {
  override readonly name = 'StreamingIgnoredError';
}

/** A server that does not know sendInitialEvents (or has the WatchList feature off) rejects the request as invalid. */
function refusesStreaming(err: unknown): boolean {
  return err instanceof StreamingIgnoredError || (err instanceof ApiStatusError && (err.code === 400 || err.code === 422));
}

const keyOf = (r: Keyed) => `${r.namespace}/${r.name}`;

export class Reflector<Api, R extends Keyed> {
  private cache = new Map<string, R>();
  private resourceVersion = '';
  private synced = false;
  private stopped = true;
  private needsFullSync = true;
  private streamingRefused = false;
  /** The last resourceVersion expired: a fallback list must read the current state, not one not older than it. */
  private versionExpired = false;
  /** After a failure: the revision a resumed watch must reach before the cache is complete again. */
  private catchUpTo: bigint | undefined;
  private failures = 0;
  private abort: AbortController | undefined;
  private running: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly counts = { restarts: 0, lists: 0, deadWatches: 0 };
  private fullSync: FullSync = 'none';
  private restartReason: string | undefined;

  constructor(
    private readonly kc: KubeConfig,
    readonly resource: string,
    private readonly path: string,
    private readonly labelSelector: string | undefined,
    private readonly convert: (obj: Api) => R,
    private readonly options: ReflectorOptions,
    private readonly handlers: ReflectorHandlers<R>,
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.running = this.run();
  }

  /**
   * Abandons the current request as a failure: the cache is incomplete until a resumed watch catches up with a
   * freshly read version. For a stream that looks alive but is not delivering (found behind the server by a read).
   */
  restart(reason: string): void {
    if (this.stopped || !this.abort) return;
    this.restartReason = reason;
    this.counts.deadWatches++;
    this.abort.abort();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.synced = false;
    this.abort?.abort();
    this.wake?.();
    await this.running;
  }

  get(namespace: string, name: string): R | undefined {
    return this.cache.get(`${namespace}/${name}`);
  }

  list(): R[] {
    return [...this.cache.values()];
  }

  stats(): ReflectorStats {
    return { ...this.counts, watching: this.synced, fullSync: this.fullSync, resourceVersion: this.resourceVersion };
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const abort = (this.abort = new AbortController());
      try {
        if (this.needsFullSync) await this.syncAndWatch(abort);
        else await this.watch(abort);
        // The server ended the watch cleanly: resume from the last resourceVersion on the next turn.
      } catch (err) {
        abort.abort();
        if (this.stopped) break;
        if (err instanceof ApiStatusError && err.code === STATUS_GONE) {
          // Expected after an API server restart or a long disconnection: relist at once, as client-go does.
          this.needsFullSync = true;
          this.versionExpired = true;
          this.setSynced(false, `resourceVersion ${this.resourceVersion} expired (410 Gone): relisting`);
          continue;
        }
        // Resuming needs a version the server can be asked to resume from and that can be compared.
        if (revision(this.resourceVersion) === undefined) this.needsFullSync = true;
        // Read afresh on the next attempt: what changed during this failure must be covered as well.
        this.catchUpTo = undefined;
        const message = this.restartReason ?? describeKubeError(err);
        this.restartReason = undefined;
        this.setSynced(false, message);
        const ceiling = Math.min(this.options.maxBackoffMs, this.options.initialBackoffMs * 2 ** this.failures);
        const delay = Math.round(ceiling * (0.5 + Math.random() / 2));
        this.failures++;
        this.handlers.failed(message, delay);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = undefined;
        if (!this.stopped) this.counts.restarts++;
      }
    }
  }

  private setSynced(synced: boolean, reason: string): void {
    if (this.stopped || synced === this.synced) return;
    this.synced = synced;
    this.handlers.syncChanged(synced, synced ? '' : `${this.resource}: ${reason}`);
  }

  private async syncAndWatch(abort: AbortController): Promise<void> {
    if (!this.streamingRefused) {
      try {
        await this.streamingList(abort);
        return;
      } catch (err) {
        if (!refusesStreaming(err)) throw err;
        // Remembered for this process: every later full sync would be refused the same way.
        this.streamingRefused = true;
      }
    }
    await this.pagedList(abort);
    await this.watch(abort);
  }

  /** The initial events build a new cache that replaces the old one at the end bookmark; then the stream watches. */
  private async streamingList(abort: AbortController): Promise<void> {
    let initial: Map<string, R> | undefined = new Map();
    const query = {
      sendInitialEvents: true,
      // With no resourceVersion: at least as fresh as a consistent read made when the request arrives.
      resourceVersionMatch: 'NotOlderThan',
    };
    await this.stream(abort, query, undefined, (event) => {
      if (!initial) return this.apply(event);
      if (event.type === 'BOOKMARK') {
        if (event.object.metadata?.annotations?.[INITIAL_EVENTS_END] !== 'true') throw new StreamingIgnoredError();
        this.replace(initial, event.object.metadata.resourceVersion ?? '', 'streaming-list');
        initial = undefined;
      } else if (event.type === 'ADDED') {
        const record = this.convert(event.object as Api);
        initial.set(keyOf(record), record);
      }
    });
    if (initial) throw new Error('the streaming list ended before its initial-events-end bookmark');
  }

  private async pagedList(abort: AbortController): Promise<void> {
    const items = new Map<string, R>();
    // client-go's choice: the watch cache's state first, not older than the last seen after a failure, and a
    // consistent read once that version expired.
    const version = this.versionExpired ? undefined : this.resourceVersion || '0';
    const first: Query = {
      resourceVersion: version,
      resourceVersionMatch: version && version !== '0' ? 'NotOlderThan' : undefined,
    };
    let query: Query = first;
    let resourceVersion = '';
    for (;;) {
      const page = await this.idleGuard(abort, 'list', async (alive) => {
        const res = await this.request(abort, { ...query, limit: this.options.pageSize });
        return readJson<ListResponse<Api>>(res, alive);
      });
      for (const item of page.items ?? []) {
        const record = this.convert(item);
        items.set(keyOf(record), record);
      }
      resourceVersion = page.metadata?.resourceVersion ?? '';
      if (!page.metadata?.continue) break;
      query = { continue: page.metadata.continue };
    }
    this.replace(items, resourceVersion, 'list');
  }

  /** Resumes the watch; after a failure, catches up to a freshly read version before calling the cache complete. */
  private async watch(abort: AbortController): Promise<void> {
    if (!this.synced) this.catchUpTo ??= await this.currentRevision(abort);
    const started = Date.now();
    let events = 0;
    const query = { resourceVersion: this.resourceVersion };
    await this.stream(abort, query, this.synced ? undefined : CATCH_UP_WATCH_SECONDS, (event) => {
      events++;
      this.apply(event);
      const reached = revision(event.object.metadata?.resourceVersion);
      if (this.catchUpTo !== undefined && reached !== undefined && reached >= this.catchUpTo) {
        this.catchUpTo = undefined;
        this.failures = 0;
        this.setSynced(true, '');
      }
    });
    // A server that closes every watch at once would otherwise be asked again in a tight loop.
    if (events === 0 && Date.now() - started < 1000) throw new Error('the API server closed the watch at once');
  }

  /** The collection's current revision from a consistent read of one item. */
  private async currentRevision(abort: AbortController): Promise<bigint> {
    const list = await this.idleGuard(abort, 'list', async (alive) =>
      readJson<ListResponse<Api>>(await this.request(abort, { limit: 1 }), alive),
    );
    const current = revision(list.metadata?.resourceVersion);
    if (current === undefined) throw new Error(`the API server listed ${this.resource} without a resourceVersion`);
    return current;
  }

  /** One watch request, its events in order; resolves when the server ends it cleanly. */
  private async stream(
    abort: AbortController,
    query: Query,
    seconds: number | undefined,
    onEvent: (event: WatchEvent) => void,
  ): Promise<void> {
    // Spread, so that watches started together do not all end together.
    const timeoutSeconds = seconds ?? Math.floor(this.options.watchTimeoutSeconds * (1 + Math.random()));
    await this.idleGuard(abort, 'watch', async (alive) => {
      const res = await this.request(abort, { ...query, watch: 1, allowWatchBookmarks: true, timeoutSeconds });
      alive();
      await forEachLine(res, (line) => {
        alive();
        const event = JSON.parse(line) as WatchEvent;
        if (event.type === 'ERROR') throw new ApiStatusError(event.object.code ?? 0, event.object.message);
        onEvent(event);
      });
    });
  }

  private request(abort: AbortController, query: Query): Promise<IncomingMessage> {
    return apiGet(this.kc, this.path, { ...query, labelSelector: this.labelSelector }, abort.signal);
  }

  /**
   * Runs `work`, which calls `alive` whenever data arrives; when nothing arrives for idleTimeoutMs the request is
   * aborted and counted. Bookmarks come about once a minute on an idle watch, so silence beyond that means the
   * connection or the server is stuck, which TCP alone may not notice for many minutes.
   */
  private async idleGuard<T>(abort: AbortController, what: string, work: (alive: () => void) => Promise<T>): Promise<T> {
    let dead = false;
    let timer: NodeJS.Timeout | undefined;
    const alive = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        dead = true;
        abort.abort();
      }, this.options.idleTimeoutMs);
    };
    alive();
    try {
      return await work(alive);
    } catch (err) {
      if (!dead) throw err;
      this.counts.deadWatches++;
      throw new DeadStreamError(`${what} delivered nothing for ${this.options.idleTimeoutMs / 1000} s: abandoned`);
    } finally {
      clearTimeout(timer);
    }
  }

  private apply(event: WatchEvent): void {
    if (event.type === 'ADDED' || event.type === 'MODIFIED') {
      const record = this.convert(event.object as Api);
      const previous = this.cache.get(keyOf(record));
      this.cache.set(keyOf(record), record);
      this.handlers.upsert(record, previous);
    } else if (event.type === 'DELETED') {
      const key = keyOf(this.convert(event.object as Api));
      const previous = this.cache.get(key);
      if (previous && this.cache.delete(key)) this.handlers.remove(previous);
    }
    const version = event.object.metadata?.resourceVersion;
    if (version) this.resourceVersion = version;
  }

  /** Swaps in a complete cache, reports what differs from the old one, and declares the cache complete. */
  private replace(items: Map<string, R>, resourceVersion: string, how: FullSync): void {
    const previous = this.cache;
    this.cache = items;
    for (const [key, old] of previous) if (!items.has(key)) this.handlers.remove(old);
    for (const [key, record] of items) {
      const old = previous.get(key);
      if (old?.resourceVersion !== record.resourceVersion) this.handlers.upsert(record, old);
    }
    this.resourceVersion = resourceVersion;
    this.needsFullSync = false;
    this.versionExpired = false;
    this.catchUpTo = undefined;
    this.failures = 0;
    this.counts.lists++;
    this.fullSync = how;
    this.setSynced(true, '');
  }
}
