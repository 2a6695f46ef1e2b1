// Every policy against every combination of endpoint state, connection counts, weight and drain bound.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Destination, ServiceKey } from '../../src/ipvs/types.js';
import { decide, type DeletionReason } from '../../src/reconcile/decide.js';
import { destinationKeyString } from '../../src/reconcile/keys.js';
import type { DesiredEndpoint, EndpointCondition, Policy } from '../../src/reconcile/types.js';
import { zeroStats } from '../support/fake-ipvs.js';

const TCP: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.0.10', port: 80 };
const UDP: ServiceKey = { ...TCP, protocol: 'udp', port: 53 };
const NOW = 1_000_000;
const ADDRESS = '10.240.0.7';
const KEY = destinationKeyString({ family: 'ipv4', address: ADDRESS, port: 8080 });

/** 'keep': nothing to do; 'drain': kept and followed; 'await-zero': weight > 0 but followed; else deleted. */
type Outcome = 'keep' | 'drain' | 'await-zero' | DeletionReason;
type Endpoint = EndpointCondition | 'gone';
/** active: some connection established; idle: none, with or without inactive ones (TIME_WAIT, UDP). */
type Connections = 'active' | 'idle' | 'any';
type Counts = { active: number; inactive: number };
const COUNTS: Record<Connections, Counts[]> = {
  active: [
    { active: 2, inactive: 0 },
    { active: 1, inactive: 9 },
  ],
  idle: [
    { active: 0, inactive: 0 },
    { active: 0, inactive: 9 },
  ],
  any: [
    { active: 2, inactive: 0 },
    { active: 1, inactive: 9 },
    { active: 0, inactive: 0 },
    { active: 0, inactive: 9 },
  ],
};
// Zero weight first seen: now (no bound set), 10 s ago with a 30 s bound, 60 s ago with a 30 s bound.
const BOUNDS = ['no bound', 'within the bound', 'past the bound'] as const;

const GONE: Outcome[] = ['endpoint-gone', 'endpoint-gone', 'endpoint-gone'];
const NOT_SERVING: Outcome[] = ['endpoint-not-serving', 'endpoint-not-serving', 'endpoint-not-serving'];
const DRAINED: Outcome[] = ['endpoint-drained', 'endpoint-drained', 'endpoint-drained'];
const KEEP: Outcome[] = ['keep', 'keep', 'keep'];
const AWAIT: Outcome[] = ['await-zero', 'await-zero', 'await-zero'];
const IMMEDIATE: Outcome[] = ['immediate', 'immediate', 'immediate'];
const SERVED: Outcome[] = ['keep', 'keep', 'max-drain-exceeded'];
const DRAINING: Outcome[] = ['drain', 'drain', 'max-drain-exceeded'];
const STALE: Outcome[] = ['kube-proxy-stale-entry', 'kube-proxy-stale-entry', 'kube-proxy-stale-entry'];

const matrix: Array<[Policy['mode'], weight: number, Endpoint, Connections, Outcome[]]> = [
  ['drain', 0, 'ready', 'any', SERVED],
  ['drain', 0, 'terminating-serving', 'active', DRAINING],
  ['drain', 0, 'terminating-serving', 'idle', DRAINED],
  ['drain', 0, 'not-serving', 'active', DRAINING],
  ['drain', 0, 'not-serving', 'idle', NOT_SERVING],
  // Gone from every slice: the pod's containers have stopped, so its "active" entries are no request in flight
  // (the demo saw 20 on a dead pod, and drain then never deleted).
  ['drain', 0, 'gone', 'any', GONE],
  ['drain', 1, 'ready', 'any', KEEP],
  ['drain', 1, 'terminating-serving', 'any', AWAIT],
  ['drain', 1, 'not-serving', 'any', AWAIT],
  ['drain', 1, 'gone', 'any', AWAIT],

  ['graceful', 0, 'ready', 'any', SERVED],
  ['graceful', 0, 'terminating-serving', 'any', SERVED],
  ['graceful', 0, 'not-serving', 'any', NOT_SERVING],
  ['graceful', 0, 'gone', 'any', GONE],
  ['graceful', 1, 'ready', 'any', KEEP],
  ['graceful', 1, 'terminating-serving', 'any', KEEP],
  ['graceful', 1, 'not-serving', 'any', AWAIT],
  ['graceful', 1, 'gone', 'any', AWAIT],

  ['immediate', 0, 'ready', 'any', IMMEDIATE],
  ['immediate', 0, 'terminating-serving', 'any', IMMEDIATE],
  ['immediate', 0, 'not-serving', 'any', IMMEDIATE],
  ['immediate', 0, 'gone', 'any', IMMEDIATE],
  ['immediate', 1, 'ready', 'any', KEEP],
  ['immediate', 1, 'terminating-serving', 'any', AWAIT],
  ['immediate', 1, 'not-serving', 'any', AWAIT],
  ['immediate', 1, 'gone', 'any', AWAIT],
];

/**
 * Weight 1 although kube-proxy holds a stale graceful-list entry for the real server (the agent deleted it and the
 * address came back within kube-proxy's check window): kube-proxy zeroes gone and not-serving endpoints, so for
 * those the policy goes on as at weight 0; a terminating one it may keep at weight 1, so that one still waits.
 */
const staleMatrix: Array<[Policy['mode'], Endpoint, Connections, Outcome[]]> = [
  ['drain', 'ready', 'any', KEEP],
  ['drain', 'terminating-serving', 'any', AWAIT],
  ['drain', 'not-serving', 'active', ['drain', 'drain', 'kube-proxy-stale-entry']],
  ['drain', 'not-serving', 'idle', STALE],
  ['drain', 'gone', 'any', STALE],
  ['graceful', 'ready', 'any', KEEP],
  ['graceful', 'terminating-serving', 'any', KEEP],
  ['graceful', 'not-serving', 'any', STALE],
  ['graceful', 'gone', 'any', STALE],
  ['immediate', 'ready', 'any', KEEP],
  ['immediate', 'terminating-serving', 'any', AWAIT],
  ['immediate', 'not-serving', 'any', STALE],
  ['immediate', 'gone', 'any', STALE],
];

