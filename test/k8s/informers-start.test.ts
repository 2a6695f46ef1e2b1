// How the informers start against the real API server: a streaming list of 10,000 Services and 10,000
// EndpointSlices (100,000 endpoints) created through the API, and the fallback to a list where the server refuses
// streaming lists (kube-apiserver with the WatchList feature gate off answers 422).
import assert from 'node:assert/strict';
import { after, before, describe, it, type TestContext } from 'node:test';
import { loadKubeConfig } from '../../src/k8s/config.js';
import { ClusterInformers, type InformerEvents } from '../../src/k8s/informers.js';
import { KubeCluster } from '../support/kube-cluster.js';
import { createService, deleteSlice, ensureNamespace, populate, putSlice, sliceObject } from '../support/kube-objects.js';

const SERVICES = 10_000;
const ENDPOINTS_PER_SLICE = 10;

function next<K extends keyof InformerEvents>(informers: ClusterInformers, name: K): Promise<InformerEvents[K]> {
  return new Promise((resolve) => informers.once(name, ((...args: InformerEvents[K]) => resolve(args)) as never));
}

async function startSynced(t: TestContext, cluster: KubeCluster): Promise<ClusterInformers> {
  const informers = new ClusterInformers(loadKubeConfig(cluster.kubeconfig(cluster.users.admin)), {
    initialBackoffMs: 100,
    maxBackoffMs: 1000,
  });
  t.after(() => informers.stop());
  const synced = next(informers, 'synced');
  const started = Date.now();
  informers.start();
  await synced;
  t.diagnostic(`synced in ${Date.now() - started} ms`);
  return informers;
}

describe('informer start on 10,000 Services and 10,000 EndpointSlices', { timeout: 1_200_000 }, () => {
  let cluster: KubeCluster;
  before(async () => {
    cluster = await KubeCluster.start({ dedicated: true });
    await populate(cluster, { namespace: 'scale', services: SERVICES, endpointsPerSlice: ENDPOINTS_PER_SLICE });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('syncs everything from one streaming list per resource', async (t) => {
    const informers = await startSynced(t, cluster);
    const services = informers.allServices().filter((s) => s.namespace === 'scale');
    assert.equal(services.length, SERVICES);
    let endpoints = 0;
    for (const s of services) {
      const slices = informers.slicesFor(s);
      assert.equal(slices.length, 1, `${s.name} has one slice`);
      endpoints += slices[0]!.endpoints.filter((e) => e.condition === 'ready').length;
    }
    assert.equal(endpoints, SERVICES * ENDPOINTS_PER_SLICE);
    const stats = informers.stats();
    for (const s of [stats.services, stats.endpointslices]) assert.deepEqual([s.fullSync, s.lists], ['streaming-list', 1]);
  });
});

describe('informer start where the API server refuses streaming lists (WatchList=false)', { timeout: 300_000 }, () => {
  let cluster: KubeCluster;
  before(async () => {
    cluster = await KubeCluster.start({ apiserverFlags: ['--feature-gates=WatchList=false'] });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('falls back to a list from the watch cache, watches from it, and recovers across a restart', async (t) => {
    const refused = await cluster.request('GET', '/api/v1/services?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan');
    assert.equal(refused.status, 422, 'this server refuses streaming lists');
    await ensureNamespace(cluster, 'fallback');
    await createService(cluster, { namespace: 'fallback', name: 'web' });
    await putSlice(cluster, sliceObject('fallback', 'web-1', 'web', [{ ip: '10.7.0.1' }]));
    await putSlice(cluster, sliceObject('fallback', 'web-2', 'web', [{ ip: '10.7.0.2' }]));
    const informers = await startSynced(t, cluster);
    const WEB = { namespace: 'fallback', name: 'web' };
    assert.deepEqual(informers.slicesFor(WEB).map((s) => s.name).sort(), ['web-1', 'web-2']);
    let stats = informers.stats();
    for (const s of [stats.services, stats.endpointslices]) assert.deepEqual([s.fullSync, s.lists], ['list', 1]);

    const changed = new Promise<void>((resolve) => informers.on('sliceChanged', (ref) => ref.name === 'web' && resolve()));
    await putSlice(cluster, sliceObject('fallback', 'web-1', 'web', [{ ip: '10.7.0.3' }]));
    await changed;
    assert.deepEqual(informers.slicesFor(WEB).find((s) => s.name === 'web-1')?.endpoints.map((e) => e.address), ['10.7.0.3']);

    // Across an API server restart it recovers on the same path, and what changed after the restart arrives.
    const unsynced = next(informers, 'unsynced');
    await cluster.stopApiserver();
    await unsynced;
    await cluster.startApiserverAgain();
    await deleteSlice(cluster, 'fallback', 'web-2');
    await new Promise<void>((resolve) => {
      const check = () => (informers.synced && informers.slicesFor(WEB).length === 1 ? resolve() : setTimeout(check, 50));
      check();
    });
    stats = informers.stats();
    assert.equal(stats.endpointslices.fullSync, 'list');
  });
});
