// The stand-in's own protocol behaviour, checked over raw HTTP so the informer tests can trust it.
import assert from 'node:assert/strict';
import { get, type IncomingHttpHeaders } from 'node:http';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { KubeConfig } from '@kubernetes/client-node';
import { parseLabelSelector, StandIn, type KubeObject } from './standin.js';

const SERVICES = '/api/v1/services';

function service(namespace: string, name: string, labels: Record<string, string> = {}): KubeObject {
  return { kind: 'Service', metadata: { namespace, name, labels }, spec: { clusterIP: '10.96.0.1' } };
}

async function getJSON(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.json() };
}

interface Event {
  type: string;
  object: any;
}

/** An open watch: its response headers, its events in order, and how the stream ended. */
interface WatchStream {
  status: number;
  headers: IncomingHttpHeaders;
  next(): Promise<Event>;
  /** 'end' for a clean end of the chunked body, 'aborted' when the connection was cut. */
  ended: Promise<'end' | 'aborted'>;
  close(): void;
}

function watch(url: string): Promise<WatchStream> {
  return new Promise((resolve, reject) => {
    const req = get(url, (res) => {
      const queued: Event[] = [];
      const waiting: ((e: Event) => void)[] = [];
      const ended = new Promise<'end' | 'aborted'>((done) => {
        res.on('end', () => done('end'));
        res.on('aborted', () => done('aborted'));
        res.on('error', () => done('aborted'));
      });
      const lines = createInterface({ input: res });
      // readline re-emits the response's errors; `ended` already reports them.
      lines.on('error', () => {});
      lines.on('line', (line) => {
        const event = JSON.parse(line) as Event;
        const waiter = waiting.shift();
        if (waiter) waiter(event);
        else queued.push(event);
      });
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        next: () => {
          const event = queued.shift();
          return event ? Promise.resolve(event) : new Promise((r) => waiting.push(r));
        },
        ended,
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}

/** Per test, so one that hangs fails alone. */
const T = { timeout: 5000 };

describe('stand-in API server', () => {
  let api: StandIn;
  before(async () => {
    api = await StandIn.start({ historyLimit: 50 });
  });
  after(() => api.close());

  it('lists at the global resourceVersion, in key order, filtered by namespace and labels', T, async () => {
    api.apply(service('b', 'web', { app: 'web', tier: 'front' }));
    api.apply(service('a', 'db', { app: 'db' }));
    const last = api.apply(service('a', 'plain'));
    assert.equal(last.metadata.resourceVersion, api.resourceVersion);

    const all = await getJSON(`${api.url}${SERVICES}`);
    assert.equal(all.status, 200);
    assert.equal(all.body.kind, 'ServiceList');
    assert.equal(all.body.apiVersion, 'v1');
    assert.equal(all.body.metadata.resourceVersion, api.resourceVersion);
    assert.deepEqual(
      all.body.items.map((i: KubeObject) => `${i.metadata.namespace}/${i.metadata.name}`),
      ['a/db', 'a/plain', 'b/web'],
    );
    assert.equal(all.body.items[0].kind, undefined);

    const names = async (query: string, path = SERVICES) =>
      (await getJSON(`${api.url}${path}?labelSelector=${encodeURIComponent(query)}`)).body.items.map(
        (i: KubeObject) => i.metadata.name,
      );
    assert.deepEqual(await names('app'), ['db', 'web']);
    assert.deepEqual(await names('!app'), ['plain']);
    assert.deepEqual(await names('app=web'), ['web']);
    assert.deepEqual(await names('app==web,tier=front'), ['web']);
    assert.deepEqual(await names('app!=web'), ['db', 'plain']);
    assert.deepEqual(await names('', '/api/v1/namespaces/a/services'), ['db', 'plain']);

    const bad = await getJSON(`${api.url}${SERVICES}?labelSelector=${encodeURIComponent('app in (a)')}`);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.kind, 'Status');
    assert.throws(() => parseLabelSelector('!app=web'));
  });

  it('pages a list from one snapshot and expires its continue token with the history', T, async () => {
    for (let i = 0; i < 5; i++) api.apply(service('paged', `s${i}`, { paged: 'yes' }));
    const url = `${api.url}${SERVICES}?labelSelector=paged&limit=2`;
    const first = await getJSON(url);
    assert.equal(first.body.items.length, 2);
    assert.equal(first.body.metadata.remainingItemCount, 3);
    const rv = first.body.metadata.resourceVersion;

    api.delete('Service', 'paged', 's4');
    api.apply(service('paged', 's3', { paged: 'yes', changed: 'yes' }));
    const second = await getJSON(`${url}&continue=${first.body.metadata.continue}`);
    const third = await getJSON(`${url}&continue=${second.body.metadata.continue}`);
    assert.equal(second.body.metadata.resourceVersion, rv);
    assert.deepEqual(
      [...first.body.items, ...second.body.items, ...third.body.items].map((i: KubeObject) => i.metadata.name),
      ['s0', 's1', 's2', 's3', 's4'],
    );
    assert.equal(third.body.items[0].metadata.labels.changed, undefined);
    assert.equal(third.body.metadata.continue, undefined);

    const again = await getJSON(url);
    api.expireHistory();
    const expired = await getJSON(`${url}&continue=${again.body.metadata.continue}`);
    assert.equal(expired.status, 410);
    assert.equal(expired.body.reason, 'Expired');
  });

  it('streams chunked events after the given resourceVersion, seen through the label selector', T, async () => {
    const from = api.resourceVersion;
    api.apply(service('w', 'before', { watched: 'yes' }));
    const stream = await watch(`${api.url}${SERVICES}?watch=true&resourceVersion=${from}&labelSelector=watched`);
    assert.equal(stream.status, 200);
    assert.equal(stream.headers['transfer-encoding'], 'chunked');
    const replayed = await stream.next();
    assert.equal(replayed.type, 'ADDED');
    assert.equal(replayed.object.kind, 'Service');
    assert.equal(replayed.object.metadata.name, 'before');

    api.apply(service('w', 'unwatched'));
    api.apply(service('w', 'before', { watched: 'yes', v: '2' }));
    api.apply(service('w', 'before')); // leaves the selector
    api.apply(service('w', 'before', { watched: 'yes' })); // enters it again
    api.delete('Service', 'w', 'before');
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      const e = await stream.next();
      seen.push(`${e.type} ${e.object.metadata.resourceVersion} ${JSON.stringify(e.object.metadata.labels)}`);
    }
    const rv = Number(api.resourceVersion);
    // Leaving the selector reads as a deletion of what the watcher last saw, at the change's resourceVersion.
    assert.deepEqual(seen, [
      `MODIFIED ${rv - 3} {"watched":"yes","v":"2"}`,
      `DELETED ${rv - 2} {"watched":"yes","v":"2"}`,
      `ADDED ${rv - 1} {"watched":"yes"}`,
      `DELETED ${rv} {"watched":"yes"}`,
    ]);
    stream.close();
  });

  it('starts a watch without a resourceVersion with the current state, namespaced', T, async () => {
    api.apply(service('fresh', 'one'));
    api.apply(service('other', 'two'));
    const stream = await watch(`${api.url}/api/v1/namespaces/fresh/services?watch=1`);
    const first = await stream.next();
    assert.deepEqual([first.type, first.object.metadata.name], ['ADDED', 'one']);
    api.apply(service('other', 'three'));
    api.apply(service('fresh', 'four'));
    const second = await stream.next();
    assert.deepEqual([second.type, second.object.metadata.name], ['ADDED', 'four']);
    stream.close();
  });

  it('answers 410 for a resourceVersion older than the history, and an ERROR event on open watches', T, async () => {
    const small = await StandIn.start({ historyLimit: 2 });
    try {
      const old = small.apply(service('x', 'a')).metadata.resourceVersion;
      small.apply(service('x', 'b'));
      const ok = await watch(`${small.url}${SERVICES}?watch=true&resourceVersion=${old}`);
      assert.equal(ok.status, 200);
      assert.equal((await ok.next()).object.metadata.name, 'b');
      small.apply(service('x', 'c'));
      small.apply(service('x', 'd'));
      assert.equal((await ok.next()).object.metadata.name, 'c');
      assert.equal((await ok.next()).object.metadata.name, 'd');

      const gone = await getJSON(`${small.url}${SERVICES}?watch=true&resourceVersion=${old}`);
      assert.equal(gone.status, 410);
      assert.deepEqual([gone.body.kind, gone.body.code, gone.body.reason], ['Status', 410, 'Expired']);

      small.expireHistory();
      const error = await ok.next();
      assert.equal(error.type, 'ERROR');
      assert.equal(error.object.code, 410);
      assert.equal(await ok.ended, 'end');
      assert.equal(small.openWatches, 0);
      const previous = Number(small.resourceVersion) - 1;
      const current = await getJSON(`${small.url}${SERVICES}?watch=true&resourceVersion=${previous}`);
      assert.equal(current.status, 410);
    } finally {
      await small.close();
    }
  });

  it('sends bookmarks only to watches that allow them', T, async () => {
    const plain = await watch(`${api.url}${SERVICES}?watch=true&resourceVersion=${api.resourceVersion}`);
    const slices = '/apis/discovery.k8s.io/v1/endpointslices';
    const marked = await watch(
      `${api.url}${slices}?watch=true&allowWatchBookmarks=true&resourceVersion=${api.resourceVersion}`,
    );
    api.apply(service('bm', 'x'));
    api.bookmark();
    const bookmark = await marked.next();
    assert.equal(bookmark.type, 'BOOKMARK');
    assert.equal(bookmark.object.kind, 'EndpointSlice');
    assert.equal(bookmark.object.metadata.resourceVersion, api.resourceVersion);
    assert.equal((await plain.next()).type, 'ADDED');
    api.apply(service('bm', 'y'));
    assert.equal((await plain.next()).type, 'ADDED', 'no BOOKMARK in between');
    plain.close();
    marked.close();
  });

  it('ends a watch cleanly after timeoutSeconds, and cuts watches on dropWatches()', T, async () => {
    const from = api.resourceVersion;
    const timed = await watch(`${api.url}${SERVICES}?watch=true&timeoutSeconds=1&resourceVersion=${from}`);
    assert.equal(await timed.ended, 'end');

    const dropped = await watch(`${api.url}${SERVICES}?watch=true&resourceVersion=${api.resourceVersion}`);
    api.dropWatches();
    assert.equal(await dropped.ended, 'aborted');
  });

  it('injects failures per path and verb, and counts requests', T, async () => {
    const path = '/apis/discovery.k8s.io/v1/endpointslices';
    const lists = api.requests('list', path);
    const watches = api.requests('watch', path);
    api.failNext({ path, status: 403, count: 2, verb: 'list' });
    api.failNext({ path, status: 500 });
    const watchFailure = await getJSON(`${api.url}${path}?watch=true`);
    assert.equal(watchFailure.status, 500, 'the list-only 403 lets the watch by');
    assert.equal(watchFailure.body.reason, 'InternalError');
    assert.equal((await getJSON(`${api.url}${path}`)).body.reason, 'Forbidden');
    assert.equal((await getJSON(`${api.url}${path}`)).status, 403);
    const ok = await getJSON(`${api.url}${path}`);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.kind, 'EndpointSliceList');
    assert.equal(api.requests('list', path), lists + 3);
    assert.equal(api.requests('watch', path), watches + 1);
    assert.equal(api.requests('list', SERVICES) > 0, true);
  });

  it('writes a kubeconfig client-node accepts for plain HTTP', T, () => {
    const kc = new KubeConfig();
    kc.loadFromFile(api.kubeconfigFile());
    assert.equal(kc.getCurrentCluster()?.server, api.url);
    assert.equal(kc.getCurrentCluster()?.skipTLSVerify, true);
  });
});
