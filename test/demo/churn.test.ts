// The churn test's plan and judgement on the host: the checks must catch what they claim to catch.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KUBE_PROXY_SYNC_ALLOWANCE_MS } from '../../src/agent/stale-entries.js';
import { churnPlan, judge, kubeProxyDeletedServing, servingAt, servingThroughout, staleZeroWeight, type AgentDeletion, type SliceEvent } from './churn.js';

describe('churn plan', () => {
  const plan = churnPlan({ services: 5, changes: 400, meanGapMs: 1 }, 42);

  it('is the same for the same seed and covers every kind of change', () => {
    assert.deepEqual(churnPlan({ services: 5, changes: 400, meanGapMs: 1 }, 42), plan);
    assert.deepEqual(new Set(plan.changes.map((c) => c.op)), new Set(['add', 'add-reused', 'terminate-serving', 'terminate-not-serving', 'remove']));
  });

  it('writes conditions as the EndpointSlice controller does, no address twice in a slice', () => {
    for (const c of plan.changes) {
      assert.equal(new Set(c.endpoints.map((e) => e.ip)).size, c.endpoints.length);
      for (const e of c.endpoints) {
        if (e.ready) assert.deepEqual([e.serving, e.terminating], [true, false]);
        else assert.equal(e.terminating, true, 'not ready only while terminating');
      }
    }
  });
});

const ev = (at: number, endpoints: Record<string, boolean>, type: SliceEvent['type'] = 'MODIFIED'): SliceEvent => ({ at, type, service: 'churn/a', slice: 'a-1', endpoints });

