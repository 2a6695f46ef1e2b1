// The host-side parts of the kube-proxy benchmark that need no VM: its parsers, its table, the QEMU network it asks
// for, and the kubeconfig through which the VM reaches the host's API server with TLS checked against a name.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadKubeConfig } from '../../src/k8s/config.js';
import { KubeCluster } from '../support/kube-cluster.js';
import { createService, ensureNamespace } from '../support/kube-objects.js';
import { until } from '../support/poll.js';
import { forwardNetdev, HOST_FORWARD_ADDRESS } from '../vm/harness.js';
import { kubeProxyIpsetEntries } from './kube-proxy-ipsets.js';
import { procMemory } from './agent-process.js';
import { goDurationSeconds, ipv4SyncSeconds } from './kube-proxy.js';
import { renderKubeProxy, type KubeProxyBench } from './results.js';

const STATUS = ['Name:\tkube-proxy', 'VmPeak:\t  900000 kB', 'VmHWM:\t   81920 kB', 'VmRSS:\t   61440 kB', 'Threads:\t9', ''].join('\n');

describe('kube-proxy benchmark: parsing', () => {
  it('reads VmRSS and VmHWM from /proc/<pid>/status in MiB', () => {
    assert.deepEqual(procMemory(STATUS), { rssMiB: 60, hwmMiB: 80 });
    assert.throws(() => procMemory('Name:\tzombie\n'), /no VmRSS/);
  });

  it('reads Go durations and kube-proxy\'s IPv4 sync times', () => {
    assert.equal(goDurationSeconds('1m2.5s'), 62.5);
    assert.equal(goDurationSeconds('850ms'), 0.85);
    assert.ok(Math.abs(goDurationSeconds('3µs') - 3e-6) < 1e-12);
    assert.throws(() => goDurationSeconds('soon'), /not a Go duration/);
    const lines = [
      'I1202 12:57:08.123456    1234 proxier.go:1010] "syncProxyRules complete" ipFamily="IPv4" elapsed="41.2s"',
      'I1202 12:57:09.123456    1234 proxier.go:1010] "syncProxyRules complete" ipFamily="IPv6" elapsed="2.1s"',
      'I1202 12:57:10.123456    1234 proxier.go:1000] "Syncing ipvs proxier rules" ipFamily="IPv4"',
      'I1202 12:58:10.123456    1234 proxier.go:1010] "syncProxyRules complete" ipFamily="IPv4" elapsed="1m3s"',
    ];
    assert.deepEqual(ipv4SyncSeconds(lines), [41.2, 63]);
  });
});

describe('kube-proxy benchmark: the VM\'s one forwarded port', () => {
  it('is a restricted user network whose only forward leads to 127.0.0.1', () => {
    const netdev = forwardNetdev({ guestPort: 6443, hostPort: 40123 });
    assert.match(netdev, /^user,id=n0,restrict=on,guestfwd=tcp:10\.0\.2\.100:6443-cmd:/);
    assert.equal(HOST_FORWARD_ADDRESS, '10.0.2.100');
    assert.deepEqual([...netdev.matchAll(/\/dev\/tcp\/([^/]+)\/(\d+)/g)].map((m) => `${m[1]}:${m[2]}`), ['127.0.0.1:40123']);
    // QEMU splits its options at single commas.
    assert.ok(!netdev.slice(netdev.indexOf('cmd:')).includes(','));
    assert.throws(() => forwardNetdev({ guestPort: 0, hostPort: 1 }), /bad port/);
    assert.throws(() => forwardNetdev({ guestPort: 1, hostPort: 70000 }), /bad port/);
  });
});

describe('KubeCluster.reach: a kubeconfig with tls-server-name', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'reach-'));
    writeFileSync(join(dir, 'ca.crt'), '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
    writeFileSync(join(dir, 'tokens.csv'), 't1,test-admin,1,"system:masters"\nt2,ipvs-janitor-agent,2\nt3,nobody,3\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('names the certificate\'s host for the check, never skips it, and the agent\'s loader passes it on', async () => {
    const cluster = KubeCluster.reach(dir, 'https://10.0.2.100:6443', 'localhost');
    assert.equal(cluster.url, 'https://10.0.2.100:6443');
    const path = cluster.kubeconfig(cluster.users.admin);
    const config = JSON.parse(readFileSync(path, 'utf8')) as { clusters: { cluster: Record<string, unknown> }[] };
    assert.deepEqual(config.clusters[0]!.cluster, {
      server: 'https://10.0.2.100:6443',
      'certificate-authority': join(dir, 'ca.crt'),
      'tls-server-name': 'localhost',
    });
    const options: { servername?: string; rejectUnauthorized?: boolean; headers?: Record<string, string> } = {};
    await loadKubeConfig(path).applyToHTTPSOptions(options);
    assert.equal(options.servername, 'localhost');
    assert.notEqual(options.rejectUnauthorized, false);
    assert.equal(options.headers?.Authorization, 'Bearer t1');
    await cluster.stop(); // nothing of the remote cluster is touched
    assert.equal(readFileSync(join(dir, 'tokens.csv'), 'utf8').split('\n').length, 4);
  });
});

