// The reconcile loop: turns Service/EndpointSlice events and periodic resyncs into kernel reads, decisions
// and deletions, one pass at a time so two passes never act on the same virtual service at once.
import type { IpvsApi, ServiceKey } from '../ipvs/types.js';
import { isErrno, NetlinkError, NetlinkProtocolError, NetlinkTimeoutError } from '../netlink/errors.js';
import { decide, type Deletion, type ZeroWeightSince } from '../reconcile/decide.js';
import { addressPortKey, serviceKeyString } from '../reconcile/keys.js';
import type { DesiredVirtualService, Policy, ServiceRef } from '../reconcile/types.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

/** What the janitor needs from the Kubernetes side: plain data, whatever keeps it. */
export interface DesiredState {
  /** True only while every cache is complete: nothing is decided otherwise. */
  isSynced(): boolean;
  services(): ServiceRef[];
  /** The virtual services this node has for the Service; [] when the Service is unknown. */
  virtualServicesOf(ref: ServiceRef): DesiredVirtualService[];
}

export interface JanitorOptions {
  ipvs: IpvsApi;
  desired: DesiredState;
  policy: Policy;
  dryRun: boolean;
  log: Logger;
  metrics: Metrics;
  /** Milliseconds on a clock that does not jump. */
  clock?: () => number;
}

type Trigger = { kind: 'event'; firstEventAt: number } | { kind: 'resync' };

const refKey = (ref: ServiceRef) => `${ref.namespace}/${ref.name}`;

export function describeServiceKey(key: ServiceKey): string {
  return key.kind === 'fwmark'
    ? `FWM ${key.fwmark}${key.family === 'ipv6' ? ' IPv6' : ''}`
    : `${key.protocol.toUpperCase()} ${addressPortKey(key.address, key.port)}`;
}

function errnoLabel(err: unknown): string {
  if (err instanceof NetlinkError) return err.errno;
  if (err instanceof NetlinkTimeoutError) return 'TIMEOUT';
  if (err instanceof NetlinkProtocolError) return 'PROTOCOL';
  return 'OTHER';
}

export class Janitor {
  private readonly pending = new Map<string, { ref: ServiceRef; firstEventAt: number }>();
  private readonly zeroWeightSince = new Map<string, ZeroWeightSince>();
  private work: Promise<void> = Promise.resolve();
  private draining = false;
  private readonly clock: () => number;

  constructor(private readonly o: JanitorOptions) {
    this.clock = o.clock ?? (() => performance.now());
  }

  /** An event for the Service: bursts for one Service collapse into one pass. */
  serviceChanged(ref: ServiceRef): void {
    const key = refKey(ref);
    if (!this.pending.has(key)) this.pending.set(key, { ref, firstEventAt: this.clock() });
    if (this.draining) return;
    this.draining = true;
    this.enqueue(async () => {
      this.draining = false;
      const batch = [...this.pending.values()];
      this.pending.clear();
      for (const { ref: r, firstEventAt } of batch) await this.reconcileService(r, { kind: 'event', firstEventAt });
    });
  }

  /** Every Service's virtual services; also forgets drain clocks of virtual services that no longer exist. */
  resync(): Promise<void> {
    return this.enqueue(async () => {
      if (!this.o.desired.isSynced()) {
        this.o.log.debug('resync skipped: informers not synced');
        return;
      }
      const end = this.o.metrics.reconcileDuration.startTimer({ trigger: 'resync' });
      const seen = new Set<string>();
      let zeroWeight = 0;
      for (const ref of this.o.desired.services()) {
        const result = await this.reconcileService(ref, { kind: 'resync' }, false);
        result.keys.forEach((k) => seen.add(k));
        zeroWeight += result.zeroWeight;
      }
      for (const key of this.zeroWeightSince.keys()) if (!seen.has(key)) this.zeroWeightSince.delete(key);
      this.o.metrics.zeroWeightDestinations.set(zeroWeight);
      end();
    });
  }

