// End to end on the real kernel and the real Kubernetes API: the real `run` command against etcd + kube-apiserver
// started inside the VM, authenticated as the chart's ServiceAccount (a TokenRequest token, rights from the chart's
// own ClusterRole as `helm template` renders it), and this test playing kube-proxy with the project's IPVS client.
// Every run therefore also proves that the chart's RBAC is all the agent needs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { IpvsClient } from '../../src/ipvs/client.js';
import type { DestinationSpec, ServiceKey } from '../../src/ipvs/types.js';
import { AgentProcess, isDeletion, isSynced, type LogLine } from '../support/agent-process.js';
import { until } from '../support/poll.js';
import { freePort, KubeCluster } from '../support/kube-cluster.js';
import { ensureNamespace, putSlice, sliceObject, type EndpointSpec } from '../support/kube-objects.js';
import { ChartIdentity } from '../support/rbac.js';

const NODE_IP = '10.0.5.1';
// Under TCG kube-apiserver takes minutes to answer /readyz, and loading @kubernetes/client-node over 9p takes
// tens of seconds; on a node both take seconds.
const APISERVER_READY_MS = 10 * 60_000;
const AGENT_SYNCED_MS = 5 * 60_000;

const tcp = (address: string, port: number): ServiceKey => ({
  kind: 'address',
  family: address.includes(':') ? 'ipv6' : 'ipv4',
  protocol: 'tcp',
  address,
  port,
});
const clusterV4 = tcp('10.96.5.10', 80);
const clusterV6 = tcp('fd00:96::5:10', 80);
const nodePort = tcp(NODE_IP, 30080);
const unowned = tcp('10.96.9.9', 80);
const v4Services = [clusterV4, nodePort];

const ready = (ip: string): EndpointSpec => ({ ip, ready: true, serving: true, terminating: false });
const terminatingServing = (ip: string): EndpointSpec => ({ ip, ready: false, serving: true, terminating: true });

// Selector-less, as the slices are written by the test (no EndpointSlice controller runs on the test server).
const service = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { namespace: 'shop', name: 'web' },
  spec: {
    type: 'NodePort',
    ipFamilyPolicy: 'RequireDualStack',
    ipFamilies: ['IPv4', 'IPv6'],
    clusterIP: '10.96.5.10',
    clusterIPs: ['10.96.5.10', 'fd00:96::5:10'],
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 30080 }],
  },
};

const rs = (address: string, weight: number): DestinationSpec => ({
  family: address.includes(':') ? 'ipv6' : 'ipv4',
  address,
  port: 8080,
  forwarding: 'masq',
  weight,
});

