// An in-memory IPVS table that answers as ip_vs_ctl.c does, so the agent can be tested without a kernel.
// ipvs-contract.ts holds it to the same assertions as the real client.
import { isIP } from 'node:net';
import type {
  AddressFamily,
  Destination,
  DestinationKey,
  DestinationSpec,
  DestinationWeight,
  IpvsApi,
  IpvsInfo,
  IpvsTimeouts,
  ServiceFlags,
  ServiceKey,
  ServiceSpec,
  Stats,
  VirtualService,
} from '../../src/ipvs/types.js';
import { errnoCode, NetlinkError } from '../../src/netlink/errors.js';
import { canonicalAddress } from '../../src/ipvs/address.js';
import { destinationKeyString, serviceKeyString } from '../../src/reconcile/keys.js';

export type IpvsOperation = Exclude<keyof IpvsApi, 'close'>;

export type OperationOutcome = { kind: 'ok' } | { kind: 'error'; errno: string };

export interface OperationRecord {
  operation: IpvsOperation;
  service?: ServiceKey;
  destination?: DestinationKey;
  outcome: OperationOutcome;
}

// The schedulers a stock kernel builds as modules; any other name fails the module request.
const SCHEDULERS = new Set(['rr', 'wrr', 'lc', 'wlc', 'lblc', 'lblcr', 'dh', 'sh', 'sed', 'nq', 'fo', 'ovf', 'mh']);

interface StoredService extends Omit<VirtualService, 'stats'> {
  destinations: Map<string, Destination>;
}

export function zeroStats(): Stats {
  return {
    connections: 0n,
    packetsIn: 0n,
    packetsOut: 0n,
    bytesIn: 0n,
    bytesOut: 0n,
    cps: 0n,
    ppsIn: 0n,
    ppsOut: 0n,
    bpsIn: 0n,
    bpsOut: 0n,
  };
}

function fail(errno: string, operation: IpvsOperation): NetlinkError {
  return new NetlinkError(errnoCode(errno), operation);
}

function familyOf(address: string): AddressFamily | undefined {
  switch (isIP(address)) {
    case 4:
      return 'ipv4';
    case 6:
      return 'ipv6';
    default:
      return undefined;
  }
}

function canonicalServiceKey(key: ServiceKey): ServiceKey {
  return key.kind === 'fwmark' ? { ...key } : { ...key, address: canonicalAddress(key.address) };
}

export class FakeIpvs implements IpvsApi {
  private readonly services = new Map<string, StoredService>();
  private readonly log: OperationRecord[] = [];
  private readonly failures = new Map<IpvsOperation, string[]>();
  private readonly interceptors = new Map<IpvsOperation, Array<() => void | Promise<void>>>();
  private readonly latencyMs = new Map<IpvsOperation, number>();
  private closed = false;

  /** Every call since construction or reset(), in order, with what it answered. */
  get operations(): readonly OperationRecord[] {
    return this.log;
  }

  count(operation: IpvsOperation, outcome: OperationOutcome['kind'] | 'any' = 'any'): number {
    return this.log.filter((r) => r.operation === operation && (outcome === 'any' || r.outcome.kind === outcome))
      .length;
  }

  /** Empties the table, the log and pending failures, interceptors and latencies. */
  reset(): void {
    this.services.clear();
    this.log.length = 0;
    this.failures.clear();
    this.interceptors.clear();
    this.latencyMs.clear();
  }

  /** The next call of `operation` rejects with `errno` without touching the table (queued, one per call). */
  failNext(operation: IpvsOperation, errno: string): void {
    errnoCode(errno); // a misspelt name fails here, not at the call it was meant for
    this.failures.set(operation, [...(this.failures.get(operation) ?? []), errno]);
  }

  /**
   * Runs `action` once, right before the next call of `operation` is applied: how a test makes
   * kube-proxy change the table between the agent's read and its write.
   */
  beforeNext(operation: IpvsOperation, action: () => void | Promise<void>): void {
    this.interceptors.set(operation, [...(this.interceptors.get(operation) ?? []), action]);
  }

  /**
   * Every later call of these operations waits `ms` on a real timer before it is applied, as a kernel
   * round trip does: how a test gives a resync of many Services a duration for events to arrive in.
   */
  setLatency(operations: readonly IpvsOperation[], ms: number): void {
    for (const operation of operations) this.latencyMs.set(operation, ms);
  }

