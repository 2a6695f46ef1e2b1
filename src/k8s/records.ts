// Slim, immutable records of the Services and EndpointSlices the agent reasons about. Informers cache these
// instead of API objects: a cluster-wide cache of whole objects (managedFields, annotations, targetRefs, topology)
// costs several times more memory than the few fields kube-proxy's IPVS layout depends on.
import { isIPv4, isIPv6 } from 'node:net';
import type {
  V1EndpointConditions,
  V1EndpointSlice,
  V1ObjectMeta,
  V1Service,
} from '@kubernetes/client-node';
import type { AddressFamily, Protocol } from '../ipvs/types.js';
import type { EndpointCondition } from '../reconcile/types.js';
import { policyAnnotations, type PolicyAnnotations } from './annotations.js';

/** The label that ties an EndpointSlice to its Service, for controller-made and hand-made slices alike. */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

export interface ServicePortRecord {
  /** '' for an unnamed port. */
  readonly name: string;
  readonly protocol: Protocol;
  readonly port: number;
  /** 0 when the Service has no node port for this port. */
  readonly nodePort: number;
}

export interface ServiceRecord {
  readonly namespace: string;
  readonly name: string;
  readonly resourceVersion: string;
  /** Empty for headless and ExternalName Services: kube-proxy programs nothing for them. */
  readonly clusterIPs: readonly string[];
  readonly externalIPs: readonly string[];
  /** status.loadBalancer.ingress IPs that land on the node as VIPs (ipMode "Proxy" ones never do). */
  readonly loadBalancerIPs: readonly string[];
  /** Ports with a protocol IPVS can serve. */
  readonly ports: readonly ServicePortRecord[];
  /** The ipvs-janitor/* policy annotations, when the Service has any. */
  readonly policyAnnotations?: PolicyAnnotations | undefined;
}

export interface SlicePortRecord {
  readonly name: string;
  readonly protocol: Protocol;
  readonly port: number;
}

export interface EndpointRecord {
  /**
   * The first address only: EndpointSlice controllers write exactly one, the API gives further ones no
   * meaning and kube-proxy ignores them.
   */
  readonly address: string;
  readonly condition: EndpointCondition;
}

export interface SliceRecord {
  readonly namespace: string;
  readonly name: string;
  readonly resourceVersion: string;
  /** From the kubernetes.io/service-name label; '' when the slice carries none. */
  readonly serviceName: string;
  /** undefined for FQDN slices, which kube-proxy ignores; they keep no ports or endpoints. */
  readonly family: AddressFamily | undefined;
  readonly ports: readonly SlicePortRecord[];
  readonly endpoints: readonly EndpointRecord[];
}

/** The fields every record shares: the cache key and the version a relist compares. */
class Cached {
  readonly namespace: string;
  readonly name: string;
  readonly resourceVersion: string;

  constructor(meta: V1ObjectMeta | undefined) {
    this.namespace = meta?.namespace ?? '';
    this.name = meta?.name ?? '';
    this.resourceVersion = meta?.resourceVersion ?? '';
  }
}

class CachedService extends Cached implements ServiceRecord {
  constructor(
    meta: V1ObjectMeta | undefined,
    readonly clusterIPs: readonly string[],
    readonly externalIPs: readonly string[],
    readonly loadBalancerIPs: readonly string[],
    readonly ports: readonly ServicePortRecord[],
    policyAnnotations: PolicyAnnotations | undefined,
  ) {
    super(meta);
    // An own property only when present: most Services carry no such annotation.
    if (policyAnnotations) this.policyAnnotations = policyAnnotations;
  }

  declare readonly policyAnnotations?: PolicyAnnotations;
}

class CachedSlice extends Cached implements SliceRecord {
  constructor(
    meta: V1ObjectMeta | undefined,
    readonly serviceName: string,
    readonly family: AddressFamily | undefined,
    readonly ports: readonly SlicePortRecord[],
    readonly endpoints: readonly EndpointRecord[],
  ) {
    super(meta);
  }
}

const PROTOCOLS: Readonly<Record<string, Protocol>> = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' };
const NONE: readonly never[] = Object.freeze([]);

/** The API defaults an absent protocol to TCP; anything IPVS cannot serve gives undefined. */
function protocolOf(protocol: string | undefined): Protocol | undefined {
  return PROTOCOLS[protocol ?? 'TCP'];
}

function ips(values: readonly (string | undefined)[] | undefined): readonly string[] {
  const valid = (values ?? []).filter((ip): ip is string => ip !== undefined && (isIPv4(ip) || isIPv6(ip)));
  return valid.length === 0 ? NONE : valid;
}

export function toServiceRecord(service: V1Service): ServiceRecord {
  const spec = service.spec ?? {};
  const ingress = service.status?.loadBalancer?.ingress ?? [];
  const ports: ServicePortRecord[] = [];
  for (const p of spec.ports ?? []) {
    const protocol = protocolOf(p.protocol);
    if (protocol) ports.push({ name: p.name ?? '', protocol, port: p.port, nodePort: p.nodePort ?? 0 });
  }
  return new CachedService(
    service.metadata,
    // Objects written before dual-stack carry only spec.clusterIP. A headless Service's "None" is no IP, and an
    // ExternalName Service has none.
    ips(spec.clusterIPs ?? [spec.clusterIP]),
    ips(spec.externalIPs),
    ips(ingress.filter((i) => i.ipMode !== 'Proxy').map((i) => i.ip)),
    ports.length === 0 ? NONE : ports,
    policyAnnotations(service.metadata?.annotations),
  );
}

/**
 * kube-proxy's reading of the three conditions: ready = Ready == nil || *Ready, serving = Serving == nil ||
 * *Serving, terminating = Terminating != nil && *Terminating. It uses ready endpoints, and serving+terminating
 * ones when a Service has no ready one, so an absent `serving` is serving. A serving endpoint that is neither
 * ready nor terminating is something no controller writes; it counts as still serving, the side on which nothing
 * gets deleted: the agent is never less conservative than kube-proxy.
 */
export function endpointCondition(conditions: V1EndpointConditions | undefined): EndpointCondition {
  if (conditions?.ready ?? true) return 'ready';
  return (conditions?.serving ?? true) ? 'terminating-serving' : 'not-serving';
}

const FAMILIES: Readonly<Record<string, AddressFamily>> = { IPv4: 'ipv4', IPv6: 'ipv6' };

export function toSliceRecord(slice: V1EndpointSlice): SliceRecord {
  const family = FAMILIES[slice.addressType];
  const ports: SlicePortRecord[] = [];
  const endpoints: EndpointRecord[] = [];
  if (family) {
    for (const p of slice.ports ?? []) {
      const protocol = protocolOf(p.protocol);
      // As kube-proxy: a port without a name or number matches no Service port.
      if (protocol && p.name !== undefined && p.port) ports.push({ name: p.name, protocol, port: p.port });
    }
    const isFamily = family === 'ipv4' ? isIPv4 : isIPv6;
    for (const e of slice.endpoints ?? []) {
      const address = e.addresses?.[0];
      if (address !== undefined && isFamily(address)) {
        endpoints.push({ address, condition: endpointCondition(e.conditions) });
      }
    }
  }
  return new CachedSlice(
    slice.metadata,
    slice.metadata?.labels?.[SERVICE_NAME_LABEL] ?? '',
    family,
    ports.length === 0 ? NONE : ports,
    endpoints.length === 0 ? NONE : endpoints,
  );
}
