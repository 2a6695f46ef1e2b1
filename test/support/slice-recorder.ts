// The judge's view of the API: an admin watch on one namespace's EndpointSlices, straight to kube-apiserver (never
// through the agent's fault proxy), recording which endpoints were serving at which moment. The test writes every
// slice through it, so it also knows which writes were in flight when, and can tell for any instant which API states
// could have been the current one then.
import type { ClientRequest } from 'node:http';
import { request } from 'node:https';
import { addressPortKey } from '../../src/reconcile/keys.js';
import { until } from './poll.js';
import type { KubeCluster } from './kube-cluster.js';

interface Slice {
  metadata: { name: string; resourceVersion: string; labels?: Record<string, string> };
  ports?: { port?: number }[];
  endpoints?: { addresses: string[]; conditions?: { serving?: boolean | null } }[];
}

interface State {
  resourceVersion: number;
  /** When the recorder saw it (ms since the epoch). */
  seenAt: number;
  /** "namespace/service realServer" of every serving endpoint. */
  serving: ReadonlySet<string>;
}

/** "namespace/service" and "address:port" as the agent logs them in a deletion's `service` and `realServer`. */
export const servingKey = (service: string, realServer: string): string => `${service} ${realServer}`;

export class SliceRecorder {
  private readonly slices = new Map<string, Slice>();
  private readonly states: State[] = [];
  private readonly writes: { sentAt: number; resourceVersion: number }[] = [];
  private current: ClientRequest | undefined;
  private stopped = false;

  private constructor(
    private readonly cluster: KubeCluster,
    private readonly namespace: string,
  ) {}

  static async start(cluster: KubeCluster, namespace: string): Promise<SliceRecorder> {
    const recorder = new SliceRecorder(cluster, namespace);
    void recorder.loop();
    await until(() => recorder.states.length > 0, 'the recorder to list the slices', 120_000);
    return recorder;
  }

  stop(): void {
    this.stopped = true;
    this.current?.destroy();
  }

  /** Creates or replaces a slice as admin; resolves once the recorder has seen the write. */
  async put(slice: Record<string, unknown>): Promise<void> {
    const name = (slice.metadata as { name: string }).name;
    const path = `/apis/discovery.k8s.io/v1/namespaces/${this.namespace}/endpointslices`;
    const sentAt = Date.now();
    // An update without a resourceVersion is unconditional: the test is the only writer.
    const written = this.slices.has(name)
      ? await this.cluster.call<Slice>('PUT', `${path}/${name}`, slice)
      : await this.cluster.call<Slice>('POST', path, slice);
    const resourceVersion = Number(written.metadata.resourceVersion);
    this.writes.push({ sentAt, resourceVersion });
    await until(() => this.latest() >= resourceVersion, `the recorder to see ${name} at ${resourceVersion}`, 120_000);
  }

  /**
   * Whether the endpoint was serving in every API state that may have been current at `at`: the latest one the
   * recorder had seen by then, and any later one whose write had already been sent (its commit may have preceded
   * `at` while its event had not reached the recorder yet).
   */
  servingThroughout(key: string, at: number): boolean {
    const seen = this.states.filter((s) => s.seenAt <= at).at(-1);
    const inFlight = Math.max(0, ...this.writes.filter((w) => w.sentAt <= at).map((w) => w.resourceVersion));
    const candidates = [
      ...(seen ? [seen] : []),
      ...this.states.filter((s) => s.resourceVersion > (seen?.resourceVersion ?? 0) && s.resourceVersion <= inFlight),
    ];
    return candidates.length > 0 && candidates.every((s) => s.serving.has(key));
  }

  private latest(): number {
    return this.states.at(-1)?.resourceVersion ?? 0;
  }

  private record(resourceVersion: number): void {
    const serving = new Set<string>();
    for (const slice of this.slices.values()) {
      const service = `${this.namespace}/${slice.metadata.labels?.['kubernetes.io/service-name'] ?? ''}`;
      for (const endpoint of slice.endpoints ?? []) {
        // kube-proxy's reading: a missing serving condition means serving.
        if (endpoint.conditions?.serving === false) continue;
        for (const address of endpoint.addresses) {
          for (const port of slice.ports ?? []) serving.add(servingKey(service, addressPortKey(address, port.port ?? 0)));
        }
      }
    }
    this.states.push({ resourceVersion, seenAt: Date.now(), serving });
  }

  /** List, then watch from the list; after any end or error (an API server restart, a 410) list again. */
  private async loop(): Promise<void> {
    const path = `/apis/discovery.k8s.io/v1/namespaces/${this.namespace}/endpointslices`;
    while (!this.stopped) {
      try {
        const list = await this.cluster.call<{ metadata: { resourceVersion: string }; items: Slice[] }>('GET', path);
        this.slices.clear();
        for (const item of list.items) this.slices.set(item.metadata.name, item);
        this.record(Number(list.metadata.resourceVersion));
        await this.watch(`${path}?watch=1&allowWatchBookmarks=true&resourceVersion=${list.metadata.resourceVersion}`);
      } catch {
        // The API server is restarting: try again shortly.
      }
      await new Promise((r) => setTimeout(r, 300));
    }
  }

  private watch(path: string): Promise<void> {
    return new Promise((resolve) => {
      const req = request(
        `${this.cluster.url}${path}`,
        { ca: this.cluster.ca, headers: { authorization: `Bearer ${this.cluster.users.admin.token}` } },
        (res) => {
          let buffered = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buffered += chunk;
            let newline: number;
            while ((newline = buffered.indexOf('\n')) >= 0) {
              const line = buffered.slice(0, newline);
              buffered = buffered.slice(newline + 1);
              if (line.trim() !== '') this.onEvent(JSON.parse(line) as { type: string; object: Slice }, req);
            }
          });
          res.on('error', () => undefined); // a destroyed or cut stream: 'close' follows
          res.on('close', () => resolve());
        },
      );
      req.on('error', () => resolve());
      req.end();
      this.current = req;
    });
  }

  private onEvent(event: { type: string; object: Slice }, req: ClientRequest): void {
    if (event.type === 'ERROR') {
      req.destroy(); // e.g. 410 Gone: the loop lists again
      return;
    }
    if (event.type === 'ADDED' || event.type === 'MODIFIED') this.slices.set(event.object.metadata.name, event.object);
    else if (event.type === 'DELETED') this.slices.delete(event.object.metadata.name);
    else return; // BOOKMARK: nothing changed
    this.record(Number(event.object.metadata.resourceVersion));
  }
}
