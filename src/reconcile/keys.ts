// Stable text identities for IPVS objects, so that the same kernel object spelled two ways
// ("fd00::1", "FD00:0::1") lands on one map entry in the agent, its drain tracking and the fake.
import { canonicalAddress } from '../ipvs/address.js';
import type { DestinationKey, ServiceKey } from '../ipvs/types.js';

/** "10.0.0.1:80", "[fd00::1]:80". */
export function addressPortKey(address: string, port: number): string {
  const canonical = canonicalAddress(address);
  return canonical.includes(':') ? `[${canonical}]:${port}` : `${canonical}:${port}`;
}

/** "ipv4/tcp/10.96.0.1:80", "ipv6/udp/[fd00:96::a]:53", "ipv4/fwmark/7". */
export function serviceKeyString(key: ServiceKey): string {
  return key.kind === 'fwmark'
    ? `${key.family}/fwmark/${key.fwmark}`
    : `${key.family}/${key.protocol}/${addressPortKey(key.address, key.port)}`;
}

/** "ipv4/10.240.0.5:8080", "ipv6/[fd00:240::5]:8080". Unique within one virtual service. */
export function destinationKeyString(key: DestinationKey): string {
  return `${key.family}/${addressPortKey(key.address, key.port)}`;
}
