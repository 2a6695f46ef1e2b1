// The reconcile loop: turns Service/EndpointSlice events and periodic resyncs into kernel reads, decisions
// and deletions. Work goes through a keyed queue (workqueue.ts), one key per Service: an event is processed
// before any resync step, a Service is never reconciled twice at once, and a resync is a cursor over the
// Services that an event can overtake between any two of them.
import type { IpvsApi, ServiceKey } from '../ipvs/types.js';
import { isErrno } from '../netlink/errors.js';
import { decide, type Deletion, type ObservedDestination, type ZeroWeightSince } from '../reconcile/decide.js';
import { addressPortKey, destinationKeyString, serviceKeyString } from '../reconcile/keys.js';
import type { CacheCheck, DesiredVirtualService, Policy, ServiceRef } from '../reconcile/types.js';
import type { Logger } from './log.js';
import { FollowedSet } from './followed.js';
import { describeServiceKey, errnoLabel, message, refKey, refOf } from './names.js';
import { StaleEntries } from './stale-entries.js';
import type { Metrics } from './metrics.js';
import { ResyncPasses, type PassResult, type ResyncPass } from './resync-passes.js';
import { WorkQueue, type Priority } from './workqueue.js';

/** What the janitor needs from the Kubernetes side: plain data, whatever keeps it. */
export interface DesiredState {
  /** True only while every cache is complete: nothing is decided otherwise. */
  isSynced(): boolean;
  services(): ServiceRef[];
  /** The virtual services this node has for the Service; [] when the Service is unknown. */
  virtualServicesOf(ref: ServiceRef): DesiredVirtualService[];
  /** Asks the source (the API server) whether what virtualServicesOf() says about the Service is current. */
  confirm(ref: ServiceRef): Promise<CacheCheck>;
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
  /** How often followed real servers (draining, or awaiting kube-proxy's weight 0) are read again. */
  drainPollIntervalMs?: number;
  /** How long a weight > 0 real server whose endpoint left is followed before the resync is left to it. */
  awaitZeroLimitMs?: number;
  /** How soon a Service whose deletions waited for the cache to catch up is looked at again. */
  confirmRetryMs?: number;
}

/** Reasons that rest on what the cache says about an endpoint; the others hold whatever it says. */
const NEEDS_CURRENT_CACHE = new Set<Deletion['reason']>([
  'endpoint-gone',
  'endpoint-not-serving',
  'endpoint-drained',
  'kube-proxy-stale-entry',
]);

type Trigger = { kind: 'event'; firstEventAt: number } | { kind: 'resync' } | { kind: 'follow-up' };

export class Janitor {
  private readonly queue: WorkQueue;
  /** Per Service key: when the first event not yet acted on arrived, for the event-to-deletion histogram. */
  private readonly firstEventAt = new Map<string, number>();
  private readonly zeroWeightSince = new Map<string, ZeroWeightSince>();
  private readonly passes: ResyncPasses;
  private endPassTimer: (() => void) | undefined;
  private stopped = false;
  private readonly clock: () => number;
  private readonly followed: FollowedSet;
  private readonly staleEntries = new StaleEntries();
  /** Service keys whose next run is a follow-up: it reads only their followed virtual services. */
  private readonly followUpDue = new Set<string>();
  private followTimer: NodeJS.Timeout | undefined;
  /** Services to look at again once their cache has had time to catch up with the API server. */
  private readonly confirmRetries = new Map<string, NodeJS.Timeout>();

  constructor(private readonly o: JanitorOptions) {
    this.clock = o.clock ?? (() => performance.now());
    this.followed = new FollowedSet(o.awaitZeroLimitMs ?? 120_000);
    this.passes = new ResyncPasses({
      begin: (pass) => this.beginPass(pass),
      ended: (pass, result) => this.passEnded(pass, result),
      coalesced: () => this.o.metrics.resyncs.inc({ result: 'coalesced' }),
    });
    this.queue = new WorkQueue({
      process: (key, priority) => this.reconcileService(key, priority),
      // reconcileService catches what a Service can throw; this is the last line, so the daemon never stops.
      onError: (key, err) => this.reconcileError('service', refOf(key), undefined, err),
    });
  }

  /**
   * An event for the Service: goes before every resync step; bursts for one Service collapse into one run.
   * Events while the caches are not synced (a relist replays every object) are dropped: nothing would be
   * decided on them, and the resync the agent runs on `synced` covers every Service.
   */
  serviceChanged(ref: ServiceRef): void {
    if (this.stopped || !this.o.desired.isSynced()) return;
    const key = refKey(ref);
    if (!this.firstEventAt.has(key)) this.firstEventAt.set(key, this.clock());
    this.queue.add(key, 'high');
    this.o.metrics.queueDepth.set(this.queue.length);
  }

