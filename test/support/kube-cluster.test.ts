// The fixture itself on the real binaries: it starts, answers as the doc says, restarts, compacts, stops cleanly.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { KubeCluster } from './kube-cluster.js';
import { createService, ensureNamespace, putSlice, sliceObject } from './kube-objects.js';
import { Toxiproxy } from './toxiproxy.js';

describe('KubeCluster (real etcd + kube-apiserver on loopback)', { timeout: 240_000 }, () => {
  let cluster: KubeCluster;
  before(async () => {
    cluster = await KubeCluster.start();
  });
  after(async () => {
    await cluster?.stop();
  });

  it('serves v1.37.2 and authenticates the three token users as the doc says', async () => {
    const version = await cluster.call<{ gitVersion: string }>('GET', '/version');
    assert.equal(version.gitVersion, 'v1.37.2');
    assert.equal((await cluster.request('GET', '/api/v1/services', undefined, cluster.users.nobody)).status, 403);
    assert.equal((await cluster.request('GET', '/api/v1/services', undefined, cluster.users.agent)).status, 403);
    assert.equal((await cluster.request('GET', '/api/v1/services')).status, 200);
  });

  it('takes a selector-less Service and a hand-written slice, and answers a stale watch with 200 + ERROR 410 after compaction', async () => {
    await ensureNamespace(cluster, 'fixture');
    await createService(cluster, { namespace: 'fixture', name: 'web' });
    await putSlice(cluster, sliceObject('fixture', 'web-1', 'web', [{ ip: '10.1.0.1', ready: true }]));
    const first = await cluster.call<{ metadata: { resourceVersion: string } }>('GET', '/apis/discovery.k8s.io/v1/endpointslices');
    await putSlice(cluster, sliceObject('fixture', 'web-1', 'web', [{ ip: '10.1.0.2', ready: true }]));
    await cluster.compact();
    await cluster.restartApiserver();
    const watch = await cluster.request(
      'GET',
      `/apis/discovery.k8s.io/v1/endpointslices?watch=1&timeoutSeconds=1&resourceVersion=${first.metadata.resourceVersion}`,
    );
    assert.equal(watch.status, 200);
    assert.match(watch.text, /"type":"ERROR".*"code":410/);
  });

  it('serves TokenRequest tokens and passes TLS through a fault proxy', async () => {
    await cluster.call('POST', '/api/v1/namespaces/fixture/serviceaccounts', { metadata: { name: 'sa' } });
    const sa = await cluster.serviceAccountToken('fixture', 'sa');
    assert.equal((await cluster.request('GET', '/api/v1/services', undefined, sa)).status, 403);
    const toxiproxy = await Toxiproxy.start();
    try {
      const listen = await toxiproxy.proxy('api', `127.0.0.1:${cluster.apiserverPort}`);
      assert.ok(existsSync(cluster.kubeconfig(cluster.users.admin, `https://${listen}`)));
    } finally {
      await toxiproxy.stop();
    }
  });
});
