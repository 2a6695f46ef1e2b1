// kube-proxy's stale graceful-list entry (src/agent/stale-entries.ts), played on the IPVS fake the way the churn test
// met it with the real kube-proxy (seed 817033442): the agent deletes a weight-0 real server kube-proxy holds on
// its list, the address comes back as a serving endpoint before kube-proxy's once-a-minute check, kube-proxy adds
// a fresh real server at weight 1 and keeps the entry, and when the endpoint leaves again it skips that real
// server: weight 1 for good, new connections to a pod that is gone.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { KUBE_PROXY_CHECK_WINDOW_MS, KUBE_PROXY_SYNC_ALLOWANCE_MS } from '../../src/agent/stale-entries.js';
import { ep, JanitorRig, rs, vip, web } from '../support/janitor-rig.js';

describe("janitor: kube-proxy's stale graceful-list entry", () => {
  let rig: JanitorRig;

  beforeEach(async () => {
    rig = await JanitorRig.create();
    // .2 weight 0, its endpoint not serving: kube-proxy zeroed it and listed it; the agent deletes it.
    rig.desired.endpoints = [ep(1, 'ready'), ep(2, 'not-serving'), ep(3, 'terminating-serving'), ep(4, 'ready')];
  });

  const deleted = () => rig.records.filter((r) => r.message === 'deleted real server').map((r) => [r.realServer, r.weight, r.reason]);

  /** The agent deletes .2; 10 s later .2 is listed ready again and kube-proxy adds it back at weight 1. */
  async function deletedThenReAdded() {
    const j = rig.janitor({ mode: 'graceful' });
    j.serviceChanged(web);
    await j.idle();
    rig.now += 10_000;
    rig.desired.endpoints = [ep(1, 'ready'), ep(2, 'ready'), ep(3, 'terminating-serving'), ep(4, 'ready')];
    await rig.ipvs.createDestination(vip, rs(2, 1));
    j.serviceChanged(web);
    await j.idle();
    return j;
  }

  /**
   * The agent deletes .2, .2 comes back serving `backAfterMs` later, kube-proxy re-adds it, then it leaves; the
   * agent reads the Service again as it leaves and `outForMs` later, kube-proxy never having written weight 0.
   */
  async function comesBackAndLeaves(backAfterMs: number, seenServing = true, outForMs = KUBE_PROXY_SYNC_ALLOWANCE_MS) {
    const j = rig.janitor({ mode: 'graceful' });
    j.serviceChanged(web);
    await j.idle();
    assert.ok(!(await rig.addresses()).includes('10.240.0.2/0'), 'the agent deleted .2');

    rig.now += backAfterMs;
    rig.desired.endpoints = [ep(1, 'ready'), ep(2, 'ready'), ep(3, 'terminating-serving'), ep(4, 'ready')];
    // The event for the endpoint's return may come before kube-proxy's re-add, or be folded into a later one.
    if (seenServing) {
      j.serviceChanged(web);
      await j.idle();
    }
    await rig.ipvs.createDestination(vip, rs(2, 1));
    j.serviceChanged(web);
    await j.idle();
    assert.ok((await rig.addresses()).includes('10.240.0.2/1'), 'a serving endpoint is never touched');

    rig.now += 30_000;
    rig.desired.endpoints = [ep(1, 'ready'), ep(3, 'terminating-serving'), ep(4, 'ready')];
    j.serviceChanged(web);
    await j.idle();
    assert.ok((await rig.addresses()).includes('10.240.0.2/1'), 'kube-proxy gets the time its sync takes to zero it');
    rig.now += outForMs;
    j.serviceChanged(web);
    await j.idle();
    await j.stop();
    return deleted();
  }

  it('deletes the re-added real server at weight 1 once its endpoint leaves, when it came back within the window', async () => {
    const deleted = await comesBackAndLeaves(10_000);
    assert.deepEqual(deleted, [
      ['10.240.0.2:8080', 0, 'endpoint-not-serving'],
      ['10.240.0.2:8080', 1, 'kube-proxy-stale-entry'],
    ]);
    assert.deepEqual(rig.desired.confirmed, ['shop/web', 'shop/web'], 'both deletions confirmed against the API server');
  });

  it('knows the return from the kernel when the event for it was folded into a later one', async () => {
    const deleted = await comesBackAndLeaves(10_000, false);
    assert.equal(deleted[1]?.[2], 'kube-proxy-stale-entry');
  });

  it('leaves weight 1 alone for as long as kube-proxy may still be applying the change', async () => {
    const deleted = await comesBackAndLeaves(10_000, true, KUBE_PROXY_SYNC_ALLOWANCE_MS - 1);
    assert.deepEqual(deleted, [['10.240.0.2:8080', 0, 'endpoint-not-serving']]);
    assert.ok((await rig.addresses()).includes('10.240.0.2/1'));
  });

  it('deletes at weight 0 as usual when kube-proxy zeroes the returned real server (its check had dropped the entry)', async () => {
    const j = await deletedThenReAdded();
    rig.now += 30_000;
    rig.desired.endpoints = [ep(1, 'ready'), ep(3, 'terminating-serving'), ep(4, 'ready')];
    j.serviceChanged(web);
    await j.idle();
    rig.now += 5_000;
    await rig.ipvs.updateDestination(vip, rs(2, 0));
    j.serviceChanged(web);
    await j.idle();
    await j.stop();
    assert.deepEqual(deleted(), [
      ['10.240.0.2:8080', 0, 'endpoint-not-serving'],
      ['10.240.0.2:8080', 0, 'endpoint-gone'],
    ]);
  });

  it('waits for weight 0 as usual when the address came back after kube-proxy checked its list', async () => {
    const deleted = await comesBackAndLeaves(KUBE_PROXY_CHECK_WINDOW_MS + 1);
    assert.deepEqual(deleted, [['10.240.0.2:8080', 0, 'endpoint-not-serving']]);
    assert.ok((await rig.addresses()).includes('10.240.0.2/1'), 'weight 1: left for kube-proxy to zero');
  });

  it('forgets the entry once the re-added real server has left the kernel (kube-proxy deleted it, entry and all)', async () => {
    const j = await deletedThenReAdded();
    // kube-proxy's check found it idle and deleted it; its next sync added it again, with no entry left.
    await rig.ipvs.deleteDestination(vip, rs(2, 1));
    j.serviceChanged(web);
    await j.idle();
    await rig.ipvs.createDestination(vip, rs(2, 1));
    rig.desired.endpoints = [ep(1, 'ready'), ep(3, 'terminating-serving'), ep(4, 'ready')];
    j.serviceChanged(web);
    await j.idle();
    await j.stop();
    assert.ok((await rig.addresses()).includes('10.240.0.2/1'), 'weight 1: left for kube-proxy to zero');
  });
});
