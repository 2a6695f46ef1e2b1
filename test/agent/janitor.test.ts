import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { Janitor, type DesiredState } from '../../src/agent/janitor.js';
import { createMetrics, type Metrics } from '../../src/agent/metrics.js';
import type { DestinationSpec, ServiceKey } from '../../src/ipvs/types.js';
import type { DesiredEndpoint, DesiredVirtualService, Policy, ServiceRef } from '../../src/reconcile/types.js';
import { captureLog, type LogRecord } from '../support/capture-log.js';
import { FakeIpvs } from '../support/fake-ipvs.js';

const web: ServiceRef = { namespace: 'shop', name: 'web' };
const vip: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.0.10', port: 80 };
const unowned: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.0.99', port: 80 };
const rs = (last: number, weight: number): DestinationSpec => ({
  family: 'ipv4',
  address: `10.240.0.${last}`,
  port: 8080,
  forwarding: 'masq',
  weight,
});
const ep = (last: number, condition: DesiredEndpoint['condition']): DesiredEndpoint => ({
  address: `10.240.0.${last}`,
  port: 8080,
  condition,
});

/** The Kubernetes side reduced to plain data, as the janitor sees it. */
class StaticDesired implements DesiredState {
  synced = true;
  endpoints: DesiredEndpoint[] = [];
  isSynced() {
    return this.synced;
  }
  services() {
    return [web];
  }
  virtualServicesOf(ref: ServiceRef): DesiredVirtualService[] {
    return ref.name === web.name ? [{ service: web, key: vip, endpoints: this.endpoints }] : [];
  }
}

describe('janitor', () => {
  let ipvs: FakeIpvs;
  let desired: StaticDesired;
  let metrics: Metrics;
  let records: LogRecord[];
  let now: number;

  function janitor(policy: Policy = { mode: 'graceful' }, dryRun = false): Janitor {
    const captured = captureLog();
    records = captured.records;
    return new Janitor({ ipvs, desired, policy, dryRun, log: captured.log, metrics, clock: () => now });
  }
  const addresses = async (key = vip) => (await ipvs.listDestinations(key)).map((d) => `${d.address}/${d.weight}`).sort();

  beforeEach(async () => {
    ipvs = new FakeIpvs();
    desired = new StaticDesired();
    metrics = createMetrics();
    now = 1000;
    for (const key of [vip, unowned]) {
      await ipvs.createService({ key, scheduler: 'rr' });
      for (const d of [rs(1, 1), rs(2, 0), rs(3, 0), rs(4, 0)]) await ipvs.createDestination(key, d);
    }
    desired.endpoints = [ep(1, 'ready'), ep(3, 'terminating-serving'), ep(4, 'not-serving')];
  });

  it('on an event deletes exactly the weight-0 real servers no serving endpoint backs, and logs each', async () => {
    const j = janitor();
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(await addresses(), ['10.240.0.1/1', '10.240.0.3/0']);
    assert.deepEqual(await addresses(unowned), ['10.240.0.1/1', '10.240.0.2/0', '10.240.0.3/0', '10.240.0.4/0']);
    const deleted = records.filter((r) => r.message === 'deleted real server');
    assert.deepEqual(
      deleted.map((r) => [r.service, r.virtualService, r.realServer, r.weight, r.policy, r.reason]),
      [
        ['shop/web', 'TCP 10.96.0.10:80', '10.240.0.2:8080', 0, 'graceful', 'endpoint-gone'],
        ['shop/web', 'TCP 10.96.0.10:80', '10.240.0.4:8080', 0, 'graceful', 'endpoint-not-serving'],
      ],
    );
    assert.equal(deleted[0]?.activeConnections, 0);
    assert.equal(deleted[0]?.inactiveConnections, 0);
    const counted = await metrics.registry.getSingleMetricAsString('ipvs_janitor_deletions_total');
    assert.match(counted, /reason="endpoint-gone",policy="graceful",dry_run="false"} 1/);
  });

  it('under immediate deletes every weight-0 real server of the Service, never one above 0', async () => {
    const j = janitor({ mode: 'immediate' });
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(await addresses(), ['10.240.0.1/1']);
  });

  it('deletes a served weight-0 real server once maxDrainSeconds has passed', async () => {
    const j = janitor({ mode: 'graceful', maxDrainSeconds: 30 });
    desired.endpoints = [ep(1, 'ready'), ep(2, 'terminating-serving'), ep(3, 'terminating-serving'), ep(4, 'ready')];
    j.serviceChanged(web);
    await j.idle();
    assert.equal((await addresses()).length, 4);
    now += 30_001;
    await j.resync();
    assert.deepEqual(await addresses(), ['10.240.0.1/1']);
    assert.ok(records.some((r) => r.reason === 'max-drain-exceeded'));
  });

  it('does nothing while the informers are not synced', async () => {
    desired.synced = false;
    const j = janitor({ mode: 'immediate' });
    j.serviceChanged(web);
    await j.resync();
    assert.equal((await addresses()).length, 4);
    assert.equal(ipvs.count('deleteDestination'), 0);
  });

  it('in dry-run logs the decision and deletes nothing', async () => {
    const j = janitor({ mode: 'graceful' }, true);
    j.serviceChanged(web);
    await j.idle();
    assert.equal((await addresses()).length, 4);
    assert.equal(ipvs.count('deleteDestination'), 0);
    const would = records.filter((r) => r.message === 'would delete real server (dry run)');
    assert.deepEqual(would.map((r) => r.realServer), ['10.240.0.2:8080', '10.240.0.4:8080']);
  });

  it('counts ENOENT on delete as success: somebody else removed it first', async () => {
    const j = janitor();
    ipvs.beforeNext('deleteDestination', () => ipvs.deleteDestination(vip, rs(2, 0)));
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(await addresses(), ['10.240.0.1/1', '10.240.0.3/0']);
    assert.equal(ipvs.count('deleteDestination', 'error'), 1); // the janitor's own delete of .2 met ENOENT
    assert.deepEqual(
      records.filter((r) => r.message === 'deleted real server').map((r) => r.realServer),
      ['10.240.0.2:8080', '10.240.0.4:8080'],
    );
    assert.doesNotMatch(await metrics.registry.getSingleMetricAsString('ipvs_janitor_kernel_errors_total'), /errno=/);
  });

  it('logs and counts any other kernel error, goes on with the rest, and retries on the next event', async () => {
    const j = janitor();
    ipvs.failNext('deleteDestination', 'ENOMEM');
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(await addresses(), ['10.240.0.1/1', '10.240.0.2/0', '10.240.0.3/0']);
    assert.match(await metrics.registry.getSingleMetricAsString('ipvs_janitor_kernel_errors_total'), /errno="ENOMEM"} 1/);
    assert.ok(records.some((r) => r.level === 'warn' && String(r.error).includes('ENOMEM')));
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(await addresses(), ['10.240.0.1/1', '10.240.0.3/0']);
  });

  it('coalesces a burst of events for one Service into one kernel read', async () => {
    const j = janitor();
    for (let i = 0; i < 50; i++) j.serviceChanged(web);
    await j.idle();
    assert.equal(ipvs.count('listDestinations'), 1);
  });

  it('resync counts the weight-0 real servers left and cleans stale ones', async () => {
    const j = janitor();
    await j.resync();
    assert.deepEqual(await addresses(), ['10.240.0.1/1', '10.240.0.3/0']);
    assert.match(await metrics.registry.getSingleMetricAsString('ipvs_janitor_zero_weight_destinations'), / 1$/m);
  });
});