  /** The kernel counts connections from traffic; tests set them. Throws if the destination does not exist. */
  setConnections(service: ServiceKey, dest: DestinationKey, counts: { active: number; inactive: number }): void {
    const stored = this.services.get(serviceKeyString(service))?.destinations.get(destinationKeyString(dest));
    if (stored === undefined) {
      throw new Error(`setConnections: no destination ${destinationKeyString(dest)} in ${serviceKeyString(service)}`);
    }
    stored.activeConnections = counts.active;
    stored.inactiveConnections = counts.inactive;
  }

  async info(): Promise<IpvsInfo> {
    return this.run('info', {}, () => ({ version: '1.2.1', connectionTableSize: 4096 }));
  }

  async timeouts(): Promise<IpvsTimeouts> {
    return this.run('timeouts', {}, () => ({ tcpSeconds: 900, tcpFinSeconds: 120, udpSeconds: 300 }));
  }

  async listServices(): Promise<VirtualService[]> {
    return this.run('listServices', {}, () => [...this.services.values()].map(reportService));
  }

  async getService(key: ServiceKey): Promise<VirtualService> {
    return this.run('getService', { service: key }, () => reportService(this.existing('getService', key)));
  }

  async listDestinations(key: ServiceKey): Promise<Destination[]> {
    return this.run('listDestinations', { service: key }, () => this.destinationsOf(key).map(reportDestination));
  }

  async listDestinationWeights(key: ServiceKey): Promise<DestinationWeight[]> {
    return this.run('listDestinationWeights', { service: key }, () =>
      this.destinationsOf(key).map(({ family, address, port, weight }) => ({ family, address, port, weight })),
    );
  }

  async createService(spec: ServiceSpec): Promise<void> {
    return this.run('createService', { service: spec.key }, () => {
      const id = serviceKeyString(spec.key);
      if (this.services.has(id)) throw fail('EEXIST', 'createService');
      this.services.set(id, {
        ...this.validServiceFields('createService', spec, undefined),
        key: canonicalServiceKey(spec.key),
        destinations: new Map(),
      });
    });
  }

  async updateService(spec: ServiceSpec): Promise<void> {
    return this.run('updateService', { service: spec.key }, () => {
      const stored = this.existing('updateService', spec.key);
      Object.assign(stored, this.validServiceFields('updateService', spec, stored.flags));
    });
  }

  async deleteService(key: ServiceKey): Promise<void> {
    return this.run('deleteService', { service: key }, () => {
      this.existing('deleteService', key);
      this.services.delete(serviceKeyString(key));
    });
  }

  async createDestination(service: ServiceKey, dest: DestinationSpec): Promise<void> {
    return this.run('createDestination', { service, destination: dest }, () => {
      const stored = this.existing('createDestination', service);
      const valid = this.validDestinationFields('createDestination', stored, dest);
      const id = destinationKeyString(dest);
      if (stored.destinations.has(id)) throw fail('EEXIST', 'createDestination');
      stored.destinations.set(id, {
        family: dest.family,
        address: canonicalAddress(dest.address),
        port: dest.port,
        ...valid,
        activeConnections: 0,
        inactiveConnections: 0,
        persistentConnections: 0,
        stats: zeroStats(),
      });
    });
  }

  async updateDestination(service: ServiceKey, dest: DestinationSpec): Promise<void> {
    return this.run('updateDestination', { service, destination: dest }, () => {
      const stored = this.existing('updateDestination', service);
      const valid = this.validDestinationFields('updateDestination', stored, dest);
      const existing = stored.destinations.get(destinationKeyString(dest));
      if (existing === undefined) throw fail('ENOENT', 'updateDestination');
      Object.assign(existing, valid);
    });
  }

  async deleteDestination(service: ServiceKey, dest: DestinationKey): Promise<void> {
    return this.run('deleteDestination', { service, destination: dest }, () => {
      const stored = this.existing('deleteDestination', service);
      if (!stored.destinations.delete(destinationKeyString(dest))) throw fail('ENOENT', 'deleteDestination');
    });
  }

  close(): void {
    this.closed = true;
  }