  /**
   * A full pass over every Service, behind any event. At most one pass runs: asking again while one runs
   * schedules exactly one more (a timer tick or a re-sync never piles up passes). Resolves when the pass
   * that covers this request has finished.
   */
  resync(): Promise<void> {
    return this.stopped ? Promise.resolve() : this.passes.request();
  }

  /** Resolves once no event waits and no resync runs. */
  async idle(): Promise<void> {
    for (;;) {
      await this.passes.ended();
      await this.queue.drained();
      if (this.passes.current === undefined && this.queue.length === 0) return;
    }
  }

  /** Takes no new work, drops what waits, and resolves when the Service in flight is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.followTimer);
    for (const timer of this.confirmRetries.values()) clearTimeout(timer);
    this.confirmRetries.clear();
    await this.queue.shutDown();
    this.passes.stop();
  }

  private async beginPass(pass: ResyncPass): Promise<void> {
    if (!this.o.desired.isSynced()) {
      this.o.log.debug('resync skipped: informers not synced');
      return this.passes.finish(pass, 'skipped');
    }
    // Only passes that run are timed: a skipped one would read as an instant resync.
    this.endPassTimer = this.o.metrics.reconcileDuration.startTimer({ trigger: 'resync' });
    try {
      // One dump of the kernel's virtual services: only those it lists get their real servers read.
      const listed = await this.o.ipvs.listServices();
      pass.kernel = new Set(listed.map((vs) => serviceKeyString(vs.key)));
    } catch (err) {
      this.o.metrics.kernelErrors.inc({ errno: errnoLabel(err) });
      this.o.log.warn('resync: could not list virtual services', { error: message(err) });
      return this.passes.finish(pass, 'failed');
    }
    if (this.passes.current !== pass) return; // stopped meanwhile
    for (const ref of this.o.desired.services()) pass.pending.add(refKey(ref));
    for (const key of pass.pending) this.queue.add(key, 'low');
    this.o.metrics.queueDepth.set(this.queue.length);
    if (pass.pending.size === 0) this.passes.finish(pass, 'complete');
  }

  private passEnded(pass: ResyncPass, result: PassResult): void {
    if (result === 'complete') {
      // Drain clocks of virtual services that no longer exist (or no Service owns) are forgotten.
      for (const key of this.zeroWeightSince.keys()) if (!pass.zeroWeight.has(key)) this.zeroWeightSince.delete(key);
      this.followed.retainOnly(pass.zeroWeight);
      this.staleEntries.retainOnly(pass.zeroWeight);
      this.followUpsChanged();
      let zeroWeight = 0;
      for (const n of pass.zeroWeight.values()) zeroWeight += n;
      this.o.metrics.zeroWeightDestinations.set(zeroWeight);
    }
    this.o.metrics.resyncs.inc({ result });
    this.endPassTimer?.();
    this.endPassTimer = undefined;
  }

  private async reconcileService(key: string, priority: Priority): Promise<void> {
    this.o.metrics.queueDepth.set(this.queue.length);
    const ref = refOf(key);
    const firstEventAt = this.firstEventAt.get(key);
    this.firstEventAt.delete(key);
    // The pass this run counts for: one that began before it did.
    const current = this.passes.current;
    const pass = current?.pending.has(key) ? current : undefined;
    // Events and resync steps read every virtual service of the Service, the followed ones included.
    const followUpOnly = this.followUpDue.delete(key) && firstEventAt === undefined && pass === undefined;
    const trigger: Trigger =
      priority === 'high' && firstEventAt !== undefined
        ? { kind: 'event', firstEventAt }
        : followUpOnly
          ? { kind: 'follow-up' }
          : { kind: 'resync' };
    const timed = trigger.kind === 'event';
    const end = timed ? this.o.metrics.reconcileDuration.startTimer({ trigger: 'event' }) : undefined;
    try {
      if (!this.o.desired.isSynced()) {
        if (pass) pass.incomplete = true;
        return;
      }
      let wanted: DesiredVirtualService[];
      try {
        wanted = this.o.desired.virtualServicesOf(ref);
      } catch (err) {
        this.reconcileError('service', ref, undefined, err);
        if (pass) pass.incomplete = true;
        return;
      }
      const followedHere = trigger.kind === 'follow-up' ? this.followed.virtualServicesOf(key) : undefined;
      // One question to the API server per run of a Service, and only when a deletion depends on the answer.
      let confirmation: Promise<CacheCheck> | undefined;
      const confirm = () => (confirmation ??= this.o.desired.confirm(ref));
      for (const vs of wanted) {
        try {
          const vsKey = serviceKeyString(vs.key);
          // A resync step reads only virtual services the pass's dump listed; an event reads each one, as
          // it may have been created since; a follow-up only those it follows.
          if (trigger.kind === 'resync' && pass?.kernel?.has(vsKey) === false) continue;
          if (followedHere !== undefined && !followedHere.delete(vsKey)) continue;
          const zeroWeight = await this.reconcileVirtualService(vs, vsKey, trigger, confirm);
          this.passes.current?.zeroWeight.set(vsKey, zeroWeight);
        } catch (err) {
          // One unreadable virtual service (e.g. a zoned node address) costs only itself.
          this.reconcileError('virtual-service', ref, vs.key, err);
          if (pass) pass.incomplete = true;
        }
      }
      // Followed virtual services the Service no longer has: never touched again on its account.
      for (const vsKey of followedHere ?? []) this.followed.forget(vsKey);
      this.followUpsChanged();
    } finally {
      end?.();
      if (pass) this.passes.keyDone(pass, key);
    }
  }

  /** Returns how many weight-0 destinations the virtual service has after this pass. */
  private async reconcileVirtualService(
    vs: DesiredVirtualService,
    key: string,
    trigger: Trigger,
    confirm: () => Promise<CacheCheck>,
  ): Promise<number> {
    const lean = trigger.kind === 'resync' && !(await this.worthReading(vs, key));
    if (lean) return this.zeroWeightSince.get(key)?.size ?? 0;
    let destinations;
    try {
      // A fresh read for every decision: the kernel, not a cache, says what exists right now.
      destinations = await this.o.ipvs.listDestinations(vs.key);
    } catch (err) {
      this.kernelError('read destinations', vs, err);
      return this.zeroWeightSince.get(key)?.size ?? 0;
    }
    const now = this.clock();
    const staleEntries = this.staleEntries.observe(key, vs.endpoints, destinations, now);
    const decision = decide(vs, destinations, this.o.policy, now, this.zeroWeightSince.get(key) ?? new Map(), staleEntries);
    if (decision.zeroWeightSince.size > 0) this.zeroWeightSince.set(key, decision.zeroWeightSince);
    else this.zeroWeightSince.delete(key);
    const expired = this.followed.update(key, refKey(vs.service), decision.followUps, this.clock());
    if (expired.length > 0) {
      this.o.log.debug('stopped following real servers still above weight 0; the resync will look again', {
        service: refKey(vs.service),
        virtualService: describeServiceKey(vs.key),
        realServers: expired,
      });
    }
    let remaining = decision.zeroWeightSince.size;
    const check = decision.deletions.some((d) => NEEDS_CURRENT_CACHE.has(d.reason)) ? await confirm() : undefined;
    // The confirmation is a round trip (over a second on a loaded node): connections may have become active and
    // somebody else may have removed a real server meanwhile, so what is deleted is decided on a read taken after it.
    let current = destinations;
    if (check !== undefined) {
      try {
        current = await this.o.ipvs.listDestinations(vs.key);
      } catch (err) {
        this.kernelError('read destinations', vs, err);
        return remaining;
      }
    }
    for (const deletion of decision.deletions) {
      if (check !== undefined && check.kind !== 'current' && NEEDS_CURRENT_CACHE.has(deletion.reason)) {
        this.putOff(vs, deletion, check);
        continue;
      }
      // The caches may have changed while we read the kernel (the address came back, the Service went,
      // sync was lost): the decision is taken again on what they say now, right before the request goes out.
      const same = current.filter((d) => destinationKeyString(d) === destinationKeyString(deletion.destination));
      if (same.length === 0) {
        remaining--;
        continue;
      }
      if (!this.stillToDelete(vs.service, key, same, decision.zeroWeightSince)) {
        this.o.log.info('kept real server: the Service or its connections changed since the decision', {
          service: refKey(vs.service),
          virtualService: describeServiceKey(vs.key),
          realServer: addressPortKey(deletion.destination.address, deletion.destination.port),
        });
        continue;
      }
      // Logged with what the fresh read saw.
      if (!(await this.delete({ ...deletion, destination: same[0]! }, trigger))) continue;
      remaining--;
      this.staleEntries.deleted(key, deletion.destination, this.clock());
    }
    return remaining;
  }

