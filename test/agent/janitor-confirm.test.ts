// Deletions that rest on the cache wait until the API server confirms it: a watch can hang without a sign, and a
// frozen cache then looks complete while the API says an endpoint (unknown to it) is serving.
import assert from 'node:assert/strict';
import { beforeEach, describe, it } from 'node:test';
import { ep, JanitorRig, rs, vip, web } from '../support/janitor-rig.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('janitor: the API server confirms the cache before a deletion that rests on it', () => {
  let rig: JanitorRig;

  beforeEach(async () => {
    rig = await JanitorRig.create();
  });

  it('keeps the real servers while the API server holds slices the cache lacks, and deletes once it is current', async () => {
    rig.desired.cacheCheck = { kind: 'behind', detail: 'the API server has shop/web-abc@42' };
    const j = rig.janitor({ mode: 'graceful' }, false, { confirmRetryMs: 50 });
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(await rig.addresses(), ['10.240.0.1/1', '10.240.0.2/0', '10.240.0.3/0', '10.240.0.4/0']);
    const kept = rig.records.filter((r) => r.message === 'kept real server for now: the cache could not be confirmed against the API server');
    assert.deepEqual(
      kept.map((r) => [r.service, r.realServer, r.weight, r.reason, r.cache]),
      [
        ['shop/web', '10.240.0.2:8080', 0, 'endpoint-gone', 'behind'],
        ['shop/web', '10.240.0.4:8080', 0, 'endpoint-not-serving', 'behind'],
      ],
    );
    assert.match(await rig.metric('ipvs_janitor_deletions_put_off_total'), /cause="behind"} 2/);
    // One question per run of the Service, however many deletions wait on it.
    assert.deepEqual(rig.desired.confirmed, ['shop/web']);

    // The watch delivers; the Service is looked at again on its own, without an event.
    rig.desired.cacheCheck = { kind: 'current' };
    for (let i = 0; i < 100 && (await rig.addresses()).length > 2; i++) await sleep(10);
    assert.deepEqual(await rig.addresses(), ['10.240.0.1/1', '10.240.0.3/0']);
    await j.stop();
  });

  it('deletes nothing when the API server does not answer', async () => {
    rig.desired.cacheCheck = { kind: 'unavailable', error: 'connect ECONNREFUSED 127.0.0.1:6443' };
    const j = rig.janitor({ mode: 'graceful' }, false, { confirmRetryMs: 60_000 });
    j.serviceChanged(web);
    await j.idle();
    assert.equal((await rig.addresses()).length, 4);
    assert.match(await rig.metric('ipvs_janitor_deletions_put_off_total'), /cause="unavailable"} 2/);
    await j.stop();
  });

  it('asks nothing where the deletion does not rest on the cache (immediate) or where nothing is deleted', async () => {
    rig.desired.cacheCheck = { kind: 'unavailable', error: 'down' };
    const j = rig.janitor({ mode: 'immediate' });
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(await rig.addresses(), ['10.240.0.1/1']);
    assert.deepEqual(rig.desired.confirmed, []);
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(rig.desired.confirmed, []);
    await j.stop();
  });

  it('drain: a connection that became active while the API server was asked keeps the real server (the kernel is read again after the answer)', async () => {
    // Seen in the demo: 1.2 s of confirmation under emulation, and new connections on the terminating pod meanwhile.
    rig.desired.endpoints = [ep(1, 'ready'), ep(2, 'ready'), ep(3, 'terminating-serving'), ep(4, 'ready')];
    rig.ipvs.setConnections(vip, rs(3, 0), { active: 0, inactive: 40 });
    rig.desired.confirm = async (ref) => {
      rig.desired.confirmed.push(`${ref.namespace}/${ref.name}`);
      rig.ipvs.setConnections(vip, rs(3, 0), { active: 1, inactive: 40 });
      return { kind: 'current' };
    };
    const j = rig.janitor({ mode: 'drain' }, false, { drainPollIntervalMs: 60_000 });
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(rig.desired.confirmed, ['shop/web']);
    assert.deepEqual(await rig.addresses(), ['10.240.0.1/1', '10.240.0.2/0', '10.240.0.3/0', '10.240.0.4/0']);
    assert.equal(rig.ipvs.count('deleteDestination'), 0);
    await j.stop();
  });

  it('a real server somebody else removed while the API server was asked is neither deleted again nor reported kept', async () => {
    rig.desired.confirm = async (ref) => {
      rig.desired.confirmed.push(`${ref.namespace}/${ref.name}`);
      await rig.ipvs.deleteDestination(vip, rs(2, 0)); // kube-proxy was faster
      return { kind: 'current' };
    };
    const j = rig.janitor({ mode: 'graceful' });
    j.serviceChanged(web);
    await j.idle();
    assert.deepEqual(await rig.addresses(), ['10.240.0.1/1', '10.240.0.3/0']);
    assert.deepEqual(rig.records.filter((r) => r.message.startsWith('kept real server')), []);
    // Only what the agent removed itself is logged as its deletion.
    assert.deepEqual(rig.records.filter((r) => r.message === 'deleted real server').map((r) => r.realServer), ['10.240.0.4:8080']);
    await j.stop();
  });
});
