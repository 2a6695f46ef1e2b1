// Which IPVS virtual services kube-proxy lays out for a Service on this node, and which endpoints stand behind
// each: the same rules as kube-proxy's service and EndpointSlice change trackers and its IPVS proxier.
import type { AddressFamily } from '../ipvs/types.js';
import type { DesiredEndpoint, DesiredVirtualService, EndpointCondition, Policy } from '../reconcile/types.js';
import { familyOf } from './nodeport-addresses.js';
import type { ServicePortRecord, ServiceRecord, SliceRecord } from './records.js';

const RANK: Readonly<Record<EndpointCondition, number>> = { 'not-serving': 0, 'terminating-serving': 1, ready: 2 };

/**
 * The endpoints behind one Service port in one family, merged across slices. A slice port matches by name and
 * protocol, as kube-proxy matches it; its number is the endpoint's (target) port. An endpoint listed twice (it
 * moves between slices, or an address is reused) keeps its most serving condition: deletion waits for agreement.
 */
function endpointsFor(
  port: ServicePortRecord,
  family: AddressFamily,
  slices: readonly SliceRecord[],
): DesiredEndpoint[] {
  const byAddressPort = new Map<string, DesiredEndpoint>();
  for (const slice of slices) {
    if (slice.family !== family) continue;
    for (const slicePort of slice.ports) {
      if (slicePort.name !== port.name || slicePort.protocol !== port.protocol) continue;
      for (const { address, condition } of slice.endpoints) {
        const key = `${address} ${slicePort.port}`;
        const known = byAddressPort.get(key);
        if (!known || RANK[condition] > RANK[known.condition]) {
          byAddressPort.set(key, { address, port: slicePort.port, condition });
        }
      }
    }
  }
  return [...byAddressPort.values()];
}

/**
 * The virtual services kube-proxy's IPVS proxier creates for `service`: per port and per IP family the Service
 * has a cluster IP in, one on the cluster IP, on each external IP and load-balancer ingress IP of that family,
 * and, when the port has a node port, on each node address of that family. `slices` are the Service's slices
 * (label kubernetes.io/service-name), whichever controller wrote them. The virtual services of one port and
 * family share one endpoint array. `nodeAddresses` are those --nodeport-addresses selects (nodeport-addresses.ts);
 * `policy`, the Service's own (its annotations), when it has one.
 */
export function desiredVirtualServices(
  service: ServiceRecord,
  slices: readonly SliceRecord[],
  nodeAddresses: readonly string[],
  policy?: Policy,
): DesiredVirtualService[] {
  const ref = { namespace: service.namespace, name: service.name };
  const result: DesiredVirtualService[] = [];
  const seen = new Set<string>();
  for (const clusterIP of service.clusterIPs) {
    const family = familyOf(clusterIP);
    if (!family) continue;
    const ofFamily = (ip: string) => familyOf(ip) === family;
    const frontends = [clusterIP, ...service.externalIPs.filter(ofFamily), ...service.loadBalancerIPs.filter(ofFamily)];
    const nodeIPs = nodeAddresses.filter(ofFamily);
    for (const port of service.ports) {
      const endpoints = endpointsFor(port, family, slices);
      // The same address can come twice (an external IP that is also a node address): IPVS holds it once.
      const add = (address: string, portNumber: number) => {
        const id = `${port.protocol} ${address} ${portNumber}`;
        if (seen.has(id)) return;
        seen.add(id);
        result.push({
          service: ref,
          key: { kind: 'address', family, protocol: port.protocol, address, port: portNumber },
          endpoints,
          ...(policy ? { policy } : {}),
        });
      };
      for (const address of frontends) add(address, port.port);
      if (port.nodePort !== 0) for (const address of nodeIPs) add(address, port.nodePort);
    }
  }
  return result;
}