  /**
   * A resync step first reads weights alone (no counters, no statistics to decode): most virtual services have
   * no weight-0 real server and nothing to follow, and then that is all there is to do. decide() on those
   * weights, with idle counters, says whether there is more; connection counts only change what happens to
   * real servers it lists either way. Every deletion still comes from the full read that follows.
   */
  private async worthReading(vs: DesiredVirtualService, key: string): Promise<boolean> {
    const listWeights = this.o.ipvs.listDestinationWeights?.bind(this.o.ipvs);
    if (listWeights === undefined) return true;
    let weights;
    try {
      weights = await listWeights(vs.key);
    } catch (err) {
      this.kernelError('read destination weights', vs, err);
      return false;
    }
    const idle = weights.map((w) => ({ ...w, activeConnections: 0, inactiveConnections: 0 }));
    const probe = decide(vs, idle, this.o.policy, this.clock(), new Map(), this.staleEntries.suspects(key, this.clock()));
    if (probe.zeroWeightSince.size > 0 || probe.followUps.length > 0) return true;
    this.zeroWeightSince.delete(key);
    this.followed.update(key, refKey(vs.service), [], this.clock());
    return false;
  }

  /** decide() again for one destination, against the informer caches as they are at this moment. */
  private stillToDelete(
    ref: ServiceRef,
    key: string,
    destination: readonly ObservedDestination[],
    zeroWeightSince: ZeroWeightSince,
  ): boolean {
    if (!this.o.desired.isSynced()) return false;
    const now = this.o.desired.virtualServicesOf(ref).find((vs) => serviceKeyString(vs.key) === key);
    if (now === undefined) return false;
    const decision = decide(now, destination, now.policy ?? this.o.policy, this.clock(), zeroWeightSince, this.staleEntries.suspects(key, this.clock()));
    return decision.deletions.length > 0;
  }

