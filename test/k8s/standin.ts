// A local stand-in for the Kubernetes API server: list and watch of Services and EndpointSlices, with the
// resourceVersion, continue-token, bookmark and 410 Gone behaviour client libraries depend on, and controls
// for tests to break things on purpose.
// Kept for one use only: the benchmark's agent phase inside the TCG VM (test/bench/in-vm.ts), where the real
// kube-apiserver cannot be filled with 10,000 Services and 100,000 endpoints within the benchmark's time. Every
// test of the Kubernetes layer and of the agent runs against the real kube-apiserver.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Kind = 'Service' | 'EndpointSlice';
export type Verb = 'list' | 'watch';

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
    labels?: Record<string, string>;
    [field: string]: unknown;
  };
  [field: string]: unknown;
}

interface ResourceType {
  kind: Kind;
  listKind: string;
  apiVersion: string;
  prefix: string;
  plural: string;
}

const RESOURCE_TYPES: readonly ResourceType[] = [
  { kind: 'Service', listKind: 'ServiceList', apiVersion: 'v1', prefix: '/api/v1', plural: 'services' },
  {
    kind: 'EndpointSlice',
    listKind: 'EndpointSliceList',
    apiVersion: 'discovery.k8s.io/v1',
    prefix: '/apis/discovery.k8s.io/v1',
    plural: 'endpointslices',
  },
];

function typeOfKind(kind: string | undefined): ResourceType {
  const type = RESOURCE_TYPES.find((t) => t.kind === kind);
  if (!type) throw new Error(`the stand-in serves Service and EndpointSlice, not ${kind}`);
  return type;
}

/** The collection a path names: cluster-wide, or one namespace's. */
function route(pathname: string): { type: ResourceType; namespace?: string } | undefined {
  for (const type of RESOURCE_TYPES) {
    if (pathname === `${type.prefix}/${type.plural}`) return { type };
    const prefix = `${type.prefix}/namespaces/`;
    const suffix = `/${type.plural}`;
    if (pathname.startsWith(prefix) && pathname.endsWith(suffix)) {
      const namespace = pathname.slice(prefix.length, -suffix.length);
      if (namespace && !namespace.includes('/')) return { type, namespace };
    }
  }
  return undefined;
}

type Requirement = { key: string; op: 'exists' | '!exists' | '=' | '!='; value?: string };

/** Equality-based selectors only: `key`, `!key`, `key=value`, `key==value`, `key!=value`, comma-joined. */
export function parseLabelSelector(text: string): Requirement[] {
  return text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map((part) => {
      const m = /^(!?)([\w./-]+)\s*(?:(!=|==|=)\s*([\w.-]*))?$/.exec(part);
      if (!m || (m[1] && m[3])) throw new Error(`unable to parse requirement: ${part}`);
      const key = m[2] as string;
      if (!m[3]) return { key, op: m[1] ? '!exists' : 'exists' };
      return { key, op: m[3] === '!=' ? '!=' : '=', value: m[4] ?? '' };
    });
}

function matches(selector: readonly Requirement[], obj: KubeObject): boolean {
  const labels = obj.metadata.labels ?? {};
  return selector.every(({ key, op, value }) => {
    const present = Object.hasOwn(labels, key);
    if (op === 'exists') return present;
    if (op === '!exists') return !present;
    // As the API server: `key!=value` also selects objects without the key.
    return op === '=' ? labels[key] === value : labels[key] !== value;
  });
}

interface HistoryEntry {
  rv: number;
  type: ResourceType;
  /** The object after the change; for a deletion, its last state. */
  object: KubeObject;
  /** The object before the change; absent for a creation. */
  previous?: KubeObject;
  deleted: boolean;
}

interface Watcher {
  type: ResourceType;
  namespace?: string;
  selector: Requirement[];
  bookmarks: boolean;
  res: ServerResponse;
  timer?: NodeJS.Timeout;
}

interface CollectionRequest {
  type: ResourceType;
  namespace?: string;
  selector: Requirement[];
  query: URLSearchParams;
}

