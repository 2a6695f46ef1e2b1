import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import type { Janitor } from '../../src/agent/janitor.js';
import type { Metrics } from '../../src/agent/metrics.js';
import type { ServiceKey } from '../../src/ipvs/types.js';
import type { Policy } from '../../src/reconcile/types.js';
import type { LogRecord } from '../support/capture-log.js';
import type { FakeIpvs } from '../support/fake-ipvs.js';
import { ep, JanitorRig, rs, type StaticDesired, unowned, vip, web } from '../support/janitor-rig.js';

describe('janitor', () => {
  let rig: JanitorRig;
  let ipvs: FakeIpvs;
  let desired: StaticDesired;
  let metrics: Metrics;
  let records: LogRecord[];

  function janitor(policy?: Policy, dryRun?: boolean): Janitor {
    const j = rig.janitor(policy, dryRun);
    records = rig.records;
    return j;
  }
  const addresses = (key = vip) => rig.addresses(key);

  beforeEach(async () => {
    rig = await JanitorRig.create();
    ({ ipvs, desired, metrics } = rig);
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
    rig.now += 30_001;
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

  it('drops events while the caches are not synced: the resync on sync covers them, labelled as such', async () => {
    desired.synced = false;
    const j = janitor();
    j.serviceChanged(web); // a relist replays every object before the caches are complete
    desired.synced = true;
    await j.idle();
    assert.equal(ipvs.count('listDestinations'), 0);
    await j.resync();
    assert.deepEqual(
      records.filter((r) => r.message === 'deleted real server').map((r) => r.trigger),
      ['resync', 'resync'],
    );
    assert.doesNotMatch(await metrics.registry.getSingleMetricAsString('ipvs_janitor_event_to_deletion_seconds'), /_count \d*[1-9]/);
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

  it('coalesces a burst of events for one Service into one pass: one kernel read, and one more after the confirmation', async () => {
    const j = janitor();
    for (let i = 0; i < 50; i++) j.serviceChanged(web);
    await j.idle();
    assert.equal(ipvs.count('listDestinations'), 2);
  });

  it('times only the resync passes that run: a pass skipped while unsynced is not an instant resync', async () => {
    const j = janitor();
    const timed = async () =>
      /ipvs_janitor_reconcile_duration_seconds_count\{trigger="resync"\} (\d+)/.exec(
        await metrics.registry.getSingleMetricAsString('ipvs_janitor_reconcile_duration_seconds'),
      )?.[1] ?? '0';
    desired.synced = false;
    await j.resync();
    assert.equal(await timed(), '0');
    desired.synced = true;
    await j.resync();
    assert.equal(await timed(), '1');
    assert.match(await metrics.registry.getSingleMetricAsString('ipvs_janitor_resyncs_total'), /result="skipped"} 1/);
  });

  it('resync counts the weight-0 real servers left and cleans stale ones', async () => {
    const j = janitor();
    await j.resync();
    assert.deepEqual(await addresses(), ['10.240.0.1/1', '10.240.0.3/0']);
    assert.match(await metrics.registry.getSingleMetricAsString('ipvs_janitor_zero_weight_destinations'), / 1$/m);
  });

  it('a resync reads the service list once and real servers only of owned virtual services the kernel has', async () => {
    const ghost: ServiceKey = { ...vip, address: '10.96.0.50' };
    const healthy: ServiceKey = { ...vip, address: '10.96.0.60' };
    const gone: ServiceKey = { ...vip, address: '10.96.0.70' };
    const ref = (name: string) => ({ namespace: 'shop', name });
    desired.others.set('ghost', () => [{ service: ref('ghost'), key: ghost, endpoints: [] }]);
    desired.others.set('healthy', () => [{ service: ref('healthy'), key: healthy, endpoints: [ep(1, 'ready')] }]);
    desired.others.set('gone', () => [{ service: ref('gone'), key: gone, endpoints: [] }]);
    for (const key of [healthy, gone]) {
      await ipvs.createService({ key, scheduler: 'rr' });
      await ipvs.createDestination(key, rs(1, 1));
    }
    const j = janitor();
    await j.resync();
    assert.equal(ipvs.count('listServices'), 1);
    const read = (operation: string) =>
      ipvs.operations.filter((op) => op.operation === operation).map((op) => op.service?.kind === 'address' && op.service.address);
    // ghost is not in the kernel: never read. Weights first; the full read only where there is a weight 0
    // (web) or a weight > 0 real server whose endpoint is gone (followed until kube-proxy zeroes it); web's
    // deletions are decided again on a second read after the API server confirmed the cache.
    assert.deepEqual(read('listDestinationWeights').sort(), ['10.96.0.10', '10.96.0.60', '10.96.0.70']);
    assert.deepEqual(read('listDestinations').sort(), ['10.96.0.10', '10.96.0.10', '10.96.0.70']);
    assert.deepEqual(await addresses(), ['10.240.0.1/1', '10.240.0.3/0']);
    assert.match(await metrics.registry.getSingleMetricAsString('ipvs_janitor_resyncs_total'), /result="complete"} 1/);
  });

  it('asks the caches again right before each deletion: an address that came back is kept', async () => {
    const j = janitor();
    // While the kernel read is in flight, .2 comes back as a new ready pod and .4 turns serving again.
    ipvs.beforeNext('listDestinations', () => {
      desired.endpoints = [ep(1, 'ready'), ep(2, 'ready'), ep(3, 'terminating-serving'), ep(4, 'terminating-serving')];
    });
    j.serviceChanged(web);
    await j.idle();
    assert.equal(ipvs.count('deleteDestination'), 0);
    assert.equal((await addresses()).length, 4);
    assert.deepEqual(
      records.filter((r) => r.message.startsWith('kept real server')).map((r) => r.realServer),
      ['10.240.0.2:8080', '10.240.0.4:8080'],
    );
  });

  it('deletes nothing when the Service left the cache or sync was lost between the read and the deletion', async () => {
    const j = janitor({ mode: 'immediate' });
    ipvs.beforeNext('listDestinations', () => void (desired.webExists = false));
    j.serviceChanged(web);
    await j.idle();
    desired.webExists = true;
    ipvs.beforeNext('listDestinations', () => void (desired.synced = false));
    j.serviceChanged(web);
    await j.idle();
    assert.equal(ipvs.count('listDestinations'), 2);
    assert.equal(ipvs.count('deleteDestination'), 0);
  });

  it('a Service that throws is logged by name and counted, and costs neither the resync nor the event batch', async () => {
    const zoned: ServiceKey = { ...vip, address: 'fe80::1%eth0', family: 'ipv6' };
    desired.others.set('broken', () => {
      throw new TypeError('not an IP address: 10.0.0.')
    });
    desired.others.set('zoned', () => [{ service: { namespace: 'shop', name: 'zoned' }, key: zoned, endpoints: [] }]);
    const j = janitor();
    await j.resync();
    assert.deepEqual(await addresses(), ['10.240.0.1/1', '10.240.0.3/0']);
    const warned = records.filter((r) => r.message.startsWith('could not reconcile'));
    assert.deepEqual(
      warned.map((r) => [r.service, r.virtualService]),
      [
        ['shop/broken', undefined],
        ['shop/zoned', 'TCP fe80::1%eth0 port 80'],
      ],
    );
    assert.match(await metrics.registry.getSingleMetricAsString('ipvs_janitor_reconcile_errors_total'), /stage="service"} 1/);

    // The same in one batch of events: web's turn still comes.
    await ipvs.createDestination(vip, rs(5, 0));
    j.serviceChanged({ namespace: 'shop', name: 'broken' });
    j.serviceChanged({ namespace: 'shop', name: 'zoned' });
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(await addresses(), ['10.240.0.1/1', '10.240.0.3/0']);
    const errors = await metrics.registry.getSingleMetricAsString('ipvs_janitor_reconcile_errors_total');
    assert.match(errors, /stage="service"} 2/);
    assert.match(errors, /stage="virtual-service"} 2/);
  });

  it('folds resync requests made while one runs into one more pass', async () => {
    const j = janitor();
    const passes = Array.from({ length: 10 }, () => j.resync());
    await Promise.all(passes);
    await j.idle();
    assert.equal(desired.listed, 2);
    assert.equal(ipvs.count('listServices'), 2);
    assert.match(await metrics.registry.getSingleMetricAsString('ipvs_janitor_resyncs_total'), /result="coalesced"} 9/);
  });

  it('stop() drops waiting work and takes no more', async () => {
    const j = janitor();
    j.serviceChanged(web);
    const running = j.resync();
    const after = j.resync();
    await j.stop();
    await Promise.all([running, after]); // neither waits for ever
    j.serviceChanged(web);
    await j.resync();
    await j.idle();
    assert.equal(ipvs.count('listDestinations') + ipvs.count('listDestinationWeights'), 0);
    assert.ok(ipvs.count('listServices') <= 1);
  });

  it('acts on an event during a long resync at once, and resyncs never pile up (the issue 9 scenario)', async () => {
    // 500 Services, 2 ms per kernel read, a resync requested every 300 ms for 3 s, an event at 100 ms.
    for (let i = 0; i < 500; i++) {
      const key: ServiceKey = { ...vip, address: `10.97.${i >> 8}.${i & 255}` };
      const ref = { namespace: 'shop', name: `svc-${i}` };
      await ipvs.createService({ key, scheduler: 'rr' });
      await ipvs.createDestination(key, rs(1, 1));
      desired.others.set(ref.name, () => [{ service: ref, key, endpoints: [ep(1, 'ready')] }]);
    }
    ipvs.setLatency(['listServices', 'listDestinationWeights', 'listDestinations'], 2);
    const j = janitor();
    let opsWhenFirstPassEnded = Infinity;
    const firstPass = j.resync().then(() => (opsWhenFirstPassEnded = ipvs.operations.length));
    const ticks = setInterval(() => void j.resync(), 300);
    await new Promise((resolve) => setTimeout(resolve, 100));
    // kube-proxy zeroes a real server whose pod is gone; web is the last Service the resync will visit.
    await ipvs.createDestination(vip, rs(5, 0));
    j.serviceChanged(web);
    await new Promise((resolve) => setTimeout(resolve, 2900));
    clearInterval(ticks);
    const passesBegunWhenTicksStopped = desired.listed;
    await firstPass;
    await j.idle();

    const deletion = ipvs.operations.findIndex(
      (op) => op.operation === 'deleteDestination' && op.destination?.address === '10.240.0.5',
    );
    assert.ok(deletion >= 0 && deletion < opsWhenFirstPassEnded, 'acted on before the resync in flight finished');
    const logged = records.find((r) => r.message === 'deleted real server' && r.realServer === '10.240.0.5:8080');
    assert.equal(logged?.trigger, 'event');
    // Nine ticks asked for a resync; whatever was asked while a pass ran became at most one more pass.
    assert.ok(passesBegunWhenTicksStopped < 9, `${passesBegunWhenTicksStopped} passes in 3 s of 1 s passes`);
    assert.ok(desired.listed <= passesBegunWhenTicksStopped + 1, `${desired.listed} passes in all`);
  });
});
