// End to end on the real kernel: the real `run` command, the Kubernetes API stand-in, and this test playing
// kube-proxy with the project's IPVS client. Runs inside the VM.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { IpvsClient } from '../../src/ipvs/client.js';
import type { DestinationSpec, ServiceKey } from '../../src/ipvs/types.js';
import { StandIn, type KubeObject } from '../k8s/standin.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const NODE_IP = '10.0.5.1';

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

type Condition = 'ready' | 'terminating-serving';
const endpoint = (address: string, condition: Condition) => ({
  addresses: [address],
  conditions:
    condition === 'ready'
      ? { ready: true, serving: true, terminating: false }
      : { ready: false, serving: true, terminating: true },
});

function slice(name: string, addressType: 'IPv4' | 'IPv6', endpoints: ReturnType<typeof endpoint>[]): KubeObject {
  return {
    kind: 'EndpointSlice',
    metadata: { namespace: 'shop', name, labels: { 'kubernetes.io/service-name': 'web' } },
    addressType,
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints,
  } as KubeObject;
}

const service: KubeObject = {
  kind: 'Service',
  metadata: { namespace: 'shop', name: 'web' },
  spec: {
    type: 'NodePort',
    clusterIP: '10.96.5.10',
    clusterIPs: ['10.96.5.10', 'fd00:96::5:10'],
    ipFamilies: ['IPv4', 'IPv6'],
    selector: { app: 'web' },
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', nodePort: 30080 }],
  },
} as KubeObject;

const rs = (address: string, weight: number): DestinationSpec => ({
  family: address.includes(':') ? 'ipv6' : 'ipv4',
  address,
  port: 8080,
  forwarding: 'masq',
  weight,
});