  /** Resolves once everything queued so far has run. */
  idle(): Promise<void> {
    return this.work;
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.work.then(task).catch((err: unknown) => {
      this.o.log.error('reconcile pass failed', { error: err instanceof Error ? err.message : String(err) });
    });
    this.work = run;
    return run;
  }

  private async reconcileService(
    ref: ServiceRef,
    trigger: Trigger,
    timed = true,
  ): Promise<{ keys: string[]; zeroWeight: number }> {
    const end = timed ? this.o.metrics.reconcileDuration.startTimer({ trigger: trigger.kind }) : undefined;
    const keys: string[] = [];
    let zeroWeight = 0;
    try {
      if (!this.o.desired.isSynced()) return { keys, zeroWeight };
      for (const vs of this.o.desired.virtualServicesOf(ref)) {
        const key = serviceKeyString(vs.key);
        keys.push(key);
        zeroWeight += await this.reconcileVirtualService(vs, key, trigger);
      }
      return { keys, zeroWeight };
    } finally {
      end?.();
    }
  }

  /** Returns how many weight-0 destinations the virtual service has after this pass. */
  private async reconcileVirtualService(vs: DesiredVirtualService, key: string, trigger: Trigger): Promise<number> {
    let destinations;
    try {
      // A fresh read for every decision: the kernel, not a cache, says what exists right now.
      destinations = await this.o.ipvs.listDestinations(vs.key);
    } catch (err) {
      this.kernelError('read destinations', vs, err);
      return 0;
    }
    const decision = decide(vs, destinations, this.o.policy, this.clock(), this.zeroWeightSince.get(key) ?? new Map());
    if (decision.zeroWeightSince.size > 0) this.zeroWeightSince.set(key, decision.zeroWeightSince);
    else this.zeroWeightSince.delete(key);
    let remaining = decision.zeroWeightSince.size;
    for (const deletion of decision.deletions) {
      // The caches may have lost sync while we read the kernel: then nothing is deleted.
      if (!this.o.desired.isSynced()) break;
      if (await this.delete(deletion, trigger)) remaining--;
    }
    return remaining;
  }

  private async delete(d: Deletion, trigger: Trigger): Promise<boolean> {
    const fields = {
      service: `${d.service.namespace}/${d.service.name}`,
      virtualService: describeServiceKey(d.serviceKey),
      realServer: addressPortKey(d.destination.address, d.destination.port),
      weight: d.destination.weight,
      activeConnections: d.destination.activeConnections,
      inactiveConnections: d.destination.inactiveConnections,
      policy: d.mode,
      reason: d.reason,
      zeroWeightForSeconds: Math.round(d.zeroWeightForMs) / 1000,
      trigger: trigger.kind,
    };
    const labels = { reason: d.reason, policy: d.mode, dry_run: String(this.o.dryRun) };
    if (this.o.dryRun) {
      this.o.metrics.deletions.inc(labels);
      this.o.log.info('would delete real server (dry run)', { ...fields, dryRun: true });
      return false;
    }
    try {
      await this.o.ipvs.deleteDestination(d.serviceKey, d.destination);
    } catch (err) {
      // Somebody (kube-proxy, an operator) removed it first: the goal is met.
      if (!isErrno(err, 'ENOENT') && !isErrno(err, 'ESRCH')) {
        this.kernelError('delete real server', { service: d.service, key: d.serviceKey }, err);
        return false;
      }
    }
    this.o.metrics.deletions.inc(labels);
    if (trigger.kind === 'event') this.o.metrics.eventToDeletion.observe((this.clock() - trigger.firstEventAt) / 1000);
    this.o.log.info('deleted real server', fields);
    return true;
  }

  private kernelError(what: string, vs: Pick<DesiredVirtualService, 'service' | 'key'>, err: unknown): void {
    this.o.metrics.kernelErrors.inc({ errno: errnoLabel(err) });
    this.o.log.warn(`could not ${what}`, {
      service: `${vs.service.namespace}/${vs.service.name}`,
      virtualService: describeServiceKey(vs.key),
      error: err instanceof Error ? err.message : String(err),
    });
  }
}