describe('ipvs-janitor run against the real kernel and the real API server', () => {
  let cluster: KubeCluster;
  let identity: ChartIdentity | undefined;
  let kubeconfig: string;
  let ipvs: IpvsClient;

  const weights = async (key: ServiceKey) =>
    Object.fromEntries((await ipvs.listDestinations(key)).map((d) => [d.address, d.weight]));
  const putV4 = (endpoints: EndpointSpec[]) =>
    putSlice(cluster, sliceObject('shop', 'web-v4', 'web', endpoints, { name: 'http', port: 8080 }, 'IPv4'));

  async function startAgent(...flags: string[]): Promise<AgentProcess> {
    const agent = AgentProcess.start([
      '--kubeconfig', kubeconfig, '--metrics-address', '127.0.0.1:0', '--resync-period', '1h',
      '--nodeport-addresses', NODE_IP, ...flags,
    ]);
    await agent.waitFor(isSynced, 'informers synced', AGENT_SYNCED_MS);
    return agent;
  }

  async function stopAgent(agent: AgentProcess): Promise<void> {
    assert.equal(await agent.stop(), 0, `the agent stops cleanly on SIGTERM\n${agent.describe()}`);
  }

  before(async () => {
    // Routes to the real servers (IPVS refuses unroutable ones); the VM's root namespace is shared by every file.
    execFileSync('sh', ['-c', `ip link add e2e0 type dummy && ip link set e2e0 up &&
      ip route replace 10.240.0.0/16 dev e2e0 && ip -6 route replace fd00:240::/64 dev e2e0`]);
    // The fixture's service range is dual-stack (10.96.0.0/16, fd00:96::/108).
    cluster = await KubeCluster.start({ readyTimeoutMs: APISERVER_READY_MS });
    identity = await ChartIdentity.apply(cluster, 'janitor-e2e', 'e2e');
    kubeconfig = cluster.kubeconfig(identity.user);
    ipvs = await IpvsClient.open();
    await ensureNamespace(cluster, 'shop');
    await cluster.call('POST', '/api/v1/namespaces/shop/services', service);
    await putV4([ready('10.240.5.1'), ready('10.240.5.2'), ready('10.240.5.3')]);
    await putSlice(cluster, sliceObject('shop', 'web-v6', 'web', [ready('fd00:240::5:1')], { name: 'http', port: 8080 }, 'IPv6'));
    for (const key of [...v4Services, unowned]) {
      await ipvs.createService({ key, scheduler: 'rr' });
      for (const a of ['10.240.5.1', '10.240.5.2', '10.240.5.3']) await ipvs.createDestination(key, rs(a, 1));
    }
    await ipvs.createService({ key: clusterV6, scheduler: 'rr' });
    await ipvs.createDestination(clusterV6, rs('fd00:240::5:1', 1));
  });

  after(async () => {
    if (ipvs) {
      for (const s of await ipvs.listServices()) await ipvs.deleteService(s.key);
      ipvs.close();
    }
    await identity?.remove();
    await cluster?.stop();
    execFileSync('ip', ['link', 'del', 'e2e0']);
  });

  it('cleans stale weight-0 real servers at start, on ClusterIP (both families) and NodePort, and nothing else', async () => {
    // Left behind by a kube-proxy restart: weight 0, no endpoint anywhere.
    for (const key of v4Services) await ipvs.createDestination(key, rs('10.240.5.9', 0));
    await ipvs.createDestination(clusterV6, rs('fd00:240::5:9', 0));
    // Not ours to judge: weight above 0 without an endpoint, and a virtual service no Service accounts for.
    await ipvs.createDestination(clusterV4, rs('10.240.5.8', 1));
    await ipvs.createDestination(unowned, rs('10.240.5.9', 0));

    const agent = await startAgent();
    try {
      for (const key of v4Services) {
        await until(async () => !('10.240.5.9' in (await weights(key))), `stale real server leaves ${key.kind === 'address' ? key.address : ''}`);
      }
      await until(async () => !('fd00:240::5:9' in (await weights(clusterV6))), 'stale IPv6 real server leaves');
      assert.equal((await weights(clusterV4))['10.240.5.8'], 1, 'weight > 0 is never deleted');
      assert.equal((await weights(unowned))['10.240.5.9'], 0, 'a virtual service nobody owns is untouched');
      // The log line follows the kernel deletion through a pipe: wait for it rather than race it.
      await until(() => agent.lines.filter(isDeletion).length >= 3, 'three deletion log lines');
      // Whichever pass comes first after the caches are complete may clean them (the start's resync, or the
      // events of the initial list queued until then); never one before.
      const synced = agent.lines.findIndex(isSynced);
      assert.ok(agent.lines.findIndex(isDeletion) > synced, `no deletion before the caches are complete\n${agent.describe()}`);
      assert.deepEqual(
        agent.lines.filter(isDeletion).map((l) => [l.service, l.virtualService, l.realServer, l.weight, l.reason]).sort(),
        [
          ['shop/web', 'TCP 10.0.5.1:30080', '10.240.5.9:8080', 0, 'endpoint-gone'],
          ['shop/web', 'TCP 10.96.5.10:80', '10.240.5.9:8080', 0, 'endpoint-gone'],
          ['shop/web', 'TCP [fd00:96::5:10]:80', '[fd00:240::5:9]:8080', 0, 'endpoint-gone'],
        ],
      );

      // Rollout: .2 terminates but still serves, .3 is gone; kube-proxy drops both to weight 0.
      for (const key of v4Services) {
        await ipvs.updateDestination(key, rs('10.240.5.2', 0));
        await ipvs.updateDestination(key, rs('10.240.5.3', 0));
      }
      await putV4([ready('10.240.5.1'), terminatingServing('10.240.5.2')]);
      // Events are reconciled in order: once .3 is gone the slice event was decided, .2 included.
      for (const key of v4Services) await until(async () => !('10.240.5.3' in (await weights(key))), '.3 deleted');
      for (const key of v4Services) assert.equal((await weights(key))['10.240.5.2'], 0, 'terminating but serving: kept');

      await putV4([ready('10.240.5.1')]);
      for (const key of v4Services) await until(async () => !('10.240.5.2' in (await weights(key))), '.2 deleted after it left the slice');
      const isTwo = (l: LogLine) => l.realServer === '10.240.5.2:8080';
      await until(() => agent.lines.filter(isTwo).length >= 2, 'two deletion log lines for .2');
      assert.deepEqual(agent.lines.filter(isTwo).map((l) => [l.reason, l.trigger, l.policy]), [
        ['endpoint-gone', 'event', 'graceful'],
        ['endpoint-gone', 'event', 'graceful'],
      ]);
      assert.equal((await weights(clusterV4))['10.240.5.1'], 1);
    } finally {
      await stopAgent(agent);
    }
  });

  it('under --dry-run logs the decision and deletes nothing', async () => {
    await ipvs.createDestination(clusterV4, rs('10.240.5.7', 0));
    const agent = await startAgent('--dry-run');
    try {
      const line = await agent.waitFor((l) => l.realServer === '10.240.5.7:8080', 'dry-run decision');
      assert.equal(line.message, 'would delete real server (dry run)');
      assert.equal(line.reason, 'endpoint-gone');
      assert.equal((await weights(clusterV4))['10.240.5.7'], 0);
    } finally {
      await stopAgent(agent);
    }
    await ipvs.deleteDestination(clusterV4, rs('10.240.5.7', 0));
  });

  it('without its RBAC (rbac.create=false) says so in one warning per resource, stays unready and deletes nothing', async () => {
    await ipvs.createDestination(clusterV4, rs('10.240.5.66', 0));
    const port = await freePort();
    // The agent's own user with no binding at all: what a release with rbac.create=false leaves it.
    const agent = AgentProcess.start([
      '--kubeconfig', cluster.kubeconfig(cluster.users.agent), '--metrics-address', `127.0.0.1:${port}`,
      '--resync-period', '1s', '--nodeport-addresses', NODE_IP,
    ]);
    try {
      const refused = (resource: string) => (l: LogLine) =>
        l.message === 'informer stopped: restarting' && l.resource === resource && /403/.test(String(l.error));
      for (const resource of ['services', 'endpointslices']) await agent.waitFor(refused(resource), `a 403 on ${resource}`, AGENT_SYNCED_MS);
      // Retries at 1, 2, 4 s...: several have happened by now, each counted, none logged again.
      await new Promise((r) => setTimeout(r, 8000));
      const warnings = agent.lines.filter((l) => l.level === 'warn' && l.message === 'informer stopped: restarting');
      assert.deepEqual(warnings.map((l) => l.resource).sort(), ['endpointslices', 'services'], agent.describe());
      assert.match(String(warnings[0]?.error), /403 Forbidden.*RBAC/s);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const restarts = /ipvs_janitor_informer_restarts_total\{resource="services"\} (\d+)/.exec(metrics)?.[1];
      assert.ok(Number(restarts) >= 2, `retries are counted: ${restarts}`);
      assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 503);
      assert.equal(agent.lines.some(isDeletion), false);
      assert.equal((await weights(clusterV4))['10.240.5.66'], 0);
    } finally {
      await stopAgent(agent);
      await ipvs.deleteDestination(clusterV4, rs('10.240.5.66', 0));
    }
  });

  it('under --policy immediate deletes a terminating-but-serving real server at weight 0', async () => {
    await ipvs.createDestination(clusterV4, rs('10.240.5.4', 1));
    await putV4([ready('10.240.5.1'), ready('10.240.5.4')]);
    const agent = await startAgent('--policy', 'immediate');
    try {
      await ipvs.updateDestination(clusterV4, rs('10.240.5.4', 0));
      await putV4([ready('10.240.5.1'), terminatingServing('10.240.5.4')]);
      await until(async () => !('10.240.5.4' in (await weights(clusterV4))), 'immediate deletion');
      const line = await agent.waitFor((l) => l.realServer === '10.240.5.4:8080', 'immediate deletion');
      assert.equal(line.reason, 'immediate');
      assert.equal((await weights(clusterV4))['10.240.5.1'], 1);
    } finally {
      await stopAgent(agent);
    }
  });
});
