// `ipvs-janitor run`: wires the kernel client, the informers, the janitor loop, metrics and health together,
// and keeps running through API server and kernel trouble until SIGTERM.
import { IpvsClient } from '../ipvs/client.js';
import { loadKubeConfig } from '../k8s/config.js';
import { ClusterInformers, type Resource } from '../k8s/informers.js';
import { ServicePolicies } from '../k8s/annotations.js';
import { readKubeProxyConfiguration } from '../k8s/kube-proxy-config.js';
import { askProxyMode, DEFAULT_METRICS_ADDRESS, proxyModeLine } from '../k8s/kube-proxy-mode.js';
import { desiredVirtualServices } from '../k8s/mapping.js';
import { NodeAddresses, nodePortSelection } from './node-addresses.js';
import type { Policy, ServiceRef } from '../reconcile/types.js';
import type { LogLevel } from './log.js';
import { applyRecommendedSysctls, logExposure } from './exposure-report.js';
import { serveHttp } from './http.js';
import { Janitor, type DesiredState } from './janitor.js';
import { createLogger } from './log.js';
import { createMetrics } from './metrics.js';

export interface AgentOptions {
  kubeconfig?: string;
  nodeName?: string;
  policy: Policy;
  dryRun: boolean;
  resyncPeriodMs: number;
  /** How often draining real servers, and those kube-proxy has yet to zero, are read again. */
  drainPollIntervalMs: number;
  /** kube-proxy's --nodeport-addresses syntax, or bare IPs. Absent: every node address off kube-ipvs0. */
  nodePortAddresses?: string[];
  /** The node's primary IPs, for "primary". */
  nodeIPs?: string[];
  /** kube-proxy's KubeProxyConfiguration file: node-port addresses, bind address and mode come from it. */
  kubeProxyConfig?: string;
  /** kube-proxy's metrics server, asked for /proxyMode. */
  kubeProxyMetricsAddress?: string;
  metricsAddress: string;
  logLevel: LogLevel;
  setSysctls: boolean;
}

export async function runAgent(options: AgentOptions): Promise<void> {
  const log = createLogger(options.logLevel).child({ node: options.nodeName });
  // Configuration mistakes stop the start, before anything else, in one clear line.
  const kubeProxy = options.kubeProxyConfig ? readKubeProxyConfiguration(options.kubeProxyConfig) : undefined;
  const selection = nodePortSelection(options, kubeProxy);
  const metrics = createMetrics();
  // Without IPVS or CAP_NET_ADMIN there is nothing this agent can do: fail at once, in one clear line.
  const ipvs = await IpvsClient.open();
  await ipvs.info();

  if (options.setSysctls) await applyRecommendedSysctls(log);
  // The verdict is advice: a node whose sysctls cannot be read still gets its stale real servers cleaned.
  await logExposure(log, metrics).catch((err: unknown) =>
    log.warn('could not assess port-reuse exposure', { error: err instanceof Error ? err.message : String(err) }),
  );

  const nodeAddresses = await NodeAddresses.start(selection, log);
  const policies = new ServicePolicies(options.policy, (service, problem) =>
    log.warn('invalid policy annotation: the default policy applies', { service, ...problem, default: options.policy.mode }),
  );
  const informers = new ClusterInformers(loadKubeConfig(options.kubeconfig));
  const desired: DesiredState = {
    isSynced: () => informers.synced,
    services: () => informers.allServices().map((s) => ({ namespace: s.namespace, name: s.name })),
    confirm: (ref: ServiceRef) => informers.confirmSlices(ref),
    virtualServicesOf: (ref: ServiceRef) => {
      const service = informers.service(ref);
      if (!service) return [];
      const policy = policies.of(service);
      // skip: the Service's virtual services are left alone, as those of no Service are.
      if (policy.kind === 'skip') return [];
      return desiredVirtualServices(service, informers.slicesFor(ref), nodeAddresses.current(), policy.policy);
    },
  };
  const janitor = new Janitor({
    ipvs,
    desired,
    policy: options.policy,
    dryRun: options.dryRun,
    log,
    metrics,
    drainPollIntervalMs: options.drainPollIntervalMs,
  });
  nodeAddresses.onChange((change) => {
    log.info('node addresses changed: NodePort virtual services recomputed, full resync', { ...change });
    void janitor.resync();
  });

  const updateSyncedGauges = () => {
    for (const [resource, stats] of Object.entries(informers.stats())) {
      metrics.informerSynced.set({ resource }, stats.watching ? 1 : 0);
    }
  };
  informers.on('serviceChanged', (ref) => janitor.serviceChanged(ref));
  informers.on('sliceChanged', (ref) => janitor.serviceChanged(ref));
  // A lasting failure (403 until someone fixes RBAC) is one warning, not one per retry; every retry is counted,
  // and a different failure, or the same one after a recovery, warns again.
  const lastFailure = new Map<Resource, string>();
  informers.on('synced', () => {
    updateSyncedGauges();
    lastFailure.clear();
    log.info('informers synced: full resync', { services: informers.allServices().length });
    // Cleans what accumulated while we were not watching: a kube-proxy restart, a node failure, our own downtime.
    void janitor.resync();
  });
  informers.on('unsynced', (reason) => {
    updateSyncedGauges();
    log.warn('informers not synced: deletions paused', { reason });
  });
  informers.on('informerError', (resource: Resource, message, retryInMs) => {
    metrics.informerRestarts.inc({ resource });
    const level = lastFailure.get(resource) === message ? 'debug' : 'warn';
    lastFailure.set(resource, message);
    log.log(level, 'informer stopped: restarting', { resource, error: message, retryInMs });
  });

  const server = await serveHttp(options.metricsAddress, { ipvs, metrics, isSynced: () => informers.synced });
  // The address list is read again too: a change notification lost with the socket would be caught up here.
  const resync = setInterval(() => void nodeAddresses.refresh().then(() => janitor.resync()), options.resyncPeriodMs);
  log.info('ipvs-janitor started', {
    policy: options.policy.mode,
    maxDrainSeconds: options.policy.maxDrainSeconds ?? 0,
    dryRun: options.dryRun,
    resyncPeriodSeconds: options.resyncPeriodMs / 1000,
    nodePortAddresses: nodeAddresses.current(),
    metricsPort: server.port,
  });
  informers.start();
  void askProxyMode(options.kubeProxyMetricsAddress ?? kubeProxy?.metricsBindAddress ?? DEFAULT_METRICS_ADDRESS).then(
    (answer) => {
      const line = proxyModeLine(answer, kubeProxy?.mode);
      log[line.level](line.message, line.fields);
    },
  );

  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info('stopping', { signal });
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  clearInterval(resync);
  await nodeAddresses.close();
  await informers.stop();
  await janitor.stop();
  server.close();
  ipvs.close();
}
