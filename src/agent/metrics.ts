// The agent's Prometheus metrics, in a registry of its own so tests can create as many agents as they like.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'ipvs_janitor_' });
  const registers = [registry];
  return {
    registry,
    deletions: new Counter({
      name: 'ipvs_janitor_deletions_total',
      help: 'Real servers deleted (or, with dry_run="true", that would have been), by reason',
      labelNames: ['reason', 'policy', 'dry_run'] as const,
      registers,
    }),
    zeroWeightDestinations: new Gauge({
      name: 'ipvs_janitor_zero_weight_destinations',
      help: 'Weight-0 real servers of Service-owned virtual services seen at the last full resync',
      registers,
    }),
    eventToDeletion: new Histogram({
      name: 'ipvs_janitor_event_to_deletion_seconds',
      help: 'From an EndpointSlice or Service event to the kernel deletion it caused',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    draining: new Gauge({
      name: 'ipvs_janitor_draining_destinations',
      help: 'Weight-0 real servers kept only for their active connections (drain policy), re-read every poll interval',
      registers,
    }),
    drainTime: new Histogram({
      name: 'ipvs_janitor_drain_seconds',
      help: 'From the agent first seeing a real server at weight 0 to deleting it, by reason',
      labelNames: ['reason'] as const,
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900],
      registers,
    }),
    reconcileDuration: new Histogram({
      name: 'ipvs_janitor_reconcile_duration_seconds',
      help: 'Duration of one reconcile pass, by trigger',
      labelNames: ['trigger'] as const,
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30],
      registers,
    }),
    deletionsPutOff: new Counter({
      name: 'ipvs_janitor_deletions_put_off_total',
      help: 'Deletions put off because the API server could not confirm the cache they rest on ("behind": it holds newer slices; "unavailable": no answer)',
      labelNames: ['cause'] as const,
      registers,
    }),
    reconcileErrors: new Counter({
      name: 'ipvs_janitor_reconcile_errors_total',
      help: 'Services or virtual services skipped because their desired state or decision threw (see the warn log)',
      labelNames: ['stage'] as const,
      registers,
    }),
    resyncs: new Counter({
      name: 'ipvs_janitor_resyncs_total',
      help: 'Full resync passes by result; "coalesced" counts requests folded into the pass already running',
      labelNames: ['result'] as const,
      registers,
    }),
    queueDepth: new Gauge({
      name: 'ipvs_janitor_work_queue_depth',
      help: 'Services waiting in the janitor work queue (events and resync steps)',
      registers,
    }),
    kernelErrors: new Counter({
      name: 'ipvs_janitor_kernel_errors_total',
      help: 'Failed IPVS netlink requests, by errno (TIMEOUT and PROTOCOL for non-errno failures)',
      labelNames: ['errno'] as const,
      registers,
    }),
    informerSynced: new Gauge({
      name: 'ipvs_janitor_informer_synced',
      help: '1 when the informer cache is complete and watching',
      labelNames: ['resource'] as const,
      registers,
    }),
    informerRestarts: new Counter({
      name: 'ipvs_janitor_informer_restarts_total',
      help: 'Informer restarts after an error',
      labelNames: ['resource'] as const,
      registers,
    }),
    nodeExposed: new Gauge({
      name: 'ipvs_janitor_node_exposed',
      help: '1 when port-reused connections can reach weight-0 real servers on this node (see `ipvs-janitor doctor`)',
      registers,
    }),
  };
}
