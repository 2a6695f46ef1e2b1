// Run by kube-proxy-mode.test.ts inside `unshare -n` (a network namespace of its own, so kube-proxy's nftables
// rules touch nothing of the host's): etcd + kube-apiserver, a Node, the real kube-proxy v1.37.2 in the mode given
// as argv[2]; then asks /proxyMode as `run` does, runs `doctor --json`, and prints both as one JSON line.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { askProxyMode } from '../../src/k8s/kube-proxy-mode.js';
import { KubeCluster, TOOLS_BIN } from '../support/kube-cluster.js';

const mode = process.argv[2] ?? 'nftables';
execFileSync('ip', ['link', 'set', 'lo', 'up']);
const cluster = await KubeCluster.start();
try {
  await cluster.call('POST', '/api/v1/nodes', {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name: 'node-a' },
    status: { addresses: [{ type: 'InternalIP', address: '127.0.0.1' }] },
  });
  writeFileSync(
    join(cluster.dir, 'kube-proxy.yaml'),
    JSON.stringify({
      apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
      kind: 'KubeProxyConfiguration',
      mode,
      clientConnection: { kubeconfig: cluster.kubeconfig(cluster.users.admin) },
      hostnameOverride: 'node-a',
      metricsBindAddress: '127.0.0.1:10249',
    }),
  );
  const kubeProxy = spawn(join(TOOLS_BIN, 'kube-proxy'), [`--config=${join(cluster.dir, 'kube-proxy.yaml')}`], { stdio: 'ignore' });
  try {
    let answer = await askProxyMode('127.0.0.1:10249');
    for (let i = 0; i < 300 && answer.kind !== 'mode'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      answer = await askProxyMode('127.0.0.1:10249');
    }
    const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
    const doctor = spawnSync(process.execPath, [cli, 'doctor', '--json'], { encoding: 'utf8' });
    process.stdout.write(`${JSON.stringify({ answer, doctor: { status: doctor.status, stdout: doctor.stdout, stderr: doctor.stderr } })}\n`);
  } finally {
    kubeProxy.kill('SIGTERM');
  }
} finally {
  await cluster.stop();
}