  private async delete(d: Deletion, trigger: Trigger): Promise<boolean> {
    const fields = {
      service: refKey(d.service),
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
    this.o.metrics.drainTime.observe({ reason: d.reason }, d.zeroWeightForMs / 1000);
    if (trigger.kind === 'event') this.o.metrics.eventToDeletion.observe((this.clock() - trigger.firstEventAt) / 1000);
    this.o.log.info('deleted real server', fields);
    return true;
  }

  /**
   * A deletion that rests on the cache waits while the API server holds something the cache does not (yet):
   * logged, counted, and the Service is looked at again shortly; by then the watch has delivered it, or it has
   * been restarted (informers) and the cache is unsynced until it catches up.
   */
  private putOff(vs: DesiredVirtualService, deletion: Deletion, check: Exclude<CacheCheck, { kind: 'current' }>): void {
    this.o.metrics.deletionsPutOff.inc({ cause: check.kind });
    this.o.log.info('kept real server for now: the cache could not be confirmed against the API server', {
      service: refKey(vs.service),
      virtualService: describeServiceKey(vs.key),
      realServer: addressPortKey(deletion.destination.address, deletion.destination.port),
      weight: deletion.destination.weight,
      reason: deletion.reason,
      cache: check.kind,
      detail: check.kind === 'behind' ? check.detail : check.error,
    });
    const key = refKey(vs.service);
    if (this.confirmRetries.has(key) || this.stopped) return;
    const timer = setTimeout(() => {
      this.confirmRetries.delete(key);
      if (!this.stopped) this.queue.add(key, 'high');
    }, this.o.confirmRetryMs ?? 2000);
    timer.unref();
    this.confirmRetries.set(key, timer);
  }

  /** Runs the follow-up timer exactly while something is followed. */
  private followUpsChanged(): void {
    this.o.metrics.draining.set(this.followed.draining());
    if (this.followed.size === 0 || this.stopped) {
      clearInterval(this.followTimer);
      this.followTimer = undefined;
      return;
    }
    this.followTimer ??= setInterval(() => {
      // The queue holds each Service once: a slow read never piles follow-ups up.
      for (const key of this.followed.services()) {
        this.followUpDue.add(key);
        this.queue.add(key, 'high');
      }
    }, this.o.drainPollIntervalMs ?? 300);
    // The agent lives on its informers and HTTP server; this timer alone keeps no process alive.
    this.followTimer.unref();
  }

  private kernelError(what: string, vs: Pick<DesiredVirtualService, 'service' | 'key'>, err: unknown): void {
    this.o.metrics.kernelErrors.inc({ errno: errnoLabel(err) });
    this.o.log.warn(`could not ${what}`, {
      service: refKey(vs.service),
      virtualService: describeServiceKey(vs.key),
      error: message(err),
    });
  }

  private reconcileError(
    stage: 'service' | 'virtual-service',
    ref: ServiceRef,
    key: ServiceKey | undefined,
    err: unknown,
  ): void {
    this.o.metrics.reconcileErrors.inc({ stage });
    this.o.log.warn('could not reconcile: skipped until the next event or resync', {
      service: refKey(ref),
      ...(key === undefined ? {} : { virtualService: describeServiceKey(key) }),
      error: message(err),
    });
  }
}
