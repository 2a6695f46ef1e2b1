// Which weight-0 real servers of one virtual service to delete. Pure: the caller reads the kernel,
// the EndpointSlices and the clock, and acts on the answer.
import type { Destination, ServiceKey } from '../ipvs/types.js';
import { addressPortKey, destinationKeyString } from './keys.js';
import type { DesiredEndpoint, DesiredVirtualService, EndpointCondition, Policy, ServiceRef } from './types.js';

export type DeletionReason =
  | 'endpoint-gone' // weight 0, its address:port is in no slice of the Service
  | 'endpoint-not-serving' // weight 0, listed but no listing is serving
  | 'endpoint-drained' // drain: weight 0, endpoint terminating, no active connection left
  | 'immediate' // weight 0 under the immediate policy, whatever the endpoint's state
  | 'max-drain-exceeded' // weight 0 for longer than maxDrainSeconds, even though an endpoint serves it
  // weight > 0, its endpoint gone or not serving, and kube-proxy holds a stale graceful-termination entry for it
  // (the caller's staleEntries), so it will never write weight 0: the policy is applied as if it had
  | 'kube-proxy-stale-entry';

/** What decide() looks at in a kernel destination: a full read, or a lean one with idle counters. */
export type ObservedDestination = Pick<
  Destination,
  'family' | 'address' | 'port' | 'weight' | 'activeConnections' | 'inactiveConnections'
>;

export interface Deletion {
  service: ServiceRef;
  serviceKey: ServiceKey;
  destination: ObservedDestination;
  mode: Policy['mode'];
  reason: DeletionReason;
  /** Time since the destination was first seen at weight 0, on the caller's clock. */
  zeroWeightForMs: number;
}

/**
 * For one virtual service: destinationKeyString() → the `now` at which that destination was first seen at
 * weight 0. The caller keeps one record per serviceKeyString() and hands back what decide() returned.
 */
export type ZeroWeightSince = ReadonlyMap<string, number>;

/**
 * A real server to read again soon, because the kernel sends no event for what would change the answer:
 * - draining: weight 0, kept only for its active connections (drain policy); goes when they end;
 * - awaiting-zero: weight > 0 although its endpoint left the slices or stopped serving (kube-proxy writes
 *   weight 0 seconds later); the policy lets it go (or drains it) once the weight is 0.
 */
export interface FollowUp {
  kind: 'draining' | 'awaiting-zero';
  /** destinationKeyString() of the real server. */
  key: string;
}

export interface Decision {
  deletions: Deletion[];
  zeroWeightSince: ZeroWeightSince;
  followUps: FollowUp[];
}

/** What the slices say of an address:port, the most serving listing winning. */
type Backing = 'ready' | 'terminating' | 'not-serving';

type Verdict = { action: 'delete'; reason: DeletionReason } | { action: 'keep' } | { action: 'drain' };

/**
 * @param desired a virtual service that a Kubernetes Service accounts for; never call this for any other
 * @param current the kernel's destinations of desired.key, read just before acting on the answer
 * @param defaultPolicy applies unless the Service has its own (desired.policy)
 * @param now milliseconds on a clock that does not jump (e.g. performance.now()), so drain times stay true
 * @param staleEntries addressPortKey() of the real servers kube-proxy may skip when their endpoint leaves, because
 *   of a stale entry on its graceful-termination list (src/agent/stale-entries.ts)
 * @throws TypeError when an address is not an IP: no deletion is better than one based on unreadable input
 */