interface Agent {
  child: ChildProcess;
  logs: Record<string, unknown>[];
  waitForLog(match: (l: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>>;
  stop(): Promise<void>;
}

async function until<T>(probe: () => Promise<T | undefined> | T | undefined, what: string, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('ipvs-janitor run against the real kernel', () => {
  let standin: StandIn;
  let kubeconfig: string;
  let ipvs: IpvsClient;

  const weights = async (key: ServiceKey) =>
    Object.fromEntries((await ipvs.listDestinations(key)).map((d) => [d.address, d.weight]));

  function startAgent(...flags: string[]): Promise<Agent> {
    const child = spawn(
      process.execPath,
      [cli, 'run', '--kubeconfig', kubeconfig, '--node-name', 'vm', '--metrics-address', '127.0.0.1:0',
        '--resync-period', '1h', '--nodeport-addresses', NODE_IP, ...flags],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const logs: Record<string, unknown>[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    });
    const agent: Agent = {
      child,
      logs,
      waitForLog: (match, what) =>
        until(() => logs.find(match), `agent log: ${what}`).catch((err: Error) => {
          throw new Error(`${err.message}; the agent logged:\n${logs.map((l) => JSON.stringify(l)).join('\n')}`);
        }),
      stop: async () => {
        if (child.exitCode !== null) return;
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
        assert.equal(child.exitCode, 0, 'the agent stops cleanly on SIGTERM');
      },
    };
    // Loading @kubernetes/client-node over 9p under emulation takes tens of seconds; on a node it takes one.
    return until(() => logs.find((l) => l.message === 'informers synced: full resync'), 'agent synced', 300_000).then(
      () => agent,
    );
  }

  before(async () => {
    execFileSync('sh', ['-c', `ip link add rs0 type dummy && ip link set rs0 up &&
      ip route add 10.240.0.0/16 dev rs0 && ip -6 route add fd00:240::/64 dev rs0`]);
    standin = await StandIn.start();
    kubeconfig = standin.kubeconfigFile();
    ipvs = await IpvsClient.open();
    standin.apply(service);
    standin.apply(slice('web-v4', 'IPv4', [endpoint('10.240.5.1', 'ready'), endpoint('10.240.5.2', 'ready'), endpoint('10.240.5.3', 'ready')]));
    standin.apply(slice('web-v6', 'IPv6', [endpoint('fd00:240::5:1', 'ready')]));
    for (const key of [...v4Services, unowned]) {
      await ipvs.createService({ key, scheduler: 'rr' });
      for (const a of ['10.240.5.1', '10.240.5.2', '10.240.5.3']) await ipvs.createDestination(key, rs(a, 1));
    }
    await ipvs.createService({ key: clusterV6, scheduler: 'rr' });
    await ipvs.createDestination(clusterV6, rs('fd00:240::5:1', 1));
  });

  after(async () => {
    for (const s of await ipvs.listServices()) await ipvs.deleteService(s.key);
    ipvs.close();
    await standin.close();
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
      const isDeletion = (l: Record<string, unknown>) => l.message === 'deleted real server';
      await until(() => agent.logs.filter(isDeletion).length >= 3, 'three deletion log lines');
      const deleted = agent.logs.filter(isDeletion);
      assert.deepEqual(
        deleted.map((l) => [l.service, l.virtualService, l.realServer, l.weight, l.reason, l.trigger]).sort(),
        [
          ['shop/web', 'TCP 10.0.5.1:30080', '10.240.5.9:8080', 0, 'endpoint-gone', 'resync'],
          ['shop/web', 'TCP 10.96.5.10:80', '10.240.5.9:8080', 0, 'endpoint-gone', 'resync'],
          ['shop/web', 'TCP [fd00:96::5:10]:80', '[fd00:240::5:9]:8080', 0, 'endpoint-gone', 'resync'],
        ],
      );

      // Rollout: .2 terminates but still serves, .3 is gone; kube-proxy drops both to weight 0.
      for (const key of v4Services) {
        await ipvs.updateDestination(key, rs('10.240.5.2', 0));
        await ipvs.updateDestination(key, rs('10.240.5.3', 0));
      }
      standin.apply(slice('web-v4', 'IPv4', [endpoint('10.240.5.1', 'ready'), endpoint('10.240.5.2', 'terminating-serving')]));
      // Events are reconciled in order: once .3 is gone the slice event was decided, .2 included.
      for (const key of v4Services) await until(async () => !('10.240.5.3' in (await weights(key))), '.3 deleted');
      for (const key of v4Services) assert.equal((await weights(key))['10.240.5.2'], 0, 'terminating but serving: kept');

      standin.apply(slice('web-v4', 'IPv4', [endpoint('10.240.5.1', 'ready')]));
      for (const key of v4Services) await until(async () => !('10.240.5.2' in (await weights(key))), '.2 deleted after it left the slice');
      const isTwo = (l: Record<string, unknown>) => l.realServer === '10.240.5.2:8080';
      await until(() => agent.logs.filter(isTwo).length >= 2, 'two deletion log lines for .2');
      const gone = agent.logs.filter(isTwo);
      assert.deepEqual(gone.map((l) => [l.reason, l.trigger, l.policy]), [
        ['endpoint-gone', 'event', 'graceful'],
        ['endpoint-gone', 'event', 'graceful'],
      ]);
      assert.equal((await weights(clusterV4))['10.240.5.1'], 1);
    } finally {
      await agent.stop();
    }
  });

  it('under --dry-run logs the decision and deletes nothing', async () => {
    await ipvs.createDestination(clusterV4, rs('10.240.5.7', 0));
    const agent = await startAgent('--dry-run');
    try {
      const line = await agent.waitForLog((l) => l.realServer === '10.240.5.7:8080', 'dry-run decision');
      assert.equal(line.message, 'would delete real server (dry run)');
      assert.equal(line.reason, 'endpoint-gone');
      assert.equal((await weights(clusterV4))['10.240.5.7'], 0);
    } finally {
      await agent.stop();
    }
    await ipvs.deleteDestination(clusterV4, rs('10.240.5.7', 0));
  });

  it('under --policy immediate deletes a terminating-but-serving real server at weight 0', async () => {
    await ipvs.createDestination(clusterV4, rs('10.240.5.4', 1));
    standin.apply(slice('web-v4', 'IPv4', [endpoint('10.240.5.1', 'ready'), endpoint('10.240.5.4', 'ready')]));
    const agent = await startAgent('--policy', 'immediate');
    try {
      await ipvs.updateDestination(clusterV4, rs('10.240.5.4', 0));
      standin.apply(slice('web-v4', 'IPv4', [endpoint('10.240.5.1', 'ready'), endpoint('10.240.5.4', 'terminating-serving')]));
      await until(async () => !('10.240.5.4' in (await weights(clusterV4))), 'immediate deletion');
      const line = await agent.waitForLog((l) => l.realServer === '10.240.5.4:8080', 'immediate deletion');
      assert.equal(line.reason, 'immediate');
      assert.equal((await weights(clusterV4))['10.240.5.1'], 1);
    } finally {
      await agent.stop();
    }
  });
});
