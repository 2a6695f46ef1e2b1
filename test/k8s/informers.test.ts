// The informers against a real kube-apiserver + etcd (one per file), with Toxiproxy between them for the faults
// the real server cannot produce on demand: sync, events, label filters, endpoint conditions, and recovery from
// each way the API server or the network can let a client down, where `synced` must never come early.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { KubeConfigError, loadKubeConfig } from '../../src/k8s/config.js';
import { ClusterInformers, type InformerEvents, type InformerOptions } from '../../src/k8s/informers.js';
import { freePort, KubeCluster, type KubeUser } from '../support/kube-cluster.js';
import { createService, deleteSlice, ensureNamespace, putSlice, sliceObject } from '../support/kube-objects.js';
import { HttpFault } from '../support/http-fault.js';
import { until } from '../support/poll.js';
import { Toxiproxy } from '../support/toxiproxy.js';

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

/** Fails with `what` instead of hanging when `promise` does not settle in time. */
async function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not within ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const FAST: InformerOptions = { initialBackoffMs: 100, maxBackoffMs: 1000 };
const T = { timeout: 120_000 };

describe('ClusterInformers against the real API server', { timeout: 900_000 }, () => {
  let cluster: KubeCluster;
  let toxiproxy: Toxiproxy;
  let informers: ClusterInformers | undefined;
  let proxies = 0;

  before(async () => {
    // Its own: these tests restart the API server, compact etcd and grant RBAC.
    cluster = await KubeCluster.start({ dedicated: true });
    toxiproxy = await Toxiproxy.start();
  });
  after(async () => {
    await toxiproxy?.stop();
    await cluster?.stop();
  });
  afterEach(async () => {
    await informers?.stop();
    informers = undefined;
  });

  /** Informers for `user`, straight to the server or through a fresh Toxiproxy proxy (its name is returned). */
  async function startInformers(
    options: InformerOptions = FAST,
    via: { proxy?: boolean; user?: KubeUser } = {},
  ): Promise<{ informers: ClusterInformers; proxy: string }> {
    const proxy = `api-${++proxies}`;
    let server = cluster.url;
    if (via.proxy) server = `https://${await toxiproxy.proxy(proxy, `127.0.0.1:${cluster.apiserverPort}`)}`;
    informers = new ClusterInformers(loadKubeConfig(cluster.kubeconfig(via.user ?? cluster.users.admin, server)), options);
    return { informers, proxy };
  }

  async function startSynced(options?: InformerOptions, via?: { proxy?: boolean }) {
    const started = await startInformers(options, via);
    const synced = next(started.informers, 'synced');
    started.informers.start();
    await within(synced, 60_000, 'informers synced');
    return started;
  }

  /** The namespace's Service names the informers hold. */
  const servicesIn = (inf: ClusterInformers, namespace: string) =>
    inf.allServices().filter((s) => s.namespace === namespace).map((s) => s.name).sort();

  it('syncs both caches from a streaming list into slim records indexed by Service', T, async () => {
    await ensureNamespace(cluster, 'sync');
    const web = await createService(cluster, { namespace: 'sync', name: 'web' });
    await createService(cluster, { namespace: 'sync', name: 'db', ports: [{ name: 'pg', port: 5432 }] });
    await putSlice(cluster, sliceObject('sync', 'web-abc', 'web', [{ ip: '10.1.0.5', ready: true }]));
    await putSlice(cluster, sliceObject('sync', 'db-1', 'db', [{ ip: '10.1.0.6' }], { name: 'pg', port: 5432 }));
    const orphan = sliceObject('sync', 'orphan', 'x', [{ ip: '10.1.0.9' }]);
    delete (orphan.metadata as { labels: Record<string, string> }).labels['kubernetes.io/service-name'];
    await putSlice(cluster, orphan);

    const { informers } = await startSynced();
    assert.equal(informers.synced, true);
    assert.deepEqual(servicesIn(informers, 'sync'), ['db', 'web']);
    const svc = informers.service({ namespace: 'sync', name: 'web' });
    assert.deepEqual(svc?.clusterIPs, [web.clusterIP]);
    assert.deepEqual(svc?.ports, [{ name: '', protocol: 'tcp', port: 80, nodePort: 0 }]);
    assert.deepEqual(informers.slicesFor({ namespace: 'sync', name: 'web' }).map((s) => s.endpoints), [
      [{ address: '10.1.0.5', condition: 'ready' }],
    ]);
    assert.deepEqual(informers.slicesFor({ namespace: 'sync', name: 'db' }).map((s) => s.ports), [
      [{ name: 'pg', protocol: 'tcp', port: 5432 }],
    ]);
    const stats = informers.stats();
    for (const s of [stats.services, stats.endpointslices]) {
      assert.deepEqual([s.fullSync, s.lists, s.restarts, s.deadWatches, s.watching], ['streaming-list', 1, 0, 0, true]);
    }
  });

  it('delivers adds, updates, relabels and deletes', T, async () => {
    await ensureNamespace(cluster, 'events');
    await createService(cluster, { namespace: 'events', name: 'web' });
    await createService(cluster, { namespace: 'events', name: 'db' });
    await putSlice(cluster, sliceObject('events', 'web-abc', 'web', [{ ip: '10.2.0.5' }]));
    const { informers } = await startSynced();
    const WEB = { namespace: 'events', name: 'web' };
    const DB = { namespace: 'events', name: 'db' };
    const NEW = { namespace: 'events', name: 'new' };

    let event = next(informers, 'serviceChanged', refIs(NEW));
    const created = await createService(cluster, { namespace: 'events', name: 'new' });
    await event;
    assert.deepEqual(informers.service(NEW)?.clusterIPs, [created.clusterIP]);

    event = next(informers, 'sliceChanged', refIs(WEB));
    await putSlice(cluster, sliceObject('events', 'web-abc', 'web', [{ ip: '10.2.0.5' }, { ip: '10.2.0.6' }]));
    await event;
    assert.deepEqual(informers.slicesFor(WEB)[0]?.endpoints.map((e) => e.address), ['10.2.0.5', '10.2.0.6']);

    const left = next(informers, 'sliceChanged', refIs(WEB));
    const joined = next(informers, 'sliceChanged', refIs(DB));
    await putSlice(cluster, sliceObject('events', 'web-abc', 'db', [{ ip: '10.2.0.5' }]));
    await Promise.all([left, joined]);
    assert.deepEqual(informers.slicesFor(WEB), []);
    assert.deepEqual(informers.slicesFor(DB).map((s) => s.name), ['web-abc']);

    event = next(informers, 'sliceChanged', refIs(DB));
    await deleteSlice(cluster, 'events', 'web-abc');
    await event;
    assert.deepEqual(informers.slicesFor(DB), []);

    event = next(informers, 'serviceChanged', refIs(NEW));
    await cluster.call('DELETE', '/api/v1/namespaces/events/services/new');
    await event;
    assert.equal(informers.service(NEW), undefined);
    assert.equal(informers.stats().services.lists, 1, 'no relist along the way');
  });

  it('reads an endpoint written without `serving` as kube-proxy does: serving', T, async () => {
    await ensureNamespace(cluster, 'conditions');
    await createService(cluster, { namespace: 'conditions', name: 'web' });
    await putSlice(cluster, sliceObject('conditions', 'web-1', 'web', [
      { ip: '10.3.0.1', ready: false, terminating: true },
      { ip: '10.3.0.2', ready: false, serving: false, terminating: true },
      { ip: '10.3.0.3', ready: false, serving: true, terminating: true },
    ]));
    const stored = await cluster.call<{ endpoints: { conditions: Record<string, boolean> }[] }>(
      'GET',
      '/apis/discovery.k8s.io/v1/namespaces/conditions/endpointslices/web-1',
    );
    assert.equal('serving' in stored.endpoints[0]!.conditions, false, 'the API server keeps `serving` absent');
    const { informers } = await startSynced();
    assert.deepEqual(informers.slicesFor({ namespace: 'conditions', name: 'web' })[0]?.endpoints, [
      { address: '10.3.0.1', condition: 'terminating-serving' },
      { address: '10.3.0.2', condition: 'not-serving' },
      { address: '10.3.0.3', condition: 'terminating-serving' },
    ]);
  });

  it('leaves out Services another proxy owns and headless ones, as kube-proxy does, also when labelled later', T, async () => {
    await ensureNamespace(cluster, 'labels');
    await createService(cluster, { namespace: 'labels', name: 'mine' });
    await createService(cluster, {
      namespace: 'labels',
      name: 'other-proxy',
      labels: { 'service.kubernetes.io/service-proxy-name': 'cilium' },
    });
    await createService(cluster, { namespace: 'labels', name: 'headless', labels: { 'service.kubernetes.io/headless': '' } });
    const { informers } = await startSynced();
    assert.deepEqual(servicesIn(informers, 'labels'), ['mine']);

    const MINE = { namespace: 'labels', name: 'mine' };
    const patch = (name: string, labels: Record<string, string | null>) =>
      cluster.request('PATCH', `/api/v1/namespaces/labels/services/${name}`, { metadata: { labels } }, cluster.users.admin,
        'application/merge-patch+json');
    // A label added later takes the Service out of the selection: the watch reports it deleted.
    let event = next(informers, 'serviceChanged', refIs(MINE));
    assert.equal((await patch('mine', { 'service.kubernetes.io/service-proxy-name': 'cilium' })).status, 200);
    await event;
    assert.equal(informers.service(MINE), undefined);
    event = next(informers, 'serviceChanged', refIs(MINE));
    assert.equal((await patch('mine', { 'service.kubernetes.io/service-proxy-name': null })).status, 200);
    await event;
    assert.ok(informers.service(MINE));
    event = next(informers, 'serviceChanged', (ref) => ref.namespace === 'labels' && ref.name === 'headless');
    assert.equal((await patch('headless', { 'service.kubernetes.io/headless': null })).status, 200);
    await event;
    assert.deepEqual(servicesIn(informers, 'labels'), ['headless', 'mine']);
  });

  it('after a dropped connection, says synced only once the cache holds what changed meanwhile', T, async () => {
    await ensureNamespace(cluster, 'drop');
    await createService(cluster, { namespace: 'drop', name: 'web' });
    await putSlice(cluster, sliceObject('drop', 'web-1', 'web', [{ ip: '10.4.0.1' }]));
    const { informers, proxy } = await startSynced(FAST, { proxy: true });
    const WEB = { namespace: 'drop', name: 'web' };
    // What the cache says each time the informers call it complete.
    const atSynced: string[] = [];
    informers.on('synced', () =>
      atSynced.push(JSON.stringify(informers.slicesFor(WEB).flatMap((s) => s.endpoints))));

    const unsynced = next(informers, 'unsynced');
    await toxiproxy.setEnabled(proxy, false);
    const [reason] = await within(unsynced, 30_000, 'unsynced after the connection drop');
    assert.match(reason, /^(services|endpointslices): /);
    // The issue's scenario: while the watch is down, a new endpoint appears and starts draining.
    await putSlice(cluster, sliceObject('drop', 'web-1', 'web', [{ ip: '10.4.0.1' }, { ip: '10.4.0.2' }]));
    await putSlice(cluster, sliceObject('drop', 'web-1', 'web', [
      { ip: '10.4.0.1' },
      { ip: '10.4.0.2', ready: false, serving: true, terminating: true },
    ]));
    const resynced = next(informers, 'synced');
    await toxiproxy.setEnabled(proxy, true);
    await within(resynced, 60_000, 'synced after the connection came back');
    const want = JSON.stringify([
      { address: '10.4.0.1', condition: 'ready' },
      { address: '10.4.0.2', condition: 'terminating-serving' },
    ]);
    assert.deepEqual(atSynced, [want], 'synced was reported on a cache without the changes');
    const stats = informers.stats();
    assert.deepEqual([stats.services.lists, stats.endpointslices.lists], [1, 1], 'resumed without a relist');
    assert.ok(stats.endpointslices.restarts >= 1);
  });

  it('across an API server restart with compaction: 200 + ERROR 410, a relist, and synced only on the fresh state', T, async () => {
    await ensureNamespace(cluster, 'restart');
    await createService(cluster, { namespace: 'restart', name: 'web' });
    await putSlice(cluster, sliceObject('restart', 'web-1', 'web', [{ ip: '10.5.0.1' }]));
    await putSlice(cluster, sliceObject('restart', 'web-2', 'web', [{ ip: '10.5.0.2' }]));
    const { informers, proxy } = await startSynced(FAST, { proxy: true });
    const WEB = { namespace: 'restart', name: 'web' };
    const atSynced: string[] = [];
    informers.on('synced', () => atSynced.push(informers.slicesFor(WEB).map((s) => s.name).sort().join(',')));

    // The agent is cut off while a slice goes away and etcd compacts; the restarted API server's watch cache
    // starts at the current revision, so resuming from the agent's version meets 410.
    const unsynced = next(informers, 'unsynced');
    await toxiproxy.setEnabled(proxy, false);
    await within(unsynced, 30_000, 'unsynced after the connection drop');
    const gone = next(informers, 'sliceChanged', refIs(WEB));
    await deleteSlice(cluster, 'restart', 'web-2');
    await cluster.compact();
    await cluster.restartApiserver();
    const resynced = next(informers, 'synced');
    await toxiproxy.setEnabled(proxy, true);
    await within(Promise.all([gone, resynced]), 90_000, 'the deletion and synced after the restart');
    assert.deepEqual(atSynced, ['web-1'], 'synced was reported on a cache that still held the deleted slice');
    // The resumed watch met ERROR 410 and the informers listed again.
    const stats = informers.stats();
    assert.deepEqual([stats.endpointslices.lists, stats.endpointslices.fullSync], [2, 'streaming-list']);

    // And the watch after the relist delivers.
    const event = next(informers, 'sliceChanged', refIs(WEB));
    await putSlice(cluster, sliceObject('restart', 'web-1', 'web', [{ ip: '10.5.0.3' }]));
    await event;
  });

  it('abandons and counts a watch that delivers neither events nor bookmarks, and recovers', T, async () => {
    await ensureNamespace(cluster, 'hang');
    await createService(cluster, { namespace: 'hang', name: 'web' });
    await putSlice(cluster, sliceObject('hang', 'web-1', 'web', [{ ip: '10.6.0.1' }]));
    // Short server-side timeouts bring a bookmark 2 s before each watch's end, so a quiet healthy watch never
    // stays silent for the idle limit.
    const { informers, proxy } = await startSynced({ ...FAST, idleTimeoutMs: 5000, watchTimeoutSeconds: 2 }, { proxy: true });
    let unsynced = 0;
    informers.on('unsynced', () => unsynced++);
    await new Promise((r) => setTimeout(r, 8000));
    assert.deepEqual(
      [informers.synced, unsynced, informers.stats().services.deadWatches],
      [true, 0, 0],
      'a healthy quiet watch lives, and one the server ends on time is resumed without a loss of sync',
    );

    const errors: string[] = [];
    informers.on('informerError', (resource, message) => errors.push(`${resource}: ${message}`));
    // The server's answers stop reaching the agent (an hour's latency); the connections stay open.
    await toxiproxy.addToxic(proxy, { name: 'hang', type: 'latency', attributes: { latency: 3_600_000 } });
    await until(() => errors.some((e) => /delivered nothing for 5 s: abandoned/.test(e)), 'a dead watch', 20_000);
    assert.equal(informers.synced, false);
    assert.ok(informers.stats().services.deadWatches + informers.stats().endpointslices.deadWatches >= 1);

    await putSlice(cluster, sliceObject('hang', 'web-1', 'web', [{ ip: '10.6.0.2' }]));
    const resynced = next(informers, 'synced');
    await toxiproxy.removeToxic(proxy, 'hang');
    await within(resynced, 60_000, 'synced after the hang ended');
    assert.deepEqual(informers.slicesFor({ namespace: 'hang', name: 'web' })[0]?.endpoints.map((e) => e.address), ['10.6.0.2']);
  });

  it('confirms a Service against the server, and restarts a watch found behind it long before the idle limit', T, async () => {
    await ensureNamespace(cluster, 'behind');
    await createService(cluster, { namespace: 'behind', name: 'web' });
    await putSlice(cluster, sliceObject('behind', 'web-1', 'web', [{ ip: '10.7.0.1', ready: true }]));
    const fault = await HttpFault.start(cluster);
    try {
      // Straight through the HTTP fault proxy; the default 90 s idle limit, so only the confirmation can tell.
      informers = new ClusterInformers(loadKubeConfig(cluster.kubeconfig(cluster.users.admin, `https://127.0.0.1:${fault.port}`)), FAST);
      const synced = next(informers, 'synced');
      informers.start();
      await within(synced, 60_000, 'informers synced');
      const web = { namespace: 'behind', name: 'web' };
      assert.deepEqual(await informers.confirmSlices(web), { kind: 'current' });

      // The watch stops delivering while the server answers everything else; a new endpoint appears.
      fault.freezeWatches();
      await putSlice(cluster, sliceObject('behind', 'web-1', 'web', [
        { ip: '10.7.0.1', ready: true },
        { ip: '10.7.0.2', ready: false, serving: true, terminating: true },
      ]));
      const first = await informers.confirmSlices(web);
      assert.equal(first.kind, 'behind');
      assert.match(first.kind === 'behind' ? first.detail : '', /behind\/web-1@\d+/);
      assert.equal(informers.synced, true, 'the cache still looks complete: only asking the server tells');

      const unsynced = next(informers, 'unsynced');
      await new Promise((r) => setTimeout(r, 10_500));
      assert.equal((await informers.confirmSlices(web)).kind, 'behind');
      const [reason] = await within(unsynced, 5000, 'unsynced after the watch was found behind for 10 s');
      assert.match(reason, /endpointslices: the watch has not delivered what the API server showed 1\d s ago/);
      assert.equal(informers.stats().endpointslices.deadWatches, 1);

      const resynced = next(informers, 'synced');
      fault.thawWatches();
      await within(resynced, 60_000, 'synced once watches deliver again');
      assert.deepEqual(await informers.confirmSlices(web), { kind: 'current' });
      assert.deepEqual(informers.slicesFor(web)[0]?.endpoints.map((e) => e.address), ['10.7.0.1', '10.7.0.2']);
    } finally {
      await informers?.stop();
      informers = undefined;
      await fault.stop();
    }
  });

  it('stays unsynced on 403 with one clear line per failure, and syncs once RBAC grants the rights', T, async () => {
    const { informers } = await startInformers({ initialBackoffMs: 100, maxBackoffMs: 500 }, { user: cluster.users.agent });
    const errors: [string, string][] = [];
    informers.on('informerError', (resource, message) => errors.push([resource, message]));
    let synced = 0;
    informers.on('synced', () => synced++);
    informers.start();
    await until(() => errors.length >= 4, '403 errors from both informers', 30_000);
    for (const [resource, message] of errors) {
      assert.match(message, new RegExp(`^API server answered 403 Forbidden: .*User "ipvs-janitor-agent" cannot \\w+ resource "${resource}"`));
      assert.match(message, /check the credentials and the RBAC rights/);
      assert.ok(!message.includes('\n'), message);
    }
    assert.deepEqual([informers.synced, synced], [false, 0]);

    const resynced = next(informers, 'synced');
    await cluster.call('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', {
      metadata: { name: 'ipvs-janitor-test' },
      rules: [
        { apiGroups: [''], resources: ['services'], verbs: ['list', 'watch'] },
        { apiGroups: ['discovery.k8s.io'], resources: ['endpointslices'], verbs: ['list', 'watch'] },
      ],
    });
    await cluster.call('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
      metadata: { name: 'ipvs-janitor-test' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'ipvs-janitor-test' },
      subjects: [{ apiGroup: 'rbac.authorization.k8s.io', kind: 'User', name: cluster.users.agent.name }],
    });
    await within(resynced, 30_000, 'synced once the rights are granted');
    assert.ok(informers.allServices().some((s) => s.namespace === 'default' && s.name === 'kubernetes'));
  });

  it('reports an unreachable API server as one line and never syncs', T, async () => {
    const port = await freePort();
    informers = new ClusterInformers(loadKubeConfig(cluster.kubeconfig(cluster.users.admin, `https://127.0.0.1:${port}`)), {
      initialBackoffMs: 10,
      maxBackoffMs: 20,
    });
    const first = next(informers, 'informerError');
    let synced = 0;
    informers.on('synced', () => synced++);
    informers.start();
    const [, message] = await first;
    assert.match(message, /ECONNREFUSED/);
    assert.ok(message.includes(`127.0.0.1:${port}`) && !message.includes('\n'), message);
    await until(() => informers!.stats().services.restarts >= 2, 'two restarts', 30_000);
    assert.deepEqual([informers.synced, synced], [false, 0]);
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