function destination(weight: number, counts: Counts): Destination {
  return {
    family: 'ipv4',
    address: ADDRESS,
    port: 8080,
    forwarding: 'masq',
    weight,
    upperThreshold: 0,
    lowerThreshold: 0,
    activeConnections: counts.active,
    inactiveConnections: counts.inactive,
    persistentConnections: 0,
    stats: zeroStats(),
  };
}

function outcome(mode: Policy['mode'], weight: number, endpoint: Endpoint, counts: Counts, bound: number, key = TCP, stale = false) {
  const policy: Policy = bound === 0 ? { mode } : { mode, maxDrainSeconds: 30 };
  const since = bound === 0 ? NOW : bound === 1 ? NOW - 10_000 : NOW - 60_000;
  const endpoints: DesiredEndpoint[] =
    endpoint === 'gone' ? [] : [{ address: ADDRESS, port: 8080, condition: endpoint }];
  const decision = decide(
    { service: { namespace: 'shop', name: 'web' }, key, endpoints },
    [destination(weight, counts)],
    policy,
    NOW,
    new Map([[KEY, since]]),
    new Set(stale ? [`${ADDRESS}:8080`] : []),
  );
  assert.ok(decision.deletions.length + decision.followUps.length <= 1, 'one verdict per real server');
  let result: Outcome = 'keep';
  const deleted = decision.deletions[0];
  const followed = decision.followUps[0];
  if (deleted) result = deleted.reason;
  else if (followed) result = followed.kind === 'draining' ? 'drain' : 'await-zero';
  return result;
}

/** One test per connection count of a row, comparing its outcome under each drain bound. */
function row(title: string, connections: Connections, expected: Outcome[], at: (counts: Counts, bound: number) => Outcome) {
  for (const counts of COUNTS[connections]) {
    it(`${title}, ${counts.active} active / ${counts.inactive} inactive`, () => {
      const label = (outcomes: Outcome[]) => Object.fromEntries(BOUNDS.map((b, i) => [b, outcomes[i]]));
      assert.deepEqual(label(BOUNDS.map((_, bound) => at(counts, bound))), label(expected));
    });
  }
}

describe('decide: every policy x endpoint x connections x weight x drain bound', () => {
  for (const [mode, weight, endpoint, connections, expected] of matrix)
    row(`${mode}: weight ${weight}, endpoint ${endpoint}`, connections, expected, (counts, bound) => outcome(mode, weight, endpoint, counts, bound));

  for (const [mode, endpoint, connections, expected] of staleMatrix)
    row(`${mode}: weight 1 with a stale kube-proxy entry, endpoint ${endpoint}`, connections, expected, (counts, bound) =>
      outcome(mode, 1, endpoint, counts, bound, TCP, true),
    );

  it('a stale kube-proxy entry changes nothing at weight 0', () => {
    for (const [mode, weight, endpoint, connections] of matrix.filter(([, w]) => w === 0))
      for (const counts of COUNTS[connections])
        for (const bound of [0, 1, 2])
          assert.equal(outcome(mode, weight, endpoint, counts, bound, TCP, true), outcome(mode, weight, endpoint, counts, bound), `${mode} ${endpoint}`);
  });

  it('the matrix covers every combination once', () => {
    const seen = new Set(matrix.map(([mode, weight, endpoint]) => `${mode} ${weight} ${endpoint}`));
    assert.equal(seen.size, 3 * 2 * 4);
    assert.equal(new Set(staleMatrix.map(([mode, endpoint]) => `${mode} ${endpoint}`)).size, 3 * 4);
  });

  it('drain: a UDP real server of a terminating endpoint goes at once (every UDP entry is inactive)', () => {
    assert.equal(outcome('drain', 0, 'terminating-serving', { active: 0, inactive: 40 }, 0, UDP), 'endpoint-drained');
  });

  it('drain: the most serving listing of an address wins, as under graceful', () => {
    const decision = decide(
      {
        service: { namespace: 'shop', name: 'web' },
        key: TCP,
        endpoints: [
          { address: ADDRESS, port: 8080, condition: 'not-serving' },
          { address: ADDRESS, port: 8080, condition: 'ready' },
        ],
      },
      [destination(0, { active: 0, inactive: 3 })],
      { mode: 'drain' },
      NOW,
      new Map(),
    );
    assert.deepEqual([decision.deletions, decision.followUps], [[], []]);
  });

  it("a Service's own policy wins over the agent's", () => {
    const decision = decide(
      { service: { namespace: 'shop', name: 'web' }, key: TCP, endpoints: [{ address: ADDRESS, port: 8080, condition: 'terminating-serving' }], policy: { mode: 'drain' } },
      [destination(0, { active: 1, inactive: 0 })],
      { mode: 'immediate' },
      NOW,
      new Map(),
    );
    assert.deepEqual([decision.deletions, decision.followUps], [[], [{ kind: 'draining', key: KEY }]]);
  });

  it('a real server listed twice in one dump is followed once', () => {
    const decision = decide(
      { service: { namespace: 'shop', name: 'web' }, key: TCP, endpoints: [] },
      [destination(1, { active: 0, inactive: 0 }), destination(1, { active: 0, inactive: 0 })],
      { mode: 'drain' },
      NOW,
      new Map(),
    );
    assert.deepEqual(decision.followUps, [{ kind: 'awaiting-zero', key: KEY }]);
  });
});
