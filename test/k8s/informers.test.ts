// The informers with the real client code against the API stand-in: sync, events, and recovery from each way
// the API server can let a client down.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { KubeConfigError, loadKubeConfig } from '../../src/k8s/config.js';
import { ClusterInformers, type InformerEvents } from '../../src/k8s/informers.js';
import { StandIn, type KubeObject } from './standin.js';

const SERVICES = '/api/v1/services';
const SLICES = '/apis/discovery.k8s.io/v1/endpointslices';

function service(namespace: string, name: string, clusterIP: string, selector?: Record<string, string>): KubeObject {
  return {
    kind: 'Service',
    metadata: { namespace, name },
    spec: { clusterIP, clusterIPs: [clusterIP], selector, ports: [{ port: 80 }] },
  };
}

function slice(namespace: string, name: string, serviceName: string | undefined, ips: string[]): KubeObject {
  return {
    kind: 'EndpointSlice',
    metadata: { namespace, name, labels: serviceName ? { 'kubernetes.io/service-name': serviceName } : {} },
    addressType: 'IPv4',
    ports: [{ name: '', port: 8080, protocol: 'TCP' }],
    endpoints: ips.map((ip) => ({
      addresses: [ip],
      conditions: { ready: true },
      targetRef: { kind: 'Pod', name: ip },
    })),
  };
}

const WEB = { namespace: 'shop', name: 'web' };
const DB = { namespace: 'shop', name: 'db' };

function fixtures(api: StandIn): void {
  api.apply(service('shop', 'web', '10.96.0.10', { app: 'web' }));
  api.apply(service('shop', 'db', '10.96.0.20')); // no selector: its slice is made by hand
  api.apply(slice('shop', 'web-abc', 'web', ['10.1.0.5']));
  api.apply(slice('shop', 'db-manual', 'db', ['192.0.2.50']));
  api.apply(slice('shop', 'orphan', undefined, ['10.1.0.9']));
}

/** The next `name` event whose arguments satisfy `accept`. Subscribe before causing it. */
function next<K extends keyof InformerEvents>(
  informers: ClusterInformers,
  name: K,
  accept: (...args: InformerEvents[K]) => boolean = () => true,
): Promise<InformerEvents[K]> {
  return new Promise((resolve) => {
    const listener = (...args: InformerEvents[K]) => {
      if (!accept(...args)) return;
      informers.off(name, listener as never);
      resolve(args);
    };
    informers.on(name, listener as never);
  });
}

const refIs = (want: { namespace: string; name: string }) => (ref: { namespace: string; name: string }) =>
  ref.namespace === want.namespace && ref.name === want.name;

/** For state no event announces; polls without a fixed sleep. */
async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((r) => setTimeout(r, 5));
}

/** Per test, so one that hangs fails alone. */
const T = { timeout: 5000 };

