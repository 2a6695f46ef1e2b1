// The janitor on the IPVS fake, with the Kubernetes side reduced to plain data: one Service `shop/web` on `vip`,
// an unowned virtual service beside it, and four real servers on each.
import { Janitor, type DesiredState, type JanitorOptions } from '../../src/agent/janitor.js';
import { createMetrics, type Metrics } from '../../src/agent/metrics.js';
import type { DestinationSpec, ServiceKey } from '../../src/ipvs/types.js';
import type { CacheCheck, DesiredEndpoint, DesiredVirtualService, Policy, ServiceRef } from '../../src/reconcile/types.js';
import { captureLog, type LogRecord } from './capture-log.js';
import { FakeIpvs } from './fake-ipvs.js';

export const web: ServiceRef = { namespace: 'shop', name: 'web' };
type AddressKey = Extract<ServiceKey, { kind: 'address' }>;
export const vip: AddressKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.0.10', port: 80 };
export const unowned: AddressKey = { ...vip, address: '10.96.0.99' };
export const rs = (last: number, weight: number): DestinationSpec => ({
  family: 'ipv4',
  address: `10.240.0.${last}`,
  port: 8080,
  forwarding: 'masq',
  weight,
});
export const ep = (last: number, condition: DesiredEndpoint['condition']): DesiredEndpoint => ({
  address: `10.240.0.${last}`,
  port: 8080,
  condition,
});

/** The Kubernetes side reduced to plain data, as the janitor sees it. */
export class StaticDesired implements DesiredState {
  synced = true;
  endpoints: DesiredEndpoint[] = [];
  webExists = true;
  /** Services of namespace shop listed before web, each with what virtualServicesOf answers (or throws). */
  others = new Map<string, () => DesiredVirtualService[]>();
  /** How often the janitor asked for the Service list: once per resync pass. */
  listed = 0;
  /** What the API server says of the cache when asked; every question is recorded. */
  cacheCheck: CacheCheck = { kind: 'current' };
  confirmed: string[] = [];
  isSynced() {
    return this.synced;
  }
  services() {
    this.listed++;
    return [...[...this.others.keys()].map((name) => ({ namespace: 'shop', name })), web];
  }
  async confirm(ref: ServiceRef): Promise<CacheCheck> {
    this.confirmed.push(`${ref.namespace}/${ref.name}`);
    return this.cacheCheck;
  }
  virtualServicesOf(ref: ServiceRef): DesiredVirtualService[] {
    if (ref.name === web.name) return this.webExists ? [{ service: web, key: vip, endpoints: this.endpoints }] : [];
    return this.others.get(ref.name)?.() ?? [];
  }
}

export class JanitorRig {
  readonly ipvs = new FakeIpvs();
  readonly desired = new StaticDesired();
  readonly metrics: Metrics = createMetrics();
  records: LogRecord[] = [];
  /** The janitor's clock, in milliseconds; tests move it. */
  now = 1000;

  /** web's real servers: .1 weight 1 ready, .2 weight 0 gone, .3 weight 0 terminating, .4 weight 0 not serving. */
  static async create(): Promise<JanitorRig> {
    const rig = new JanitorRig();
    for (const key of [vip, unowned]) {
      await rig.ipvs.createService({ key, scheduler: 'rr' });
      for (const d of [rs(1, 1), rs(2, 0), rs(3, 0), rs(4, 0)]) await rig.ipvs.createDestination(key, d);
    }
    rig.desired.endpoints = [ep(1, 'ready'), ep(3, 'terminating-serving'), ep(4, 'not-serving')];
    return rig;
  }

  janitor(policy: Policy = { mode: 'graceful' }, dryRun = false, more: Partial<JanitorOptions> = {}): Janitor {
    const captured = captureLog();
    this.records = captured.records;
    const { ipvs, desired, metrics } = this;
    return new Janitor({ ipvs, desired, policy, dryRun, log: captured.log, metrics, clock: () => this.now, ...more });
  }

  /** "address/weight" of each real server of the virtual service, sorted. */
  async addresses(key: ServiceKey = vip): Promise<string[]> {
    return (await this.ipvs.listDestinations(key)).map((d) => `${d.address}/${d.weight}`).sort();
  }

  metric(name: string): Promise<string> {
    return this.metrics.registry.getSingleMetricAsString(name);
  }
}
