// The chart installed by the real helm into the real kube-apiserver v1.37.2 (etcd + kube-apiserver on loopback, no
// kubelet: objects are validated and stored, pods never start). The ServiceAccount's rights are asked of the real
// RBAC authorizer (SubjectAccessReview), and its token is used against the API.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { KubeCluster, TOOLS_BIN, type KubeUser } from '../support/kube-cluster.js';
import { ensureNamespace } from '../support/kube-objects.js';
import { KUBEADM_IPVS } from '../k8s/kube-proxy-configs.js';
import { ALL_OPTIONS, chartDir, EXPECTED_RULES, flags, helm, valuesFile, type HelmResult, type Obj } from './helm.js';

const NS = 'kube-system';

function ok(r: HelmResult, what: string): string {
  assert.equal(r.status, 0, `${what} failed (exit ${r.status}):\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

describe('the chart on the real API server', { timeout: 300_000 }, () => {
  let cluster: KubeCluster;
  let kubeconfig: string;
  const helmOn = (...args: string[]) => helm([...args, '--kubeconfig', kubeconfig]);
  const get = (path: string) => cluster.request<Obj>('GET', path);

  /** The real authorizer's answer for the ServiceAccount `sa` (namespace NS). */
  async function allowed(sa: string, attrs: Obj): Promise<boolean> {
    const review = await cluster.call<{ status: { allowed: boolean } }>(
      'POST',
      '/apis/authorization.k8s.io/v1/subjectaccessreviews',
      {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: `system:serviceaccount:${NS}:${sa}`,
          groups: ['system:serviceaccounts', `system:serviceaccounts:${NS}`, 'system:authenticated'],
          resourceAttributes: attrs,
        },
      },
    );
    return review.status.allowed;
  }

  before(async () => {
    cluster = await KubeCluster.start();
    kubeconfig = cluster.kubeconfig(cluster.users.admin);
  });
  after(async () => {
    await cluster?.stop();
  });

  describe('default values', () => {
    const sa = 'def-ipvs-janitor';
    let token: KubeUser;

    it('helm install succeeds and the API server stores every object', async () => {
      const out = ok(helmOn('install', 'def', chartDir, '--namespace', NS), 'helm install');
      assert.match(out, /STATUS: deployed/);
      assert.match(out, /Per-Service policy: annotate a Service/);
      for (const path of [
        `/api/v1/namespaces/${NS}/serviceaccounts/${sa}`,
        `/apis/apps/v1/namespaces/${NS}/daemonsets/${sa}`,
        `/apis/rbac.authorization.k8s.io/v1/clusterroles/${sa}`,
        `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${sa}`,
      ]) {
        assert.equal((await get(path)).status, 200, path);
      }
      const role = (await get(`/apis/rbac.authorization.k8s.io/v1/clusterroles/${sa}`)).body;
      assert.deepEqual(role.rules, EXPECTED_RULES);
      const ds = (await get(`/apis/apps/v1/namespaces/${NS}/daemonsets/${sa}`)).body;
      // The API server accepted (and kept) the downward-API field the "primary" keyword relies on.
      const env = ds.spec.template.spec.containers[0].env as Obj[];
      assert.equal(env.find((e) => e.name === 'NODE_IPS')?.valueFrom.fieldRef.fieldPath, 'status.hostIPs');
      token = await cluster.serviceAccountToken(NS, sa);
    });

    const reads = ['get', 'list', 'watch'];
    const writes = ['create', 'update', 'patch', 'delete', 'deletecollection'];
    const granted = [
      { group: '', resource: 'services' },
      { group: 'discovery.k8s.io', resource: 'endpointslices' },
    ];

    it('the authorizer allows get/list/watch on services and endpointslices, cluster-wide and per namespace', async () => {
      for (const { group, resource } of granted) {
        for (const verb of reads) {
          for (const namespace of ['', 'default', NS]) {
            assert.equal(await allowed(sa, { group, resource, verb, namespace }), true, `${verb} ${resource} in ${namespace || 'all namespaces'}`);
          }
        }
      }
    });

    it('the authorizer denies every other verb on them, pods/secrets/configmaps/nodes, and writes anywhere', async () => {
      const denied: Obj[] = [];
      for (const { group, resource } of granted) {
        for (const verb of [...writes, 'escalate', 'bind', 'impersonate']) denied.push({ group, resource, verb });
        denied.push({ group, resource, verb: 'get', subresource: 'status' }, { group, resource, verb: 'update', subresource: 'status' });
      }
      for (const resource of ['pods', 'secrets', 'configmaps', 'nodes']) {
        for (const verb of [...reads, ...writes]) denied.push({ group: '', resource, verb });
      }
      const elsewhere = [
        { group: '', resource: 'namespaces' },
        { group: '', resource: 'endpoints' },
        { group: '', resource: 'events' },
        { group: '', resource: 'serviceaccounts' },
        { group: 'apps', resource: 'daemonsets' },
        { group: 'apps', resource: 'deployments' },
        { group: 'coordination.k8s.io', resource: 'leases' },
        { group: 'rbac.authorization.k8s.io', resource: 'clusterroles' },
        { group: 'rbac.authorization.k8s.io', resource: 'clusterrolebindings' },
        { group: 'events.k8s.io', resource: 'events' },
        { group: '*', resource: '*' },
      ];
      for (const r of elsewhere) for (const verb of writes) denied.push({ ...r, verb });
      denied.push({ group: '', resource: 'serviceaccounts', subresource: 'token', verb: 'create' });
      denied.push({ group: '*', resource: '*', verb: '*' });
      const wronglyAllowed: string[] = [];
      for (const attrs of denied) {
        for (const namespace of ['', NS]) {
          if (await allowed(sa, { ...attrs, namespace })) wronglyAllowed.push(JSON.stringify({ ...attrs, namespace }));
        }
      }
      assert.deepEqual(wronglyAllowed, []);
    });

    it("the ServiceAccount's own token reads services and slices and nothing else", async () => {
      assert.equal((await cluster.request('GET', '/api/v1/services', undefined, token)).status, 200);
      assert.equal((await cluster.request('GET', '/apis/discovery.k8s.io/v1/endpointslices?limit=1', undefined, token)).status, 200);
      assert.equal((await cluster.request('GET', '/api/v1/pods', undefined, token)).status, 403);
      assert.equal((await cluster.request('GET', `/api/v1/namespaces/${NS}/configmaps`, undefined, token)).status, 403);
      const svc = { apiVersion: 'v1', kind: 'Service', metadata: { name: 'x' }, spec: { ports: [{ port: 80 }] } };
      assert.equal((await cluster.request('POST', '/api/v1/namespaces/default/services', svc, token)).status, 403);
    });

    it('kubectl auth can-i (built from the same module) agrees', () => {
      const kubectl = `${TOOLS_BIN}/kubectl`;
      const canI = (...args: string[]) =>
        spawnSync(kubectl, ['--kubeconfig', kubeconfig, 'auth', 'can-i', ...args, `--as=system:serviceaccount:${NS}:${sa}`], {
          encoding: 'utf8',
        }).stdout.trim();
      assert.equal(canI('watch', 'endpointslices.discovery.k8s.io', '--all-namespaces'), 'yes');
      assert.equal(canI('list', 'services', '--all-namespaces'), 'yes');
      assert.equal(canI('list', 'pods', '--all-namespaces'), 'no');
      assert.equal(canI('delete', 'services', '-n', 'default'), 'no');
    });

    it("helm upgrade with changed values rolls the DaemonSet's arguments and mounts kube-proxy's ConfigMap", async () => {
      await cluster.call('POST', `/api/v1/namespaces/${NS}/configmaps`, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'kube-proxy', labels: { app: 'kube-proxy' } },
        data: { 'config.conf': KUBEADM_IPVS },
      });
      const values = valuesFile({ policy: 'immediate', maxDrainSeconds: 120, kubeProxy: { configMap: 'kube-proxy' } });
      const out = ok(helmOn('upgrade', 'def', chartDir, '--namespace', NS, '-f', values), 'helm upgrade');
      assert.match(out, /REVISION: 2/);
      assert.match(out, /from kube-proxy's own configuration \(ConfigMap kube-system\/kube-proxy, key config.conf\)/);
      const ds = (await get(`/apis/apps/v1/namespaces/${NS}/daemonsets/${sa}`)).body;
      assert.equal(ds.metadata.generation, 2);
      const pod = ds.spec.template.spec;
      const f = flags(pod.containers[0].args as string[]);
      assert.equal(f.get('policy'), 'immediate');
      assert.equal(f.get('max-drain-seconds'), '120');
      assert.equal(f.get('kube-proxy-config'), '/etc/ipvs-janitor/kube-proxy/config.conf');
      assert.deepEqual(pod.volumes[0].configMap.name, 'kube-proxy');
      // Mounting a ConfigMap is the kubelet's doing: the agent's identity still may not read ConfigMaps.
      assert.equal(await allowed(sa, { group: '', resource: 'configmaps', verb: 'get', namespace: NS, name: 'kube-proxy' }), false);
    });

    it('helm uninstall removes every object, the cluster-wide RBAC included', async () => {
      ok(helmOn('uninstall', 'def', '--namespace', NS, '--wait'), 'helm uninstall');
      for (const path of [
        `/api/v1/namespaces/${NS}/serviceaccounts/${sa}`,
        `/apis/apps/v1/namespaces/${NS}/daemonsets/${sa}`,
        `/apis/rbac.authorization.k8s.io/v1/clusterroles/${sa}`,
        `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${sa}`,
      ]) {
        assert.equal((await get(path)).status, 404, `${path} still there`);
      }
      assert.equal(await allowed(sa, { group: '', resource: 'services', verb: 'list' }), false);
      const status = (await cluster.request('GET', '/api/v1/services', undefined, token)).status;
      assert.ok(status === 401 || status === 403, `the old token still reads services (${status})`);
    });
  });

  it('every option set: helm install succeeds (with the CRD, namespace and PriorityClass it names)', async () => {
    await ensureNamespace(cluster, 'monitoring');
    await cluster.call('POST', '/apis/scheduling.k8s.io/v1/priorityclasses', {
      apiVersion: 'scheduling.k8s.io/v1',
      kind: 'PriorityClass',
      metadata: { name: 'custom-priority' },
      value: 1000,
    });
    // The ServiceMonitor kind, as prometheus-operator's CRD declares it (schema left open: the chart is what is tested).
    await cluster.call('POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', {
      apiVersion: 'apiextensions.k8s.io/v1',
      kind: 'CustomResourceDefinition',
      metadata: { name: 'servicemonitors.monitoring.coreos.com' },
      spec: {
        group: 'monitoring.coreos.com',
        names: { kind: 'ServiceMonitor', listKind: 'ServiceMonitorList', plural: 'servicemonitors', singular: 'servicemonitor' },
        scope: 'Namespaced',
        versions: [
          { name: 'v1', served: true, storage: true, schema: { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } } },
        ],
      },
    });
    const established = async () =>
      ((await get('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/servicemonitors.monitoring.coreos.com')).body.status
        ?.conditions as Obj[] | undefined)?.some((c) => c.type === 'Established' && c.status === 'True');
    for (let i = 0; i < 100 && !(await established()); i++) await new Promise((r) => setTimeout(r, 100));

    ok(helmOn('install', 'all', chartDir, '--namespace', NS, '-f', valuesFile(ALL_OPTIONS)), 'helm install (every option)');
    const ds = (await get(`/apis/apps/v1/namespaces/${NS}/daemonsets/all-ipvs-janitor`)).body;
    const f = flags(ds.spec.template.spec.containers[0].args as string[]);
    assert.equal(f.get('nodeport-addresses'), '192.0.2.0/24,2001:db8::/64,primary');
    assert.equal((await get(`/apis/monitoring.coreos.com/v1/namespaces/monitoring/servicemonitors/all-ipvs-janitor`)).status, 200);
    assert.equal((await get(`/api/v1/namespaces/${NS}/services/all-ipvs-janitor-metrics`)).status, 200);
    assert.equal(await allowed('janitor', { group: 'discovery.k8s.io', resource: 'endpointslices', verb: 'watch' }), true);
    ok(helmOn('uninstall', 'all', '--namespace', NS, '--wait'), 'helm uninstall (every option)');
    assert.equal((await get(`/apis/monitoring.coreos.com/v1/namespaces/monitoring/servicemonitors/all-ipvs-janitor`)).status, 404);
  });

  it('rbac.create=false: the ServiceAccount exists and the real API answers its token with 403', async () => {
    ok(helmOn('install', 'norbac', chartDir, '--namespace', NS, '--set', 'rbac.create=false'), 'helm install (rbac.create=false)');
    const sa = 'norbac-ipvs-janitor';
    assert.equal((await get(`/apis/rbac.authorization.k8s.io/v1/clusterroles/${sa}`)).status, 404);
    assert.equal(await allowed(sa, { group: '', resource: 'services', verb: 'list' }), false);
    assert.equal(await allowed(sa, { group: 'discovery.k8s.io', resource: 'endpointslices', verb: 'watch' }), false);
    const token = await cluster.serviceAccountToken(NS, sa);
    // The agent's two informers' first requests: both forbidden.
    assert.equal((await cluster.request('GET', '/api/v1/services?limit=100', undefined, token)).status, 403);
    assert.equal((await cluster.request('GET', '/apis/discovery.k8s.io/v1/endpointslices?limit=100', undefined, token)).status, 403);
    ok(helmOn('uninstall', 'norbac', '--namespace', NS, '--wait'), 'helm uninstall (rbac.create=false)');
  });
});