interface ContinueToken {
  snapshotId: string;
  offset: number;
}

interface Failure {
  path: string;
  status: number;
  remaining: number;
  verb?: Verb;
}

export interface StandInOptions {
  /** Events kept for watches that resume; older resourceVersions answer 410. Default 1000. */
  historyLimit?: number;
  /** Send BOOKMARK events to watches that allow them this often. Default: only on bookmark(). */
  bookmarkIntervalMs?: number;
}

const REASONS: Readonly<Record<number, string>> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'NotFound',
  410: 'Expired',
  429: 'TooManyRequests',
  500: 'InternalError',
  503: 'ServiceUnavailable',
};

function status(code: number, message: string) {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    metadata: {},
    status: 'Failure',
    message,
    reason: REASONS[code] ?? 'Unknown',
    code,
  };
}

function key(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export class StandIn {
  readonly url: string;
  private rv = 0;
  /** Watches from a resourceVersion below this answer 410: the events after it are gone. */
  private compactedRV = 0;
  private history: HistoryEntry[] = [];
  private readonly objects = new Map<Kind, Map<string, KubeObject>>(RESOURCE_TYPES.map((t) => [t.kind, new Map()]));
  private readonly watchers = new Set<Watcher>();
  private failures: Failure[] = [];
  private readonly counts: Record<Verb, Map<string, number>> = { list: new Map(), watch: new Map() };
  /** Paged lists in progress: the items of the first page's snapshot, as the API server's etcd read is one. */
  private readonly snapshots = new Map<string, { rv: number; items: KubeObject[] }>();
  private readonly tempDirs: string[] = [];
  private readonly bookmarkTimer?: NodeJS.Timeout;

  private constructor(
    private readonly server: Server,
    private readonly historyLimit: number,
    bookmarkIntervalMs: number | undefined,
  ) {
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (bookmarkIntervalMs) this.bookmarkTimer = setInterval(() => this.bookmark(), bookmarkIntervalMs).unref();
  }

  static async start(options: StandInOptions = {}): Promise<StandIn> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const standin = new StandIn(server, options.historyLimit ?? 1000, options.bookmarkIntervalMs);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => standin.handle(req, res));
    return standin;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  /** Creates or replaces an object (its `kind` picks the collection); returns it as stored. */
  apply(input: KubeObject): KubeObject {
    const type = typeOfKind(input.kind);
    const object = structuredClone(input);
    object.apiVersion = type.apiVersion;
    object.kind = type.kind;
    object.metadata.namespace ??= 'default';
    const store = this.objects.get(type.kind) as Map<string, KubeObject>;
    const k = key(object.metadata.namespace, object.metadata.name);
    const previous = store.get(k);
    object.metadata.uid = previous?.metadata.uid ?? randomUUID();
    object.metadata.resourceVersion = String(++this.rv);
    store.set(k, object);
    this.record({ rv: this.rv, type, object, previous, deleted: false });
    return structuredClone(object);
  }

  /** False when there was no such object. */
  delete(kind: Kind, namespace: string, name: string): boolean {
    const type = typeOfKind(kind);
    const store = this.objects.get(kind) as Map<string, KubeObject>;
    const previous = store.get(key(namespace, name));
    if (!previous) return false;
    store.delete(key(namespace, name));
    this.record({ rv: ++this.rv, type, object: previous, previous, deleted: true });
    return true;
  }

  /** The next `count` requests for `path` (optionally only lists or only watches) answer `status`. */
  failNext(failure: { path: string; status: number; count?: number; verb?: Verb }): void {
    const { path, status, count = 1, verb } = failure;
    this.failures.push({ path, status, remaining: count, verb });
  }

  /** Cuts every open watch connection without ending the response, as a network failure does. */
  dropWatches(): void {
    for (const w of this.watchers) this.closeWatch(w, 'destroy');
  }

  /**
   * Forgets the event history, as etcd compaction does: watches from any earlier resourceVersion answer 410,
   * open watches get an ERROR event with code 410 and end, and paged lists in progress can no longer continue.
   */
  expireHistory(): void {
    this.compactedRV = this.rv;
    this.history = [];
    this.snapshots.clear();
    for (const w of this.watchers) {
      this.send(w, { type: 'ERROR', object: status(410, `too old resource version: ${this.rv}`) });
      this.closeWatch(w, 'end');
    }
  }

  /** Sends a BOOKMARK with the current resourceVersion to every open watch that allows bookmarks. */
  bookmark(): void {
    for (const w of this.watchers) {
      if (w.bookmarks) {
        const { kind, apiVersion } = w.type;
        const metadata = { resourceVersion: this.resourceVersion };
        this.send(w, { type: 'BOOKMARK', object: { kind, apiVersion, metadata } });
      }
    }
  }

  /** Requests served so far for a URL path (the path alone, without query). */
  requests(verb: Verb, path: string): number {
    return this.counts[verb].get(path) ?? 0;
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  /** A kubeconfig for this server, in a temporary file removed by close(). */
  kubeconfigFile(): string {
    const dir = mkdtempSync(join(tmpdir(), 'standin-'));
    this.tempDirs.push(dir);
    const file = join(dir, 'kubeconfig');
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      'current-context': 'standin',
      // client-node refuses an http:// server unless TLS verification is explicitly off.
      clusters: [{ name: 'standin', cluster: { server: this.url, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'standin', user: { token: 'standin' } }],
      contexts: [{ name: 'standin', context: { cluster: 'standin', user: 'standin' } }],
    };
    writeFileSync(file, JSON.stringify(config, null, 2));
    return file;
  }

  async close(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    this.dropWatches();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    for (const dir of this.tempDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }

  private record(entry: HistoryEntry): void {
    this.history.push(entry);
    if (this.history.length > this.historyLimit) this.compactedRV = (this.history.shift() as HistoryEntry).rv;
    for (const w of this.watchers) this.deliver(w, entry);
  }

  /**
   * What a watcher sees of a change, as the API server's watch cache shows it: an object entering its selector
   * is ADDED, one leaving it DELETED, with its previous content at the change's resourceVersion.
   */
  private deliver(w: Watcher, entry: HistoryEntry): void {
    if (entry.type !== w.type || (w.namespace && entry.object.metadata.namespace !== w.namespace)) return;
    const { previous } = entry;
    const before = previous !== undefined && matches(w.selector, previous);
    const after = !entry.deleted && matches(w.selector, entry.object);
    if (after) this.send(w, { type: before ? 'MODIFIED' : 'ADDED', object: entry.object });
    else if (before) {
      const object = { ...previous, metadata: { ...previous.metadata, resourceVersion: String(entry.rv) } };
      this.send(w, { type: 'DELETED', object });
    }
  }

  private send(w: Watcher, event: { type: string; object: unknown }): void {
    w.res.write(`${JSON.stringify(event)}\n`);
  }

  private closeWatch(w: Watcher, how: 'end' | 'destroy'): void {
    this.watchers.delete(w);
    clearTimeout(w.timer);
    if (how === 'end') w.res.end();
    else w.res.socket?.destroy();
  }

  private takeFailure(path: string, verb: Verb): Failure | undefined {
    const failure = this.failures.find((f) => f.path === path && (f.verb === undefined || f.verb === verb));
    if (failure && --failure.remaining === 0) this.failures = this.failures.filter((f) => f !== failure);
    return failure;
  }

  private reply(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', this.url);
    const target = route(url.pathname);
    if (req.method !== 'GET' || !target) {
      this.reply(res, 404, status(404, 'the server could not find the requested resource'));
      return;
    }
    const query = url.searchParams;
    const verb: Verb = query.get('watch') === 'true' || query.get('watch') === '1' ? 'watch' : 'list';
    this.counts[verb].set(url.pathname, this.requests(verb, url.pathname) + 1);
    const failure = this.takeFailure(url.pathname, verb);
    if (failure) {
      this.reply(res, failure.status, status(failure.status, `injected failure for ${verb} ${url.pathname}`));
      return;
    }
    let selector: Requirement[];
    try {
      selector = parseLabelSelector(query.get('labelSelector') ?? '');
    } catch (err) {
      this.reply(res, 400, status(400, (err as Error).message));
      return;
    }
    if (verb === 'watch' && query.has('sendInitialEvents')) {
      // As kube-apiserver with the WatchList feature off: clients fall back to a list.
      const message = 'sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled';
      this.reply(res, 422, status(422, message));
      return;
    }
    const request = { ...target, selector, query };
    if (verb === 'watch') this.watch(res, request);
    else this.list(res, request);
  }

  private current(type: ResourceType, namespace: string | undefined, selector: Requirement[]): KubeObject[] {
    const store = this.objects.get(type.kind) as Map<string, KubeObject>;
    return [...store.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, obj]) => obj)
      .filter((obj) => (!namespace || obj.metadata.namespace === namespace) && matches(selector, obj));
  }

  private list(res: ServerResponse, { type, namespace, selector, query }: CollectionRequest): void {
    const limit = Number(query.get('limit') ?? 0);
    let snapshotId: string;
    let offset = 0;
    const token = query.get('continue');
    if (token) {
      try {
        ({ snapshotId, offset } = JSON.parse(Buffer.from(token, 'base64url').toString()) as ContinueToken);
      } catch {
        this.reply(res, 400, status(400, 'continue key is not valid'));
        return;
      }
      if (!this.snapshots.has(snapshotId)) {
        const message = 'The provided continue parameter is too old to display a consistent list result.';
        this.reply(res, 410, status(410, message));
        return;
      }
    } else {
      snapshotId = randomUUID();
      this.snapshots.set(snapshotId, { rv: this.rv, items: this.current(type, namespace, selector) });
    }
    const snapshot = this.snapshots.get(snapshotId) as { rv: number; items: KubeObject[] };
    const end = limit > 0 ? offset + limit : snapshot.items.length;
    const metadata: Record<string, unknown> = { resourceVersion: String(snapshot.rv) };
    if (end < snapshot.items.length) {
      metadata.continue = Buffer.from(JSON.stringify({ snapshotId, offset: end })).toString('base64url');
      metadata.remainingItemCount = snapshot.items.length - end;
    } else {
      this.snapshots.delete(snapshotId);
    }
    // List items carry no kind or apiVersion: the list's own say what they are.
    const items = snapshot.items.slice(offset, end).map(({ kind: _kind, apiVersion: _apiVersion, ...rest }) => rest);
    this.reply(res, 200, { kind: type.listKind, apiVersion: type.apiVersion, metadata, items });
  }

  private watch(res: ServerResponse, { type, namespace, selector, query }: CollectionRequest): void {
    const from = query.get('resourceVersion') ?? '';
    // Unset or "0": start with the current state as ADDED events.
    const fromState = from === '' || from === '0';
    const fromRV = Number(from);
    if (!fromState && !Number.isSafeInteger(fromRV)) {
      this.reply(res, 400, status(400, `invalid resource version: ${from}`));
      return;
    }
    if (!fromState && fromRV < this.compactedRV) {
      this.reply(res, 410, status(410, `too old resource version: ${fromRV} (${this.compactedRV})`));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    // Headers go out now, as the API server's do: a client waits for them before it counts as watching.
    res.flushHeaders();
    const w: Watcher = { type, namespace, selector, bookmarks: query.get('allowWatchBookmarks') === 'true', res };
    if (fromState) {
      for (const object of this.current(type, namespace, selector)) this.send(w, { type: 'ADDED', object });
    } else {
      for (const entry of this.history) if (entry.rv > fromRV) this.deliver(w, entry);
    }
    this.watchers.add(w);
    const timeoutSeconds = Number(query.get('timeoutSeconds') ?? 0);
    if (timeoutSeconds > 0) w.timer = setTimeout(() => this.closeWatch(w, 'end'), timeoutSeconds * 1000);
    res.on('close', () => {
      this.watchers.delete(w);
      clearTimeout(w.timer);
    });
  }
}
