// kube-proxy's ipset entries for the kube-proxy bench, loaded in one `ipset restore` instead of the one `ipset add`
// execution per entry that its first sync makes (pkg/proxy/ipvs/ipset.go syncIPSetEntries): under TCG each
// execution costs 0.27 s, so 10,000 Services (20,000 entries) would take some 90 minutes of the first sync. A node
// where kube-proxy restarts is in this state: the kernel keeps its sets and entries, and the new process adds only
// what is missing. kube-proxy still creates its sets itself; the entries go in once it has, and its log says what
// it added or removed on top (entriesTouchedByKubeProxy), so an entry the bench got wrong shows there.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { KubeCluster } from '../support/kube-cluster.js';
import type { KubeProxy } from '../support/kube-proxy.js';

const run = promisify(execFile);

/** The sets of pkg/proxy/ipvs/proxier.go (ipsetInfo) that hold an entry per ClusterIP Service. */
const CLUSTER_IP_SET = 'KUBE-CLUSTER-IP'; // hash:ip,port: "<clusterIP>,<protocol>:<port>"
const BOUND_ADDRESS_SET = 'KUBE-IPVS-IPS'; // hash:ip: every address kube-proxy binds to kube-ipvs0

/** What kube-proxy logs (verbosity 3) for each entry it adds or removes itself. */
const ADDED = 'Successfully added ip set entry to ip set';
const REMOVED = 'Successfully deleted legacy ip set entry from ip set';

interface ServiceList {
  items: { spec: { clusterIP?: string; ports?: { port: number; protocol?: string }[] } }[];
}

/** `ipset restore` lines for every Service in the API (all namespaces: kube-proxy serves `default/kubernetes` too). */
export async function kubeProxyIpsetEntries(cluster: KubeCluster): Promise<string[]> {
  const list = await cluster.call<ServiceList>('GET', '/api/v1/services');
  const lines: string[] = [];
  for (const { spec } of list.items) {
    if (!spec.clusterIP || spec.clusterIP === 'None') continue;
    lines.push(`add ${BOUND_ADDRESS_SET} ${spec.clusterIP}`);
    for (const p of spec.ports ?? []) lines.push(`add ${CLUSTER_IP_SET} ${spec.clusterIP},${(p.protocol ?? 'TCP').toLowerCase()}:${p.port}`);
  }
  return lines;
}

/**
 * Waits until kube-proxy has created its sets (at the start of its first sync), then loads `lines` into them.
 * Resolves with the seconds the load took.
 */
export async function loadOnceCreated(lines: readonly string[], deadline: number): Promise<number> {
  for (;;) {
    const { stdout } = await run('ipset', ['list', '-n']);
    const names = new Set(stdout.split('\n'));
    if (names.has(CLUSTER_IP_SET) && names.has(BOUND_ADDRESS_SET)) break;
    if (Date.now() > deadline) throw new Error(`kube-proxy did not create ${CLUSTER_IP_SET} and ${BOUND_ADDRESS_SET}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = execFile('ipset', ['restore', '-exist'], (err, _stdout, stderr) =>
      err ? reject(new Error(`ipset restore: ${stderr.trim() || err.message}`)) : resolve(),
    );
    child.stdin!.end(`${lines.join('\n')}\n`);
  });
  return (performance.now() - started) / 1000;
}

/** The entries kube-proxy added and removed itself, from its log. */
export function entriesTouchedByKubeProxy(proxy: KubeProxy): { added: number; removed: number } {
  return { added: proxy.count(ADDED), removed: proxy.count(REMOVED) };
}
