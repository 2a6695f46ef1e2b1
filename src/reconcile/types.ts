// The reconciler's inputs: plain data, independent of Kubernetes client objects and of netlink.
import type { ServiceKey } from '../ipvs/types.js';

export interface ServiceRef {
  namespace: string;
  name: string;
}

/**
 * An endpoint's lifecycle as EndpointSlice conditions describe it, collapsed to what decides deletion.
 * `serving` absent in the API means "same as ready".
 */
export type EndpointCondition =
  | 'ready' // ready (and therefore serving)
  | 'terminating-serving' // terminating, still serving in-flight requests
  | 'not-serving'; // listed, but neither ready nor serving

export interface DesiredEndpoint {
  address: string;
  port: number;
  condition: EndpointCondition;
}

/** One IPVS virtual service that a Kubernetes Service accounts for on this node, with the endpoints behind it. */
export interface DesiredVirtualService {
  service: ServiceRef;
  key: ServiceKey;
  /** Endpoints of the matching address family and port name, merged across all of the Service's slices. */
  endpoints: DesiredEndpoint[];
  /** The Service's own policy (its ipvs-janitor/* annotations); absent: the agent's default. */
  policy?: Policy;
}

/**
 * When a weight-0 real server goes (weights above 0 are never touched, but for one kube-proxy will never zero:
 * decide()'s staleEntries):
 * - graceful: its endpoint left the slices or is not serving; a serving one stays (terminating pods finish).
 * - drain: its endpoint is terminating, gone or not serving AND it has no active connection left; inactive
 *   entries (finished TCP connections in TIME_WAIT/FIN_WAIT, every UDP entry) do not hold it. A ready endpoint
 *   stays, as under graceful.
 * - immediate: always.
 * maxDrainSeconds bounds how long any weight-0 real server stays, served or draining.
 */
/**
 * Whether the cache a decision was taken from still matches what the API server holds, asked of the server right
 * before a deletion that depends on an endpoint's state: a watch can hang without a sign, and its cache then looks
 * complete while it is not.
 */
export type CacheCheck =
  | { kind: 'current' }
  | { kind: 'behind'; detail: string }
  | { kind: 'unavailable'; error: string };

export type Policy =
  | { mode: 'graceful'; maxDrainSeconds?: number }
  | { mode: 'drain'; maxDrainSeconds?: number }
  | { mode: 'immediate'; maxDrainSeconds?: number };
