// The agent sees the node as kube-proxy does, on the real kernel and the real API server (inside the VM):
// NodePort addresses come from kube-proxy's own KubeProxyConfiguration (nodePortAddresses unset: every address off
// kube-ipvs0) and follow the kernel's address changes (rtnetlink); per-Service policy annotations override the
// agent's default. This test plays kube-proxy with the project's IPVS client.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IpvsClient } from '../../src/ipvs/client.js';
import type { DestinationSpec, ServiceKey } from '../../src/ipvs/types.js';
import { AgentProcess, isDeletion, isSynced, type LogLine } from '../support/agent-process.js';
import { until } from '../support/poll.js';
import { KubeCluster } from '../support/kube-cluster.js';
import { putSlice, serviceObject, sliceObject, type EndpointSpec } from '../support/kube-objects.js';
import { ChartIdentity } from '../support/rbac.js';
import { KUBEADM_IPVS } from '../k8s/kube-proxy-configs.js';

const APISERVER_READY_MS = 10 * 60_000;
// Its own namespace, RBAC release and interfaces: in the VM suite the API server and the kernel are shared.
const NS = 'np-policy';
const AGENT_SYNCED_MS = 5 * 60_000;

const tcp = (address: string, port: number): ServiceKey => ({ kind: 'address', family: 'ipv4', protocol: 'tcp', address, port });
const rs = (address: string, weight: number): DestinationSpec => ({ family: 'ipv4', address, port: 8080, forwarding: 'masq', weight });
const ready = (ip: string): EndpointSpec => ({ ip, ready: true, serving: true, terminating: false });
const terminatingServing = (ip: string): EndpointSpec => ({ ip, ready: false, serving: true, terminating: true });

// A node address that appears after the agent started (an interface that gets its IP with the first pod).
const LATE_ADDRESS = '10.0.6.1';
const NODE_PORT = 30081;
const lateNodePort = tcp(LATE_ADDRESS, NODE_PORT);
const nodePortCluster = tcp('10.96.6.10', 80);
// kube-proxy binds Service IPs to kube-ipvs0: never a node address, so never a NodePort's.
const onDummy = tcp('10.96.6.10', NODE_PORT);

const annotated = {
  immediate: { clusterIP: '10.96.6.20', annotations: { 'ipvs-janitor/policy': 'immediate' } },
  skip: { clusterIP: '10.96.6.30', annotations: { 'ipvs-janitor/policy': 'skip' } },
  invalid: { clusterIP: '10.96.6.40', annotations: { 'ipvs-janitor/policy': 'aggressive' } },
} as const;