describe('ClusterInformers', () => {
  let api: StandIn | undefined;
  let informers: ClusterInformers | undefined;

  afterEach(async () => {
    await informers?.stop();
    await api?.close();
    informers = undefined;
    api = undefined;
  });

  async function startSynced(): Promise<{ api: StandIn; informers: ClusterInformers }> {
    api = await StandIn.start();
    fixtures(api);
    const kc = loadKubeConfig(api.kubeconfigFile());
    informers = new ClusterInformers(kc, { initialBackoffMs: 10, maxBackoffMs: 50, pageSize: 1 });
    const synced = next(informers, 'synced');
    informers.start();
    await synced;
    return { api, informers };
  }

  it('syncs both caches from paged lists into slim records indexed by Service', T, async () => {
    const { api, informers } = await startSynced();
    assert.equal(informers.synced, true);
    assert.deepEqual(informers.allServices().map((s) => s.name).sort(), ['db', 'web']);
    assert.deepEqual(informers.service(WEB)?.clusterIPs, ['10.96.0.10']);
    assert.deepEqual(informers.slicesFor(WEB).map((s) => s.name), ['web-abc']);
    assert.deepEqual(informers.slicesFor(DB).map((s) => s.name), ['db-manual']);
    assert.deepEqual(informers.slicesFor(WEB)[0]?.endpoints, [{ address: '10.1.0.5', condition: 'ready' }]);
    // One item per page: a list request per object.
    assert.equal(api.requests('list', SERVICES), 2);
    assert.equal(api.requests('list', SLICES), 3);
    const stats = informers.stats();
    assert.deepEqual([stats.services.lists, stats.services.restarts, stats.services.watching], [1, 0, true]);
    assert.deepEqual([stats.endpointslices.lists, stats.endpointslices.restarts], [1, 0]);
  });

  it('delivers adds, updates, relabels and deletes', T, async () => {
    const { api, informers } = await startSynced();
    const NEW = { namespace: 'shop', name: 'new' };

    let event = next(informers, 'serviceChanged', refIs(NEW));
    api.apply(service('shop', 'new', '10.96.0.30'));
    await event;
    assert.deepEqual(informers.service(NEW)?.clusterIPs, ['10.96.0.30']);

    event = next(informers, 'sliceChanged', refIs(WEB));
    api.apply(slice('shop', 'web-abc', 'web', ['10.1.0.5', '10.1.0.6']));
    await event;
    assert.deepEqual(informers.slicesFor(WEB)[0]?.endpoints.map((e) => e.address), ['10.1.0.5', '10.1.0.6']);

    const left = next(informers, 'sliceChanged', refIs(WEB));
    const joined = next(informers, 'sliceChanged', refIs(DB));
    api.apply(slice('shop', 'web-abc', 'db', ['10.1.0.5']));
    await Promise.all([left, joined]);
    assert.deepEqual(informers.slicesFor(WEB), []);
    assert.deepEqual(informers.slicesFor(DB).map((s) => s.name).sort(), ['db-manual', 'web-abc']);

    event = next(informers, 'sliceChanged', refIs(DB));
    api.delete('EndpointSlice', 'shop', 'db-manual');
    await event;
    assert.deepEqual(informers.slicesFor(DB).map((s) => s.name), ['web-abc']);

    event = next(informers, 'serviceChanged', refIs(NEW));
    api.delete('Service', 'shop', 'new');
    await event;
    assert.equal(informers.service(NEW), undefined);
    assert.equal(informers.stats().services.lists, 1, 'no relist along the way');
  });

  it('restarts after a dropped watch and resumes from its resourceVersion without relisting', T, async () => {
    const { api, informers } = await startSynced();
    const errors: string[] = [];
    informers.on('informerError', (resource, message) => errors.push(`${resource}: ${message}`));
    const unsynced = next(informers, 'unsynced');
    const resynced = unsynced.then(() => next(informers, 'synced'));
    api.dropWatches();
    await resynced;
    assert.match((await unsynced)[0], /^(services|endpointslices): connection to the API server lost/);
    assert.equal(informers.synced, true);
    const stats = informers.stats();
    assert.ok(stats.services.restarts >= 1 && stats.endpointslices.restarts >= 1, JSON.stringify(stats));
    assert.deepEqual([stats.services.lists, stats.endpointslices.lists], [1, 1]);
    assert.ok(errors.length >= 2 && errors.every((e) => !e.includes('\n')), errors.join(' | '));

    const event = next(informers, 'sliceChanged', refIs(WEB));
    api.apply(slice('shop', 'web-abc', 'web', ['10.1.0.7']));
    await event;
    assert.equal(informers.slicesFor(WEB)[0]?.endpoints[0]?.address, '10.1.0.7');
  });

  it('resumes a watch the server ends after its timeoutSeconds without a restart', T, async () => {
    api = await StandIn.start();
    fixtures(api);
    informers = new ClusterInformers(loadKubeConfig(api.kubeconfigFile()), { watchTimeoutSeconds: 1 });
    let unsynced = 0;
    informers.on('unsynced', () => unsynced++);
    const synced = next(informers, 'synced');
    informers.start();
    await synced;
    const watches = api.requests('watch', SERVICES);
    await until(() => api!.requests('watch', SERVICES) > watches);
    const event = next(informers, 'serviceChanged', refIs(WEB));
    api.apply(service('shop', 'web', '10.96.0.10', { app: 'web', v: '2' }));
    await event;
    assert.deepEqual([informers.stats().services.restarts, informers.stats().services.lists], [0, 1]);
    assert.equal(unsynced, 0, 'a clean end of a watch is no loss of sync');
  });

  it('relists on 410 Gone and reports what was deleted while it was away', T, async () => {
    const { api, informers } = await startSynced();
    const gone = next(informers, 'sliceChanged', refIs(WEB));
    const resynced = next(informers, 'unsynced').then(() => next(informers, 'synced'));
    // Synchronous: the informers cannot reconnect between these, so they miss the deletion's event.
    api.dropWatches();
    api.delete('EndpointSlice', 'shop', 'web-abc');
    api.expireHistory();
    await Promise.all([gone, resynced]);
    assert.deepEqual(informers.slicesFor(WEB), []);
    assert.deepEqual(informers.slicesFor(DB).map((s) => s.name), ['db-manual']);
    const stats = informers.stats();
    assert.deepEqual([stats.services.lists, stats.endpointslices.lists], [2, 2]);
  });

  it('relists after an ERROR 410 event on an open watch', T, async () => {
    const { api, informers } = await startSynced();
    const resynced = next(informers, 'unsynced').then(() => next(informers, 'synced'));
    api.expireHistory();
    await resynced;
    const stats = informers.stats();
    assert.deepEqual([stats.services.lists, stats.endpointslices.lists], [2, 2]);
    assert.deepEqual([stats.services.restarts, stats.endpointslices.restarts], [0, 0], 'the library relists by itself');

    const event = next(informers, 'serviceChanged', refIs(WEB));
    api.apply(service('shop', 'web', '10.96.0.10', { app: 'web', v: '2' }));
    await event;
  });

  it('stays unsynced while lists and watches fail, backs off, and syncs once they recover', T, async () => {
    api = await StandIn.start();
    fixtures(api);
    api.failNext({ path: SERVICES, status: 403, verb: 'list' });
    api.failNext({ path: SERVICES, status: 500, verb: 'list' });
    api.failNext({ path: SLICES, status: 503, verb: 'watch' });
    informers = new ClusterInformers(loadKubeConfig(api.kubeconfigFile()), { initialBackoffMs: 10, maxBackoffMs: 50 });
    const errors: [string, string, number][] = [];
    let syncedEvents = 0;
    let syncedAtError = false;
    informers.on('informerError', (resource, message, retryInMs) => {
      syncedAtError ||= informers?.synced === true;
      errors.push([resource, message, retryInMs]);
    });
    informers.on('synced', () => syncedEvents++);
    const synced = next(informers, 'synced');
    informers.start();
    await synced;

    const services = errors.filter(([r]) => r === 'services').map(([, m]) => m);
    const slices = errors.filter(([r]) => r === 'endpointslices').map(([, m]) => m);
    assert.match(services[0] ?? '', /^API server answered 403 Forbidden: injected failure for list \/api\/v1\//);
    assert.match(services[1] ?? '', /^API server answered 500 /);
    assert.match(slices[0] ?? '', /^API server answered 503 /);
    assert.equal(errors.length, 3);
    assert.ok(errors.every(([, , retry]) => retry >= 5 && retry <= 50), JSON.stringify(errors));
    assert.equal(syncedEvents, 1);
    assert.equal(syncedAtError, false);
    const stats = informers.stats();
    assert.deepEqual([stats.services.restarts, stats.services.lists], [2, 1]);
    // The watch failed after a good list: the restart resumed the watch instead of listing again.
    assert.deepEqual([stats.endpointslices.restarts, stats.endpointslices.lists], [1, 1]);
    assert.equal(api.requests('list', SLICES), 1);
  });

  it('accepts bookmarks, which spare a quiet resource a relist after its watch drops', T, async () => {
    const { api, informers } = await startSynced();
    let event = next(informers, 'sliceChanged', refIs(WEB));
    api.apply(slice('shop', 'web-abc', 'web', ['10.1.0.8']));
    await event;
    // Services saw no event since their list; the bookmark brings their resourceVersion up to date.
    assert.notEqual(informers.stats().services.resourceVersion, api.resourceVersion);
    api.bookmark();
    await until(() => informers.stats().services.resourceVersion === api.resourceVersion);

    let resynced = next(informers, 'unsynced').then(() => next(informers, 'synced'));
    api.dropWatches();
    api.expireHistory();
    await resynced;
    assert.deepEqual([informers.stats().services.lists, informers.stats().endpointslices.lists], [1, 1]);

    // The same without a bookmark: the Services' resourceVersion is too old now.
    event = next(informers, 'sliceChanged', refIs(WEB));
    api.apply(slice('shop', 'web-abc', 'web', ['10.1.0.9']));
    await event;
    resynced = next(informers, 'unsynced').then(() => next(informers, 'synced'));
    api.dropWatches();
    api.expireHistory();
    await resynced;
    assert.deepEqual([informers.stats().services.lists, informers.stats().endpointslices.lists], [2, 1]);
  });

  it('reports an unreachable API server as one line and never syncs', T, async () => {
    const gone = await StandIn.start();
    const kc = loadKubeConfig(gone.kubeconfigFile());
    const url = gone.url;
    await gone.close();
    informers = new ClusterInformers(kc, { initialBackoffMs: 10, maxBackoffMs: 20 });
    const first = next(informers, 'informerError');
    let synced = 0;
    informers.on('synced', () => synced++);
    informers.start();
    const [, message] = await first;
    assert.match(message, /ECONNREFUSED/);
    assert.ok(message.includes(new URL(url).host) && !message.includes('\n'), message);
    await until(() => informers!.stats().services.restarts >= 2);
    assert.equal(informers.synced, false);
    assert.equal(synced, 0);
  });

  it('turns a configuration that cannot work into a one-line KubeConfigError', T, () => {
    assert.throws(() => loadKubeConfig('/nonexistent/kubeconfig'), (err: unknown) => {
      assert.ok(err instanceof KubeConfigError);
      assert.match(err.message, /^cannot load kubeconfig \/nonexistent\/kubeconfig: ENOENT/);
      assert.ok(!err.message.includes('\n'));
      return true;
    });
    const dir = mkdtempSync(join(tmpdir(), 'kubeconfig-'));
    try {
      const file = join(dir, 'kubeconfig');
      writeFileSync(
        file,
        JSON.stringify({
          'current-context': 'c',
          clusters: [{ name: 'k', cluster: { server: 'http://127.0.0.1:1' } }],
          users: [{ name: 'u', user: {} }],
          contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
        }),
      );
      assert.throws(() => loadKubeConfig(file), /plain HTTP but insecure-skip-tls-verify is not set/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
