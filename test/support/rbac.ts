// The chart's own RBAC on a real API server: `helm template` renders the chart, its ServiceAccount, ClusterRole and
// ClusterRoleBinding are created as admin, and the agent gets a TokenRequest token for that ServiceAccount. An agent
// that runs with it has exactly the rights the chart grants, so a test that passes with it proves they suffice.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from '../vm/harness.js';
import { TOOLS_BIN, type KubeCluster, type KubeUser } from './kube-cluster.js';
import { ensureNamespace } from './kube-objects.js';

interface RenderedObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
}

const RBAC_KINDS = ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'] as const;
type RbacKind = (typeof RBAC_KINDS)[number];

const collection: Record<RbacKind, (o: RenderedObject) => string> = {
  ServiceAccount: (o) => `/api/v1/namespaces/${o.metadata.namespace}/serviceaccounts`,
  ClusterRole: () => '/apis/rbac.authorization.k8s.io/v1/clusterroles',
  ClusterRoleBinding: () => '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings',
};

/** Renders the chart with default values and returns its RBAC objects, one of each kind. */
export function renderChartRbac(release: string, namespace: string): Record<RbacKind, RenderedObject> {
  // Keep helm away from the user's (or the read-only VM root's) config and cache.
  const home = mkdtempSync(join(process.env.TMPDIR ?? tmpdir(), 'helm-'));
  let yaml: string;
  try {
    yaml = execFileSync(
      join(TOOLS_BIN, 'helm'),
      ['template', release, join(repoRoot(), 'charts', 'ipvs-janitor'), '--namespace', namespace],
      {
        encoding: 'utf8',
        env: { ...process.env, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') },
      },
    );
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
  const objects = parseAllDocuments(yaml)
    .map((d) => d.toJS() as RenderedObject | null)
    .filter((o): o is RenderedObject => o !== null && (RBAC_KINDS as readonly string[]).includes(o.kind));
  const one = (kind: RbacKind): RenderedObject => {
    const found = objects.filter((o) => o.kind === kind);
    if (found.length !== 1) throw new Error(`helm template rendered ${found.length} ${kind} objects, expected 1`);
    return found[0]!;
  };
  return { ServiceAccount: one('ServiceAccount'), ClusterRole: one('ClusterRole'), ClusterRoleBinding: one('ClusterRoleBinding') };
}

export class ChartIdentity {
  private constructor(
    private readonly cluster: KubeCluster,
    private readonly objects: Record<RbacKind, RenderedObject>,
    /** A ServiceAccount token from the TokenRequest API: the chart's ClusterRole and nothing else. */
    readonly user: KubeUser,
  ) {}

  /** Applies the chart's RBAC in `namespace` (created if missing) and requests a token for its ServiceAccount. */
  static async apply(cluster: KubeCluster, namespace: string, release: string): Promise<ChartIdentity> {
    const objects = renderChartRbac(release, namespace);
    await ensureNamespace(cluster, namespace);
    for (const kind of RBAC_KINDS) await cluster.call('POST', collection[kind](objects[kind]), objects[kind]);
    const sa = objects.ServiceAccount.metadata;
    const user = await cluster.serviceAccountToken(sa.namespace ?? namespace, sa.name);
    return new ChartIdentity(cluster, objects, user);
  }

  /** Deletes what apply() created: files sharing a cluster undo the RBAC they grant. */
  async remove(): Promise<void> {
    for (const kind of [...RBAC_KINDS].reverse()) {
      const o = this.objects[kind];
      const res = await this.cluster.request('DELETE', `${collection[kind](o)}/${o.metadata.name}`);
      if (res.status !== 200 && res.status !== 404) throw new Error(`delete ${kind} ${o.metadata.name}: ${res.status} ${res.text}`);
    }
  }

  /** Deletes the chart's ClusterRoleBinding: from now on every request of the agent answers 403. */
  async revokeBinding(): Promise<void> {
    const binding = this.objects.ClusterRoleBinding;
    await this.cluster.call('DELETE', `${collection.ClusterRoleBinding(binding)}/${binding.metadata.name}`);
  }

  /** Creates the chart's ClusterRoleBinding again, as rendered. */
  async restoreBinding(): Promise<void> {
    const binding = this.objects.ClusterRoleBinding;
    await this.cluster.call('POST', collection.ClusterRoleBinding(binding), binding);
  }
}
