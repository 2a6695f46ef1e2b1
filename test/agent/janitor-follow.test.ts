// The followed set: real servers the janitor reads again on a short timer because the kernel sends no event
// for what they wait on (the last active connection ending, kube-proxy writing weight 0 late).
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { ep, JanitorRig, rs, vip, web } from '../support/janitor-rig.js';
import { until } from '../support/poll.js';

const POLL = { drainPollIntervalMs: 10 };

// Waits on real time; the fake answers at once, so it polls every 5 ms within tight bounds.
const soon = (check: () => boolean | Promise<boolean>, what: string, ms = 2000) => until(check, what, ms, 5);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('janitor: followed real servers', () => {
  let rig: JanitorRig;
  /** Nothing is followed any more: no read for six poll intervals. */
  async function readsStopped(): Promise<void> {
    const reads = rig.ipvs.count('listDestinations');
    await sleep(60);
    assert.equal(rig.ipvs.count('listDestinations'), reads, 'no follow-up reads any more');
  }

  beforeEach(async () => {
    rig = await JanitorRig.create();
    // web: .1 weight 1 ready; .2, .3, .4 weight 0; .3 terminating and serving.
    rig.desired.endpoints = [ep(1, 'ready'), ep(2, 'ready'), ep(3, 'terminating-serving'), ep(4, 'ready')];
  });

  it('drain: keeps a terminating real server while it has an active connection, deletes it once it has none', async () => {
    rig.ipvs.setConnections(vip, rs(3, 0), { active: 2, inactive: 40 });
    const j = rig.janitor({ mode: 'drain' }, false, POLL);
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(await rig.addresses(), ['10.240.0.1/1', '10.240.0.2/0', '10.240.0.3/0', '10.240.0.4/0']);
    assert.match(await rig.metric('ipvs_janitor_draining_destinations'), / 1$/m);

    // Re-read on the timer, never deleted while active: the request in flight finishes.
    const readsBefore = rig.ipvs.count('listDestinations');
    await soon(() => rig.ipvs.count('listDestinations') >= readsBefore + 3, 'three follow-up reads');
    assert.equal(rig.ipvs.count('deleteDestination'), 0);

    rig.now += 4_000;
    rig.ipvs.setConnections(vip, rs(3, 0), { active: 0, inactive: 41 }); // only TIME_WAIT left
    await soon(async () => !(await rig.addresses()).includes('10.240.0.3/0'), 'the drained real server deleted');
    const deleted = rig.records.filter((r) => r.message === 'deleted real server');
    assert.deepEqual(
      deleted.map((r) => [r.realServer, r.reason, r.trigger, r.zeroWeightForSeconds]),
      [['10.240.0.3:8080', 'endpoint-drained', 'follow-up', 4]],
    );
    assert.match(await rig.metric('ipvs_janitor_drain_seconds'), /_count{reason="endpoint-drained"} 1/);
    assert.match(await rig.metric('ipvs_janitor_draining_destinations'), / 0$/m);
    // Nothing left to follow: the timer stops, and so do the reads. No resync was involved.
    await readsStopped();
    assert.equal(rig.ipvs.count('listServices'), 0);
    await j.stop();
  });

  it('drain: a real server with only inactive entries (TIME_WAIT, UDP) is deleted on the event', async () => {
    rig.ipvs.setConnections(vip, rs(3, 0), { active: 0, inactive: 40 });
    const j = rig.janitor({ mode: 'drain' }, false, POLL);
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(await rig.addresses(), ['10.240.0.1/1', '10.240.0.2/0', '10.240.0.4/0']);
    assert.equal(rig.records.find((r) => r.message === 'deleted real server')?.trigger, 'event');
    await j.stop();
  });

  it("deletes a real server the moment kube-proxy's late weight-0 write lands, with no event and no resync", async () => {
    const j = rig.janitor({ mode: 'graceful' }, false, POLL);
    // The pod behind .1 is gone from the slice; kube-proxy has not zeroed its real server yet.
    rig.desired.endpoints = [ep(2, 'ready'), ep(3, 'terminating-serving'), ep(4, 'ready')];
    j.serviceChanged(web);
    await j.idle();
    assert.ok((await rig.addresses()).includes('10.240.0.1/1'), 'weight 1 is never touched');

    await sleep(1000); // kube-proxy writes seconds after the slice change
    assert.equal(rig.ipvs.count('deleteDestination'), 0);
    await rig.ipvs.updateDestination(vip, rs(1, 0));
    await soon(async () => !(await rig.addresses()).includes('10.240.0.1/0'), 'the zeroed real server deleted', 500);
    const deleted = rig.records.find((r) => r.message === 'deleted real server');
    assert.deepEqual([deleted?.realServer, deleted?.reason, deleted?.trigger], ['10.240.0.1:8080', 'endpoint-gone', 'follow-up']);
    // The follow-ups read web's virtual service only, never a full resync.
    assert.equal(rig.ipvs.count('listServices'), 0);
    const read = rig.ipvs.operations.filter((op) => op.operation === 'listDestinations');
    assert.ok(read.length > 5);
    for (const op of read) assert.deepEqual(op.service, vip);
    await j.stop();
  });

  it('stops following a weight > 0 real server after the bound, and a Service that no longer owns it', async () => {
    const j = rig.janitor({ mode: 'graceful' }, false, { ...POLL, awaitZeroLimitMs: 30_000 });
    rig.desired.endpoints = [ep(2, 'ready'), ep(3, 'terminating-serving'), ep(4, 'ready')];
    j.serviceChanged(web);
    await j.idle();
    const reads = rig.ipvs.count('listDestinations');
    await soon(() => rig.ipvs.count('listDestinations') > reads, 'another read');
    rig.now += 30_001;
    await sleep(40);
    await readsStopped();

    // Followed again after an event; then the Service goes: its virtual service is let go at the next tick.
    j.serviceChanged(web);
    await j.idle();
    rig.desired.webExists = false;
    await sleep(40);
    await readsStopped();
    assert.equal(rig.ipvs.count('deleteDestination'), 0);
    await j.stop();
  });

  it('slow reads never pile follow-ups up: one run of a Service at a time', async () => {
    rig.ipvs.setConnections(vip, rs(3, 0), { active: 1, inactive: 0 });
    rig.ipvs.setLatency(['listDestinations'], 30);
    const j = rig.janitor({ mode: 'drain' }, false, { drainPollIntervalMs: 1 });
    j.serviceChanged(web);
    await j.idle();
    const reads = rig.ipvs.count('listDestinations');
    await sleep(300);
    // 300 ms of 30 ms reads, a tick every millisecond: at most one read in flight plus the one it made dirty.
    const followUps = rig.ipvs.count('listDestinations') - reads;
    assert.ok(followUps >= 3 && followUps <= 300 / 30 + 2, `${followUps} follow-up reads`);
    await j.stop();
  });
});