describe('judging from the recorded watch', () => {
  const events = [ev(1000, { '10.0.0.1': true }, 'ADDED'), ev(5000, { '10.0.0.1': false }), ev(9000, {}), ev(12_000, { '10.0.0.1': true })];
  const del = (at: number, weight = 0): AgentDeletion => ({ at, service: 'churn/a', realServer: '10.0.0.1:8080', weight, reason: 'endpoint-gone', trigger: 'event' });

  it('replays the serving state at any instant', () => {
    assert.deepEqual([500, 1000, 4999, 5000, 9500, 12_000].map((t) => servingAt(events, 'churn/a', '10.0.0.1', t)), [false, true, true, false, false, true]);
    assert.equal(servingThroughout(events, 'churn/a', '10.0.0.1', 2000, 4000), true);
    assert.equal(servingThroughout(events, 'churn/a', '10.0.0.1', 4000, 6000), false);
  });

  it('flags a deletion of a serving endpoint, one above weight 0, and a real server back without the API', () => {
    const ok = judge([del(6000)], events, [], 2000);
    assert.deepEqual([ok.deletedWhileServing, ok.deletedAboveWeightZero, ok.reAddedByKubeProxy], [[], [], []]);
    assert.equal(judge([del(4000)], events, [], 2000).deletedWhileServing.length, 1);
    assert.equal(judge([del(5100)], events, [], 2000).deletedWhileServing.length, 0, 'changed 0.1 s before: a race, not a violation');
    assert.equal(judge([del(5100)], events, [], 2000).deletedWhileServingStrict, 0);
    assert.equal(judge([del(6000, 1)], events, [], 2000).deletedAboveWeightZero.length, 1);
    const back = { startedAt: 7900, at: 8000, services: { 'churn/a': { '10.0.0.1': 1 } } };
    assert.equal(judge([del(6000)], events, [back], 2000).reAddedByKubeProxy.length, 1);
    assert.equal(judge([del(6000)], events, [{ ...back, startedAt: 12_900, at: 13_000 }], 2000).reAddedByKubeProxy.length, 0, 'the address came back in the API');
    // A dump that read the real server just before the deletion and ended after it (seen in a CI run).
    assert.equal(judge([del(6000)], events, [{ ...back, startedAt: 5950 }], 2000).reAddedByKubeProxy.length, 0, 'read before the deletion');
  });

  it("accepts a deletion above weight 0 only for kube-proxy's stale entry, and only when its premise held", () => {
    const stale = (at: number): AgentDeletion => ({ ...del(at, 1), reason: 'kube-proxy-stale-entry' });
    // Deleted at 6 s (not serving), back serving at 12 s (within the window), out at 15 s, deleted at weight 1 once
    // kube-proxy has had its sync allowance to zero it.
    const afterAllowance = 15_000 + KUBE_PROXY_SYNC_ALLOWANCE_MS + 1;
    const seen = judge([del(6000), stale(afterAllowance)], [...events, ev(15_000, {})], [], 2000);
    assert.deepEqual([seen.staleEntryDeletions.length, seen.deletedAboveWeightZero], [1, []]);
    assert.equal(judge([stale(afterAllowance)], [...events, ev(15_000, {})], [], 2000).deletedAboveWeightZero.length, 1, 'no earlier deletion');
    assert.equal(judge([del(6000), stale(20_000)], [...events, ev(15_000, {})], [], 2000).deletedAboveWeightZero.length, 1, 'before kube-proxy could zero it');
    const late = [...events.slice(0, 3), ev(6000 + 93_000, { '10.0.0.1': true }), ev(110_000, {})];
    assert.equal(judge([del(6000), stale(110_000 + KUBE_PROXY_SYNC_ALLOWANCE_MS + 1)], late, [], 2000).deletedAboveWeightZero.length, 1, 'came back after the window');
    assert.equal(judge([del(6000), { ...stale(afterAllowance), reason: 'endpoint-gone' }], [...events, ev(15_000, {})], [], 2000).deletedAboveWeightZero.length, 1);
    // Never listed again, but back in the kernel (kube-proxy's sync in progress re-added it): the entry is stale too.
    const neverListed = events.slice(0, 3);
    const reAdded = { startedAt: 7900, at: 8000, services: { 'churn/a': { '10.0.0.1': 1 } } };
    assert.equal(judge([del(6000), stale(9000 + KUBE_PROXY_SYNC_ALLOWANCE_MS + 1)], neverListed, [reAdded], 2000).staleEntryDeletions.length, 1);
    assert.equal(judge([del(6000), stale(9000 + KUBE_PROXY_SYNC_ALLOWANCE_MS + 1)], neverListed, [], 2000).deletedAboveWeightZero.length, 1, 'never back at all');
  });

  it("tells kube-proxy's re-adds from a sync whose view predates the endpoint's exit from the rest", () => {
    // Not serving from 5 s; deleted at 6 s; back in the kernel at 8 s; never listed again.
    const back = { startedAt: 7900, at: 8000, services: { 'churn/a': { '10.0.0.1': 1 } } };
    const lagging = judge([del(6000)], events.slice(0, 3), [back], 2000, [{ viewAt: 4500, endAt: 7000 }]);
    assert.deepEqual([lagging.reAddedByLaggingSync.length, lagging.reAddedByKubeProxy], [1, []]);
    assert.equal(judge([del(6000)], events.slice(0, 3), [back], 2000, [{ viewAt: 5500, endAt: 7000 }]).reAddedByKubeProxy.length, 1, 'its view had it out');
    assert.equal(judge([del(6000)], events.slice(0, 3), [back], 2000, [{ viewAt: 4500, endAt: 5900 }]).reAddedByKubeProxy.length, 1, 'it ended before the deletion');
  });

  it('a weight-0 real server is stale when the final API state has no serving endpoint for it', () => {
    const final = { startedAt: 19_900, at: 20_000, services: { 'churn/a': { '10.0.0.1': 0, '10.0.0.2': 0, '10.0.0.3': 1 } } };
    assert.deepEqual(staleZeroWeight(final, events), ['churn/a 10.0.0.2']);
  });
});

describe('kube-proxy\'s own deletions', () => {
  it('flags one of a real server whose endpoint the API listed serving', () => {
    const events = [ev(1000, { '10.0.0.1': true }, 'ADDED'), ev(5000, {})];
    const lines = [
      { at: 4000, realServer: '10.96.200.1:80/TCP/10.0.0.1:8080' },
      { at: 6000, realServer: '10.96.200.1:80/TCP/10.0.0.1:8080' },
      { at: 4000, realServer: '10.96.200.9:80/TCP/10.0.0.1:8080' },
    ];
    const serviceOf = (vip: string) => (vip === '10.96.200.1' ? 'churn/a' : undefined);
    assert.deepEqual(kubeProxyDeletedServing(lines, events, serviceOf, 2000, []), [
      `10.96.200.1:80/TCP/10.0.0.1:8080 at ${new Date(4000).toISOString()}, the agent had not deleted it`,
    ]);
    const agent = (at: number, realServer = '10.0.0.1:8080') => ({ at, service: 'churn/a', realServer, weight: 0, reason: 'endpoint-gone', trigger: 'event' });
    assert.deepEqual(kubeProxyDeletedServing(lines, events, serviceOf, 2000, [agent(500), agent(1500, '10.0.0.1:9090'), agent(3000), agent(4500)]), [
      `10.96.200.1:80/TCP/10.0.0.1:8080 at ${new Date(4000).toISOString()}, 1.0 s after the agent deleted it`,
    ]);
  });
});