export function decide(
  desired: DesiredVirtualService,
  current: readonly ObservedDestination[],
  defaultPolicy: Policy,
  now: number,
  zeroWeightSince: ZeroWeightSince,
  staleEntries: ReadonlySet<string> = new Set(),
): Decision {
  const policy = desired.policy ?? defaultPolicy;
  const backing = backingByAddressPort(desired.endpoints);
  // kube-proxy zeroes the real servers of gone and not-serving endpoints; one it skips is as good as zeroed.
  // (A terminating one it keeps at weight 1 when no ready endpoint is left, so that one waits for its weight 0.)
  const neverZeroed = (dest: ObservedDestination) => {
    const at = addressPortKey(dest.address, dest.port);
    return staleEntries.has(at) && (backing.get(at) ?? 'not-serving') === 'not-serving';
  };
  // A dump is not a snapshot and may repeat an entry: a copy above weight 0 protects every copy.
  const notZero = new Set(current.filter((dest) => dest.weight !== 0 && !neverZeroed(dest)).map(destinationKeyString));
  const nextSince = new Map<string, number>();
  const deletions: Deletion[] = [];
  const followUps: FollowUp[] = [];
  const followed = new Set<string>();

  for (const dest of current) {
    const key = destinationKeyString(dest);
    const backs = backing.get(addressPortKey(dest.address, dest.port));
    if (notZero.has(key)) {
      // What the policy would do at weight 0, for a real server whose endpoint is no longer ready.
      const atZero = verdict(policy, backs, 0, dest.activeConnections);
      if (backs !== 'ready' && atZero.action !== 'keep' && !followed.has(key)) {
        followed.add(key);
        followUps.push({ kind: 'awaiting-zero', key });
      }
      continue;
    }
    if (nextSince.has(key)) continue;
    const since = zeroWeightSince.get(key) ?? now;
    nextSince.set(key, since);
    const zeroWeightForMs = now - since;
    const v = verdict(policy, backs, zeroWeightForMs, dest.activeConnections);
    if (v.action === 'drain') followUps.push({ kind: 'draining', key });
    if (v.action !== 'delete') continue;
    const reason = dest.weight === 0 ? v.reason : 'kube-proxy-stale-entry';
    deletions.push({
      service: desired.service,
      serviceKey: desired.key,
      destination: {
        family: dest.family,
        address: dest.address,
        port: dest.port,
        weight: dest.weight,
        activeConnections: dest.activeConnections,
        inactiveConnections: dest.inactiveConnections,
      },
      mode: policy.mode,
      reason,
      zeroWeightForMs,
    });
  }
  return { deletions, zeroWeightSince: nextSince, followUps };
}

const RANK: Readonly<Record<Backing, number>> = { 'not-serving': 0, terminating: 1, ready: 2 };
const BACKING: Readonly<Record<EndpointCondition, Backing>> = {
  ready: 'ready',
  'terminating-serving': 'terminating',
  'not-serving': 'not-serving',
};

function backingByAddressPort(endpoints: readonly DesiredEndpoint[]): Map<string, Backing> {
  const backing = new Map<string, Backing>();
  for (const endpoint of endpoints) {
    const key = addressPortKey(endpoint.address, endpoint.port);
    // One serving listing makes the address live, whatever other slices (or a reused pod IP's old entry) say.
    // 'ready' counts as serving: kube-proxy may not yet have raised the weight of a pod that came back.
    const says = BACKING[endpoint.condition];
    const known = backing.get(key);
    if (known === undefined || RANK[says] > RANK[known]) backing.set(key, says);
  }
  return backing;
}

function verdict(policy: Policy, backing: Backing | undefined, zeroWeightForMs: number, active: number): Verdict {
  if (policy.mode === 'immediate') return { action: 'delete', reason: 'immediate' };
  const overdue = policy.maxDrainSeconds !== undefined && zeroWeightForMs > policy.maxDrainSeconds * 1000;
  const untilOverdue: Verdict = overdue ? { action: 'delete', reason: 'max-drain-exceeded' } : { action: 'keep' };
  if (backing === 'ready') return untilOverdue;
  if (policy.mode === 'graceful' && backing === 'terminating') return untilOverdue;
  // drain: only active connections hold a real server whose endpoint is on its way out; a finished TCP
  // connection (and every UDP entry) is inactive, and under port reuse those never reach 0. An endpoint gone from
  // every slice holds nothing: the EndpointSlice controller removes it once the pod's containers have stopped, and
  // the demo saw ActiveConn above 0 on the dead pod for as long as clients kept reusing its tuples.
  if (policy.mode === 'drain' && active > 0 && backing !== undefined) return overdue ? untilOverdue : { action: 'drain' };
  const reason: DeletionReason =
    backing === undefined ? 'endpoint-gone' : backing === 'not-serving' ? 'endpoint-not-serving' : 'endpoint-drained';
  return { action: 'delete', reason };
}