  private async run<T>(
    operation: IpvsOperation,
    subject: { service?: ServiceKey; destination?: DestinationKey },
    apply: () => T,
  ): Promise<T> {
    if (this.closed) throw new Error(`FakeIpvs: ${operation} after close()`);
    const record = (outcome: OperationOutcome): void => {
      this.log.push({ operation, ...subject, outcome });
    };
    const injected = this.failures.get(operation)?.shift();
    if (injected !== undefined) {
      record({ kind: 'error', errno: injected });
      throw fail(injected, operation);
    }
    const latency = this.latencyMs.get(operation);
    if (latency !== undefined) await new Promise((resolve) => setTimeout(resolve, latency));
    await this.interceptors.get(operation)?.shift()?.();
    try {
      const result = apply();
      record({ kind: 'ok' });
      return result;
    } catch (err) {
      if (err instanceof NetlinkError) record({ kind: 'error', errno: err.errno });
      throw err;
    }
  }

  private destinationsOf(key: ServiceKey): Destination[] {
    return [...(this.services.get(serviceKeyString(key))?.destinations.values() ?? [])];
  }

  private existing(operation: IpvsOperation, key: ServiceKey): StoredService {
    const stored = this.services.get(serviceKeyString(key));
    if (stored === undefined) throw fail('ESRCH', operation);
    return stored;
  }

  // Checked in ip_vs_add_service / ip_vs_edit_service order: scheduler, then IPv6 prefix length.
  private validServiceFields(
    operation: IpvsOperation,
    spec: ServiceSpec,
    previous: ServiceFlags | undefined,
  ): Omit<StoredService, 'key' | 'destinations'> {
    if (spec.key.kind === 'address' && familyOf(spec.key.address) !== spec.key.family) {
      throw fail('EINVAL', operation);
    }
    if (!SCHEDULERS.has(spec.scheduler)) throw fail('ENOENT', operation);
    const netmask = spec.netmask ?? (spec.key.family === 'ipv4' ? '255.255.255.255' : '128');
    if (spec.key.family === 'ipv6' && !/^(?:[1-9]|[1-9]\d|1[01]\d|12[0-8])$/.test(netmask)) {
      throw fail('EINVAL', operation);
    }
    // The flags mask lets a SET leave unspecified flags as they were.
    const flag = (name: keyof ServiceFlags): boolean => spec.flags?.[name] ?? previous?.[name] ?? false;
    return {
      scheduler: spec.scheduler,
      flags: {
        persistent: flag('persistent'),
        // ip_vs_add_service hashes the service, ip_vs_edit_service re-sets the bit: every report has it.
        hashed: true,
        onePacket: flag('onePacket'),
        sched1: flag('sched1'),
        sched2: flag('sched2'),
        sched3: flag('sched3'),
      },
      timeoutSeconds: spec.timeoutSeconds ?? 0,
      netmask,
      persistenceEngine: spec.persistenceEngine,
    };
  }

  // ip_vs_genl_set_cmd checks the family mix before ip_vs_add_dest / ip_vs_edit_dest check ranges.
  private validDestinationFields(
    operation: IpvsOperation,
    service: StoredService,
    dest: DestinationSpec,
  ): Pick<Destination, 'forwarding' | 'weight' | 'upperThreshold' | 'lowerThreshold'> {
    if (familyOf(dest.address) !== dest.family) throw fail('EINVAL', operation);
    if (dest.family !== service.key.family && dest.forwarding !== 'tunnel') throw fail('EINVAL', operation);
    const upperThreshold = dest.upperThreshold ?? 0;
    const lowerThreshold = dest.lowerThreshold ?? 0;
    if (dest.weight < 0 || lowerThreshold > upperThreshold) throw fail('ERANGE', operation);
    return { forwarding: dest.forwarding, weight: dest.weight, upperThreshold, lowerThreshold };
  }
}

function reportService(stored: StoredService): VirtualService {
  return {
    key: { ...stored.key },
    scheduler: stored.scheduler,
    flags: { ...stored.flags },
    timeoutSeconds: stored.timeoutSeconds,
    netmask: stored.netmask,
    ...(stored.persistenceEngine === undefined ? {} : { persistenceEngine: stored.persistenceEngine }),
    stats: zeroStats(),
  };
}

function reportDestination(stored: Destination): Destination {
  return { ...stored, stats: { ...stored.stats } };
}