describe('KubeCluster.reach against the real kube-apiserver', { timeout: 120_000 }, () => {
  let cluster: KubeCluster;
  before(async () => {
    cluster = await KubeCluster.start({ dedicated: true });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('verifies the server against tls-server-name: a name the certificate has passes, another fails', async () => {
    const good = KubeCluster.reach(cluster.dir, cluster.url, 'localhost');
    assert.equal((await good.request('GET', '/readyz')).status, 200);
    const wrong = KubeCluster.reach(cluster.dir, cluster.url, 'not-in-the-certificate.example');
    await assert.rejects(wrong.request('GET', '/readyz'), /not-in-the-certificate\.example|altnames/i);
  });

  it('lists the ipset entries kube-proxy makes of every Service in every namespace, none for a headless one', async () => {
    await ensureNamespace(cluster, 'seed');
    const { clusterIP } = await createService(cluster, {
      namespace: 'seed',
      name: 'two-ports',
      ports: [{ name: 'dns', port: 53, protocol: 'UDP' }, { name: 'web', port: 8443 }],
    });
    await createService(cluster, { namespace: 'seed', name: 'headless', clusterIP: 'None' });
    // The API server makes default/kubernetes itself, a moment after it reports ready.
    const kubernetes = await until(
      async () => {
        const res = await cluster.request('GET', '/api/v1/namespaces/default/services/kubernetes');
        return res.status === 200 && (JSON.parse(res.text) as { spec: { clusterIP: string } });
      },
      'the default/kubernetes Service',
      30_000,
      100,
    );
    const { spec } = kubernetes;
    assert.deepEqual((await kubeProxyIpsetEntries(cluster)).sort(), [
      `add KUBE-CLUSTER-IP ${clusterIP},tcp:8443`,
      `add KUBE-CLUSTER-IP ${clusterIP},udp:53`,
      `add KUBE-CLUSTER-IP ${spec.clusterIP},tcp:443`,
      `add KUBE-IPVS-IPS ${clusterIP}`,
      `add KUBE-IPVS-IPS ${spec.clusterIP}`,
    ].sort());
  });
});

describe('kube-proxy benchmark: the table', () => {
  const base: KubeProxyBench = {
    date: '2026-12-02',
    kernel: '6.1.0-57-amd64',
    kubeProxyVersion: 'Kubernetes v1.37.2',
    services: 10_000,
    endpoints: 100_000,
    populateSeconds: 190,
    kubeProxy: { firstSyncSeconds: 300.4, servicesProgrammed: 10_000, syncSeconds: [290, 60.5], rssMiB: 150, hwmMiB: 170, rssEndMiB: 155 },
    agent: { syncSeconds: 80, resyncSeconds: 22.6, rssMiB: 151, hwmMiB: 160, rssEndMiB: 152 },
    rollouts: [
      { service: 'bench/svc-1000', realServer: '10.100.39.17:8080', kubeProxyWeightZeroMs: 61_000, agentDeletionMs: 120, agentLogMs: 110, trigger: 'event', writeMs: [20, 21] },
      { service: 'bench/svc-3000', realServer: '10.100.117.49:8080', kubeProxyWeightZeroMs: 59_000, agentDeletionMs: 80, agentLogMs: 70, trigger: 'event', writeMs: [19, 25] },
    ],
    totalSeconds: 1200,
  };

  it('gives medians with every sample, both RSS figures and the sizes', () => {
    const text = renderKubeProxy(base);
    assert.match(text, /10,000 Services \/ 100,000 endpoints/);
    assert.match(text, /\| \*\*150 MiB\*\* \(170 MiB\); 155 MiB \|/);
    assert.match(text, /median \*\*60\.00 s\*\* \(n=2: 61\.00 s, 59\.00 s\)/);
    assert.match(text, /median \*\*100\.0 ms\*\* \(n=2: 120\.0 ms, 80\.0 ms\)/);
    assert.match(text, /trigger: event, event/);
    assert.match(text, /none loaded \(kube-proxy added every entry itself\)/);
    assert.doesNotMatch(text, /Incomplete/);
    const seeded = renderKubeProxy({ ...base, kubeProxy: { ...base.kubeProxy, ipsetSeed: { entries: 20_002, loadSeconds: 3.21, added: 0, removed: 1 } } });
    assert.match(seeded, /\| 20,002 in 3\.2 s; 0 \/ 1 \|/);
  });

  it('says what was not measured and why', () => {
    const text = renderKubeProxy({
      ...base,
      kubeProxy: { servicesProgrammed: 4_321, syncSeconds: [] },
      agent: {},
      rollouts: [{ service: 'bench/svc-5', realServer: '10.100.0.51:8080', writeMs: [], error: 'timed out' }],
      failure: 'kube-proxy did not program the full table within 25 min',
    });
    assert.match(text, /not reached: 4,321 of 10,000 virtual services/);
    assert.match(text, /\| \*\*not measured\*\* \(not measured\); not measured \|/);
    assert.match(text, /\*\*Incomplete:\*\* kube-proxy did not program the full table within 25 min/);
    assert.match(text, /- bench\/svc-5 \(10\.100\.0\.51:8080\): timed out/);
  });
});