describe('NodePort addresses and per-Service policy on the real kernel and API server', () => {
  let cluster: KubeCluster;
  let kubeconfig: string;
  let ipvs: IpvsClient;
  let agent: AgentProcess;
  let identity: ChartIdentity;
  let createdDummy = false;

  const weights = async (key: ServiceKey) =>
    Object.fromEntries((await ipvs.listDestinations(key)).map((d) => [d.address, d.weight]));
  const deletionsOf = (name: string) => agent.lines.filter((l) => isDeletion(l) && l.service === `${NS}/${name}`);

  async function resyncsComplete(): Promise<number> {
    const port = (agent.lines.find((l) => l.message === 'ipvs-janitor started') as LogLine).metricsPort as number;
    const text = await new Promise<string>((resolve, reject) =>
      get(`http://127.0.0.1:${port}/metrics`, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(body));
      }).on('error', reject),
    );
    return Number(/^ipvs_janitor_resyncs_total\{result="complete"\} (\d+)/m.exec(text)?.[1] ?? 0);
  }

  before(async () => {
    // kube-ipvs0 is kube-proxy's: another file's real kube-proxy may have made it already.
    createdDummy = spawnSync('ip', ['link', 'show', 'kube-ipvs0']).status !== 0;
    if (createdDummy) execFileSync('ip', ['link', 'add', 'kube-ipvs0', 'type', 'dummy']);
    execFileSync('sh', ['-c', `ip link add rs6 type dummy && ip link set rs6 up && ip route add 10.240.6.0/24 dev rs6 &&
      ip link add np6 type dummy && ip link set np6 up && ip addr add 10.96.6.10/32 dev kube-ipvs0`]);
    cluster = await KubeCluster.start({ readyTimeoutMs: APISERVER_READY_MS });
    identity = await ChartIdentity.apply(cluster, NS, 'np-policy');
    kubeconfig = cluster.kubeconfig(identity.user);
    ipvs = await IpvsClient.open();
    await cluster.call('POST', `/api/v1/namespaces/${NS}/services`, serviceObject({
      namespace: NS, name: 'np', type: 'NodePort', clusterIP: '10.96.6.10',
      ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: NODE_PORT }],
    }));
    await putSlice(cluster, sliceObject(NS, 'np-1', 'np', [ready('10.240.6.1')], { name: 'http', port: 8080 }));
    for (const [name, spec] of Object.entries(annotated)) {
      await cluster.call('POST', `/api/v1/namespaces/${NS}/services`, serviceObject({
        namespace: NS, name, clusterIP: spec.clusterIP, annotations: spec.annotations,
        ports: [{ name: 'http', port: 80, targetPort: 8080 }],
      }));
      // .1 serves, .2 terminates but still serves, .9 is gone: kube-proxy has set .2 and .9 to weight 0.
      await putSlice(cluster, sliceObject(NS, `${name}-1`, name, [ready('10.240.6.1'), terminatingServing('10.240.6.2')], { name: 'http', port: 8080 }));
      const key = tcp(spec.clusterIP, 80);
      await ipvs.createService({ key, scheduler: 'rr' });
      await ipvs.createDestination(key, rs('10.240.6.1', 1));
      await ipvs.createDestination(key, rs('10.240.6.2', 0));
      await ipvs.createDestination(key, rs('10.240.6.9', 0));
    }
    // The NodePort's virtual services, each with a stale weight-0 real server. The one on LATE_ADDRESS exists before
    // the address does (IPVS takes any address), so the address's arrival is the only thing that can change its fate.
    for (const key of [nodePortCluster, lateNodePort, onDummy]) {
      await ipvs.createService({ key, scheduler: 'rr' });
      await ipvs.createDestination(key, rs('10.240.6.1', 1));
      await ipvs.createDestination(key, rs('10.240.6.9', 0));
    }
    const config = join(cluster.dir, 'kube-proxy.conf');
    writeFileSync(config, KUBEADM_IPVS);
    agent = AgentProcess.start([
      '--kubeconfig', kubeconfig, '--metrics-address', '127.0.0.1:0', '--resync-period', '1h', '--kube-proxy-config', config,
    ]);
    await agent.waitFor(isSynced, 'informers synced', AGENT_SYNCED_MS);
    await until(async () => (await resyncsComplete()) >= 1, 'the first full resync complete');
  });

  after(async () => {
    if (agent) assert.equal(await agent.stop(), 0, `the agent stops cleanly on SIGTERM\n${agent.describe()}`);
    if (ipvs) {
      for (const s of await ipvs.listServices()) await ipvs.deleteService(s.key);
      ipvs.close();
    }
    // No namespace controller runs on the test server: a deleted namespace would stay Terminating, so the objects go.
    for (const name of ['np', ...Object.keys(annotated)]) {
      await cluster?.request('DELETE', `/api/v1/namespaces/${NS}/services/${name}`);
      await cluster?.request('DELETE', `/apis/discovery.k8s.io/v1/namespaces/${NS}/endpointslices/${name}-1`);
    }
    await identity?.remove();
    await cluster?.stop();
    execFileSync('sh', ['-c', `ip link del rs6; ip link del np6; ${createdDummy ? 'ip link del kube-ipvs0' : 'ip addr del 10.96.6.10/32 dev kube-ipvs0'}; true`]);
  });

  it("reads kube-proxy's configuration: its mode, and node addresses without kube-ipvs0's", async () => {
    const started = agent.lines.find((l) => l.message === 'ipvs-janitor started')!;
    assert.ok(!(started.nodePortAddresses as string[]).includes(LATE_ADDRESS), 'the late address is not there yet');
    assert.ok(!(started.nodePortAddresses as string[]).includes('10.96.6.10'), 'kube-ipvs0 holds no node address');
    await agent.waitFor((l) => l.message === 'kube-proxy is in IPVS mode' && l.source === 'kube-proxy configuration file', 'the mode line');
    // The first resync cleaned the cluster IP's stale real server, and left the NodePort on kube-ipvs0's address alone.
    assert.equal('10.240.6.9' in (await weights(nodePortCluster)), false);
    assert.equal((await weights(onDummy))['10.240.6.9'], 0);
    assert.equal((await weights(lateNodePort))['10.240.6.9'], 0, 'no node address yet: not a NodePort of this node');
  });

  it('a stale weight-0 real server of a NodePort on an address added after start is deleted', async () => {
    const from = agent.lines.length;
    execFileSync('ip', ['addr', 'add', `${LATE_ADDRESS}/24`, 'dev', 'np6']);
    const changed = await agent.waitFor((l) => l.message?.startsWith('node addresses changed') === true, 'the address change', 60_000, from);
    assert.deepEqual(changed.added, [LATE_ADDRESS]);
    await until(async () => !('10.240.6.9' in (await weights(lateNodePort))), 'the late NodePort loses its stale real server');
    await until(() => deletionsOf('np').some((l) => l.virtualService === `TCP ${LATE_ADDRESS}:${NODE_PORT}`), 'its deletion line');
    assert.equal((await weights(lateNodePort))['10.240.6.1'], 1);
    assert.equal((await weights(onDummy))['10.240.6.9'], 0, 'kube-ipvs0 address: still not ours');
  });

  it('an address that goes away takes its NodePort out of what the agent judges', async () => {
    const from = agent.lines.length;
    execFileSync('ip', ['addr', 'del', `${LATE_ADDRESS}/24`, 'dev', 'np6']);
    const changed = await agent.waitFor((l) => l.message?.startsWith('node addresses changed') === true, 'the address removal', 60_000, from);
    assert.deepEqual(changed.removed, [LATE_ADDRESS]);
    // Both get a stale real server; an EndpointSlice event then reconciles the Service: only the cluster IP's goes.
    await ipvs.createDestination(lateNodePort, rs('10.240.6.8', 0));
    await ipvs.createDestination(nodePortCluster, rs('10.240.6.8', 0));
    await putSlice(cluster, sliceObject(NS, 'np-1', 'np', [ready('10.240.6.1'), ready('10.240.6.3')], { name: 'http', port: 8080 }));
    await until(async () => !('10.240.6.8' in (await weights(nodePortCluster))), 'the cluster IP loses .8');
    assert.equal((await weights(lateNodePort))['10.240.6.8'], 0, 'no longer a node address: left alone');
  });

  it('ipvs-janitor/policy overrides the default for its Service only; an invalid value warns once and the default applies', async () => {
    const key = (name: keyof typeof annotated) => tcp(annotated[name].clusterIP, 80);
    // immediate: the terminating-but-serving .2 goes too (the default, graceful, would keep it).
    assert.deepEqual(await weights(key('immediate')), { '10.240.6.1': 1 });
    assert.deepEqual(deletionsOf('immediate').map((l) => [l.realServer, l.policy]).sort(), [
      ['10.240.6.2:8080', 'immediate'],
      ['10.240.6.9:8080', 'immediate'],
    ]);
    // skip: nothing of this Service is touched, not even the real server whose endpoint is gone.
    assert.deepEqual(await weights(key('skip')), { '10.240.6.1': 1, '10.240.6.2': 0, '10.240.6.9': 0 });
    assert.deepEqual(deletionsOf('skip'), []);
    // invalid: graceful applies (.9 goes, .2 stays), and one warning names the Service and the value.
    assert.deepEqual(await weights(key('invalid')), { '10.240.6.1': 1, '10.240.6.2': 0 });
    assert.deepEqual(deletionsOf('invalid').map((l) => [l.realServer, l.policy]), [['10.240.6.9:8080', 'graceful']]);
    const warnings = agent.lines.filter((l) => l.message?.startsWith('invalid policy annotation') === true);
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.equal(warnings[0]!.level, 'warn');
    assert.equal(warnings[0]!.service, `${NS}/invalid`);
    assert.equal(warnings[0]!.value, 'aggressive');
    assert.equal(warnings[0]!.annotation, 'ipvs-janitor/policy');
  });
});
