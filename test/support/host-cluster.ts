// A real kube-apiserver on the host's loopback, used from inside the test VM through the VM's one forwarded port
// (harness forwardToHost). Natively it starts in seconds and costs the VM's emulated CPUs nothing; inside the VM
// under TCG it takes minutes to start and competes with kube-proxy for the two emulated cores.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HOST_FORWARD_ADDRESS } from '../vm/harness.js';
import { KubeCluster } from './kube-cluster.js';
import { until } from './poll.js';

/** What the VM side needs to reach the host's API server, passed as environment variables. */
export interface HostClusterEnv {
  HOST_API_PORT: string;
  HOST_API_CA: string;
  HOST_API_TOKENS: string;
}

export function hostClusterEnv(cluster: KubeCluster): HostClusterEnv {
  return {
    HOST_API_PORT: String(cluster.apiserverPort),
    HOST_API_CA: cluster.ca,
    HOST_API_TOKENS: readFileSync(join(cluster.dir, 'tokens.csv'), 'utf8'),
  };
}

/** The QEMU port forward that carries hostClusterEnv's API server into the VM. */
export function hostClusterForward(cluster: KubeCluster): { guestPort: number; hostPort: number } {
  return { guestPort: cluster.apiserverPort, hostPort: cluster.apiserverPort };
}

/** In the VM: the host's API server, once it answers /readyz through the forwarded port. */
export async function reachHostCluster(env: NodeJS.ProcessEnv, timeoutMs = 120_000): Promise<KubeCluster> {
  const { HOST_API_PORT: port, HOST_API_CA: ca, HOST_API_TOKENS: tokens } = env;
  if (port === undefined || ca === undefined || tokens === undefined) {
    throw new Error('HOST_API_PORT, HOST_API_CA and HOST_API_TOKENS must all be set to reach the host API server');
  }
  const dir = mkdtempSync(join(env.TMPDIR ?? '/tmp', 'kube-'));
  writeFileSync(join(dir, 'ca.crt'), ca);
  writeFileSync(join(dir, 'tokens.csv'), tokens);
  // The host's serving certificate names 127.0.0.1 and localhost (kube-cluster.ts makePki).
  const cluster = KubeCluster.reach(dir, `https://${HOST_FORWARD_ADDRESS}:${port}`, 'localhost');
  const ready = async () => (await cluster.request('GET', '/readyz').catch(() => undefined))?.status === 200;
  await until(ready, 'the host API server through the forwarded port', timeoutMs, 500);
  return cluster;
}
