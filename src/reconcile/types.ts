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
}

export type Policy =
  | { mode: 'graceful'; maxDrainSeconds?: number }
  | { mode: 'immediate'; maxDrainSeconds?: number };
