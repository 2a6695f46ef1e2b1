// Plain typed values for the IPVS table: what callers reason about, never wire structs.

export type AddressFamily = 'ipv4' | 'ipv6';
export type Protocol = 'tcp' | 'udp' | 'sctp';
export type ForwardingMethod = 'masq' | 'localnode' | 'tunnel' | 'route' | 'bypass';

/** A virtual service is found either by its address tuple or by a firewall mark, never both. */
export type ServiceKey =
  | { kind: 'address'; family: AddressFamily; protocol: Protocol; address: string; port: number }
  | { kind: 'fwmark'; family: AddressFamily; fwmark: number };

export interface ServiceFlags {
  persistent: boolean;
  hashed: boolean;
  onePacket: boolean;
  sched1: boolean;
  sched2: boolean;
  sched3: boolean;
}

export interface Stats {
  connections: bigint;
  packetsIn: bigint;
  packetsOut: bigint;
  bytesIn: bigint;
  bytesOut: bigint;
  cps: bigint;
  ppsIn: bigint;
  ppsOut: bigint;
  bpsIn: bigint;
  bpsOut: bigint;
}

/** What a caller supplies to create or update a virtual service. */
export interface ServiceSpec {
  key: ServiceKey;
  scheduler: string;
  flags?: Partial<ServiceFlags>;
  /** Persistence timeout in seconds; only meaningful with flags.persistent. */
  timeoutSeconds?: number;
  /** IPv4: dotted mask ("255.255.255.255"); IPv6: prefix length as text ("128"). */
  netmask?: string;
  persistenceEngine?: string;
}

/** A virtual service as the kernel reports it. */
export interface VirtualService {
  key: ServiceKey;
  scheduler: string;
  flags: ServiceFlags;
  timeoutSeconds: number;
  netmask: string;
  persistenceEngine?: string;
  stats: Stats;
}

export interface DestinationKey {
  family: AddressFamily;
  address: string;
  port: number;
}

export interface DestinationSpec extends DestinationKey {
  forwarding: ForwardingMethod;
  weight: number;
  upperThreshold?: number;
  lowerThreshold?: number;
}

/** A real server as the kernel reports it. */
export interface Destination extends DestinationKey {
  forwarding: ForwardingMethod;
  weight: number;
  upperThreshold: number;
  lowerThreshold: number;
  activeConnections: number;
  inactiveConnections: number;
  persistentConnections: number;
  stats: Stats;
}

/** A real server as candidate discovery sees it: which one, and its weight. */
export interface DestinationWeight extends DestinationKey {
  weight: number;
}

export interface IpvsInfo {
  /** e.g. "1.2.1" */
  version: string;
  connectionTableSize: number;
}

export interface IpvsTimeouts {
  tcpSeconds: number;
  tcpFinSeconds: number;
  udpSeconds: number;
}

/**
 * The IPVS operations the agent, its tests and its demo need. Implemented by the kernel client
 * (src/ipvs/client.ts) and by an in-memory fake with the same errno semantics (test/support/fake-ipvs.ts).
 * Failures reject with a NetlinkError (src/netlink/errors.ts) carrying the kernel's errno name.
 */
export interface IpvsApi {
  info(): Promise<IpvsInfo>;
  timeouts(): Promise<IpvsTimeouts>;
  listServices(): Promise<VirtualService[]>;
  /** Rejects with ESRCH when the service does not exist. */
  getService(key: ServiceKey): Promise<VirtualService>;
  /** A missing service gives an empty list, as the kernel's dump does. */
  listDestinations(key: ServiceKey): Promise<Destination[]>;
  /**
   * The same dump as listDestinations, decoding only address, port and weight (no counters, no statistics):
   * for finding weight-0 real servers across many services. Optional, so implementations may leave it out;
   * callers fall back to listDestinations.
   */
  listDestinationWeights?(key: ServiceKey): Promise<DestinationWeight[]>;
  createService(spec: ServiceSpec): Promise<void>;
  updateService(spec: ServiceSpec): Promise<void>;
  deleteService(key: ServiceKey): Promise<void>;
  createDestination(service: ServiceKey, dest: DestinationSpec): Promise<void>;
  updateDestination(service: ServiceKey, dest: DestinationSpec): Promise<void>;
  /** Rejects with ENOENT when the destination does not exist, ESRCH when the service does not. */
  deleteDestination(service: ServiceKey, dest: DestinationKey): Promise<void>;
  close(): void;
}
