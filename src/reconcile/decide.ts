// Which weight-0 real servers of one virtual service to delete. Pure: the caller reads the kernel,
// the EndpointSlices and the clock, and acts on the answer.
import type { Destination, ServiceKey } from '../ipvs/types.js';
import { addressPortKey, destinationKeyString } from './keys.js';
import type { DesiredEndpoint, DesiredVirtualService, Policy, ServiceRef } from './types.js';

export type DeletionReason =
  | 'endpoint-gone' // weight 0, its address:port is in no slice of the Service
  | 'endpoint-not-serving' // weight 0, listed but no listing is serving
  | 'immediate' // weight 0 under the immediate policy, whatever the endpoint's state
  | 'max-drain-exceeded'; // weight 0 for longer than maxDrainSeconds, even though an endpoint serves it

export type DeletedDestination = Pick<
  Destination,
  'family' | 'address' | 'port' | 'weight' | 'activeConnections' | 'inactiveConnections'
>;

export interface Deletion {
  service: ServiceRef;
  serviceKey: ServiceKey;
  destination: DeletedDestination;
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

export interface Decision {
  deletions: Deletion[];
  zeroWeightSince: ZeroWeightSince;
}

type Backing = 'serving' | 'not-serving';

/**
 * @param desired a virtual service that a Kubernetes Service accounts for; never call this for any other
 * @param current the kernel's destinations of desired.key, read just before acting on the answer
 * @param now milliseconds on a clock that does not jump (e.g. performance.now()), so drain times stay true
 * @throws TypeError when an address is not an IP: no deletion is better than one based on unreadable input
 */
export function decide(
  desired: DesiredVirtualService,
  current: readonly Destination[],
  policy: Policy,
  now: number,
  zeroWeightSince: ZeroWeightSince,
): Decision {
  const backing = backingByAddressPort(desired.endpoints);
  // A dump is not a snapshot and may repeat an entry: a copy above weight 0 protects every copy.
  const notZero = new Set(current.filter((dest) => dest.weight !== 0).map(destinationKeyString));
  const nextSince = new Map<string, number>();
  const deletions: Deletion[] = [];

  for (const dest of current) {
    const key = destinationKeyString(dest);
    if (notZero.has(key) || nextSince.has(key)) continue;
    const since = zeroWeightSince.get(key) ?? now;
    nextSince.set(key, since);
    const zeroWeightForMs = now - since;
    const reason = reasonToDelete(policy, backing.get(addressPortKey(dest.address, dest.port)), zeroWeightForMs);
    if (reason === undefined) continue;
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
  return { deletions, zeroWeightSince: nextSince };
}

function backingByAddressPort(endpoints: readonly DesiredEndpoint[]): Map<string, Backing> {
  const backing = new Map<string, Backing>();
  for (const endpoint of endpoints) {
    const key = addressPortKey(endpoint.address, endpoint.port);
    // One serving listing makes the address live, whatever other slices (or a reused pod IP's old entry) say.
    // 'ready' counts as serving: kube-proxy may not yet have raised the weight of a pod that came back.
    if (endpoint.condition !== 'not-serving') backing.set(key, 'serving');
    else if (!backing.has(key)) backing.set(key, 'not-serving');
  }
  return backing;
}

function reasonToDelete(
  policy: Policy,
  backing: Backing | undefined,
  zeroWeightForMs: number,
): DeletionReason | undefined {
  if (policy.mode === 'immediate') return 'immediate';
  if (backing === undefined) return 'endpoint-gone';
  if (backing === 'not-serving') return 'endpoint-not-serving';
  if (policy.maxDrainSeconds !== undefined && zeroWeightForMs > policy.maxDrainSeconds * 1000) {
    return 'max-drain-exceeded';
  }
  return undefined;
}
