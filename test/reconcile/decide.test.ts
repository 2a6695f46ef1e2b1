import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Destination, ServiceKey } from '../../src/ipvs/types.js';
import { decide, type DeletionReason, type ZeroWeightSince } from '../../src/reconcile/decide.js';
import { destinationKeyString } from '../../src/reconcile/keys.js';
import { zeroStats } from '../support/fake-ipvs.js';
import type { DesiredEndpoint, DesiredVirtualService, EndpointCondition, Policy } from '../../src/reconcile/types.js';

const VS4: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.0.10', port: 80 };
const VS6: ServiceKey = { kind: 'address', family: 'ipv6', protocol: 'tcp', address: 'fd00:96::10', port: 80 };
const NOW = 1_000_000;

function dest(address: string, weight: number, port = 8080): Destination {
  return {
    family: address.includes(':') ? 'ipv6' : 'ipv4',
    address,
    port,
    forwarding: 'masq',
    weight,
    upperThreshold: 0,
    lowerThreshold: 0,
    activeConnections: 1,
    inactiveConnections: 7,
    persistentConnections: 0,
    stats: zeroStats(),
  };
}

function ep(address: string, condition: EndpointCondition, port = 8080): DesiredEndpoint {
  return { address, port, condition };
}

function desired(endpoints: DesiredEndpoint[], key: ServiceKey = VS4): DesiredVirtualService {
  return { service: { namespace: 'shop', name: 'web' }, key, endpoints };
}

function keyOf(address: string, port = 8080): string {
  return destinationKeyString({ family: address.includes(':') ? 'ipv6' : 'ipv4', address, port });
}

const GRACEFUL: Policy = { mode: 'graceful' };
const IMMEDIATE: Policy = { mode: 'immediate' };
const GRACEFUL_30S: Policy = { mode: 'graceful', maxDrainSeconds: 30 };

interface Case {
  name: string;
  policy: Policy;
  endpoints: DesiredEndpoint[];
  destinations: Destination[];
  since?: Array<[string, number]>;
  key?: ServiceKey;
  deleted: Array<[address: string, reason: DeletionReason]>;
}

const cases: Case[] = [
  // graceful
  {
    name: 'graceful: weight 0, address in no slice → endpoint-gone',
    policy: GRACEFUL,
    endpoints: [ep('10.240.0.2', 'ready')],
    destinations: [dest('10.240.0.1', 0), dest('10.240.0.2', 1)],
    deleted: [['10.240.0.1', 'endpoint-gone']],
  },
  {
    name: 'graceful: weight 0, listed but not serving → endpoint-not-serving',
    policy: GRACEFUL,
    endpoints: [ep('10.240.0.1', 'not-serving')],
    destinations: [dest('10.240.0.1', 0)],
    deleted: [['10.240.0.1', 'endpoint-not-serving']],
  },
  {
    name: 'graceful: weight 0, terminating but serving → kept',
    policy: GRACEFUL,
    endpoints: [ep('10.240.0.1', 'terminating-serving')],
    destinations: [dest('10.240.0.1', 0)],
    deleted: [],
  },
  {
    name: 'graceful: weight 0 but ready (kube-proxy lagging) → kept',
    policy: GRACEFUL,
    endpoints: [ep('10.240.0.1', 'ready')],
    destinations: [dest('10.240.0.1', 0)],
    deleted: [],
  },
  {
    name: 'graceful: weight > 0 in no slice → kept',
    policy: GRACEFUL,
    endpoints: [],
    destinations: [dest('10.240.0.1', 1)],
    deleted: [],
  },
  {
    name: 'graceful: address back in another slice as ready beside its old not-serving entry → kept',
    policy: GRACEFUL,
    endpoints: [ep('10.240.0.1', 'not-serving'), ep('10.240.0.1', 'ready')],
    destinations: [dest('10.240.0.1', 0)],
    deleted: [],
  },
  {
    name: 'graceful: reappeared address listed serving before a stale not-serving entry → kept',
    policy: GRACEFUL,
    endpoints: [ep('10.240.0.1', 'terminating-serving'), ep('10.240.0.1', 'not-serving')],
    destinations: [dest('10.240.0.1', 0)],
    deleted: [],
  },
  {
    name: 'graceful: same address on another port does not back the destination → endpoint-gone',
    policy: GRACEFUL,
    endpoints: [ep('10.240.0.1', 'ready', 9090)],
    destinations: [dest('10.240.0.1', 0)],
    deleted: [['10.240.0.1', 'endpoint-gone']],
  },
  {
    name: 'graceful: service scaled to 0 → every weight-0 goes, weight > 0 stays',
    policy: GRACEFUL,
    endpoints: [],
    destinations: [dest('10.240.0.1', 0), dest('10.240.0.2', 5), dest('10.240.0.3', 0)],
    deleted: [
      ['10.240.0.1', 'endpoint-gone'],
      ['10.240.0.3', 'endpoint-gone'],
    ],
  },
  {
    name: 'graceful: a negative weight is not zero → kept',
    policy: GRACEFUL,
    endpoints: [],
    destinations: [dest('10.240.0.1', -1)],
    deleted: [],
  },
  // immediate
  {
    name: 'immediate: every weight-0 goes, served or not; weight > 0 stays even when gone',
    policy: IMMEDIATE,
    endpoints: [
      ep('10.240.0.1', 'ready'),
      ep('10.240.0.2', 'terminating-serving'),
      ep('10.240.0.3', 'not-serving'),
      ep('10.240.0.5', 'ready'),
    ],
    destinations: [
      dest('10.240.0.1', 0),
      dest('10.240.0.2', 0),
      dest('10.240.0.3', 0),
      dest('10.240.0.4', 0),
      dest('10.240.0.5', 1),
      dest('10.240.0.6', 2),
      dest('10.240.0.7', -1),
    ],
    deleted: [
      ['10.240.0.1', 'immediate'],
      ['10.240.0.2', 'immediate'],
      ['10.240.0.3', 'immediate'],
      ['10.240.0.4', 'immediate'],
    ],
  },
  {
    name: 'immediate: the policy, not the bound, is the reason',
    policy: { mode: 'immediate', maxDrainSeconds: 30 },
    endpoints: [ep('10.240.0.1', 'terminating-serving')],
    destinations: [dest('10.240.0.1', 0)],
    since: [[keyOf('10.240.0.1'), NOW - 60_000]],
    deleted: [['10.240.0.1', 'immediate']],
  },
  // maxDrainSeconds
  {
    name: 'max drain: first seen at weight 0 now → kept',
    policy: GRACEFUL_30S,
    endpoints: [ep('10.240.0.1', 'terminating-serving')],
    destinations: [dest('10.240.0.1', 0)],
    deleted: [],
  },
  {
    name: 'max drain: exactly at the bound → kept',
    policy: GRACEFUL_30S,
    endpoints: [ep('10.240.0.1', 'terminating-serving')],
    destinations: [dest('10.240.0.1', 0)],
    since: [[keyOf('10.240.0.1'), NOW - 30_000]],
    deleted: [],
  },
  {
    name: 'max drain: past the bound while serving → max-drain-exceeded',
    policy: GRACEFUL_30S,
    endpoints: [ep('10.240.0.1', 'terminating-serving'), ep('10.240.0.2', 'ready')],
    destinations: [dest('10.240.0.1', 0), dest('10.240.0.2', 0)],
    since: [
      [keyOf('10.240.0.1'), NOW - 30_001],
      [keyOf('10.240.0.2'), NOW - 120_000],
    ],
    deleted: [
      ['10.240.0.1', 'max-drain-exceeded'],
      ['10.240.0.2', 'max-drain-exceeded'],
    ],
  },
  {
    name: 'max drain: a gone endpoint is reported as gone, not as overdue',
    policy: GRACEFUL_30S,
    endpoints: [],
    destinations: [dest('10.240.0.1', 0)],
    since: [[keyOf('10.240.0.1'), NOW - 60_000]],
    deleted: [['10.240.0.1', 'endpoint-gone']],
  },
  {
    name: 'max drain: never a destination above weight 0, whatever the stale record says',
    policy: GRACEFUL_30S,
    endpoints: [ep('10.240.0.1', 'terminating-serving')],
    destinations: [dest('10.240.0.1', 3)],
    since: [[keyOf('10.240.0.1'), NOW - 600_000]],
    deleted: [],
  },
  // IPv6
  {
    name: 'IPv6: an endpoint spelled differently still backs the destination → kept',
    policy: GRACEFUL,
    key: VS6,
    endpoints: [ep('FD00:240:0:0::11', 'terminating-serving'), ep('fd00:240:0::12', 'ready')],
    destinations: [dest('fd00:240::11', 0), dest('fd00:240::12', 0), dest('fd00:240::13', 0)],
    deleted: [['fd00:240::13', 'endpoint-gone']],
  },
  {
    name: 'IPv6: drain clock found under another spelling of the address → max-drain-exceeded',
    policy: GRACEFUL_30S,
    key: VS6,
    endpoints: [ep('fd00:240::11', 'terminating-serving')],
    destinations: [dest('fd00:240:0:0:0:0:0:11', 0)],
    since: [[keyOf('fd00:240::11'), NOW - 31_000]],
    deleted: [['fd00:240:0:0:0:0:0:11', 'max-drain-exceeded']],
  },
  // dumps are not snapshots
  {
    name: 'a repeated weight-0 entry is deleted once',
    policy: IMMEDIATE,
    endpoints: [],
    destinations: [dest('10.240.0.1', 0), dest('10.240.0.1', 0)],
    deleted: [['10.240.0.1', 'immediate']],
  },
  {
    name: 'a repeated entry seen once above weight 0 is kept',
    policy: IMMEDIATE,
    endpoints: [],
    destinations: [dest('10.240.0.1', 0), dest('10.240.0.1', 4)],
    deleted: [],
  },
];

describe('decide', () => {
  for (const c of cases) {
    it(c.name, () => {
      const { deletions } = decide(desired(c.endpoints, c.key), c.destinations, c.policy, NOW, new Map(c.since));
      assert.deepEqual(
        deletions.map((d) => [d.destination.address, d.reason]),
        c.deleted,
      );
    });
  }

  it('a deletion carries the destination, the service, the mode and the drain time', () => {
    const since = new Map([[keyOf('10.240.0.1'), NOW - 5_000]]);
    const { deletions } = decide(desired([]), [dest('10.240.0.1', 0)], GRACEFUL, NOW, since);
    assert.deepEqual(deletions, [
      {
        service: { namespace: 'shop', name: 'web' },
        serviceKey: VS4,
        destination: {
          family: 'ipv4',
          address: '10.240.0.1',
          port: 8080,
          weight: 0,
          activeConnections: 1,
          inactiveConnections: 7,
        },
        mode: 'graceful',
        reason: 'endpoint-gone',
        zeroWeightForMs: 5_000,
      },
    ]);
  });

  it('tracks exactly the destinations present at weight 0, keeping their first sighting', () => {
    const since: ZeroWeightSince = new Map([
      [keyOf('10.240.0.1'), NOW - 10_000], // still at 0: clock kept
      [keyOf('10.240.0.2'), NOW - 10_000], // back above 0: dropped
      [keyOf('10.240.0.9'), NOW - 10_000], // no longer in the kernel: dropped
    ]);
    const before = new Map(since);
    const result = decide(
      desired([ep('10.240.0.1', 'terminating-serving'), ep('10.240.0.2', 'ready'), ep('10.240.0.3', 'ready')]),
      [dest('10.240.0.1', 0), dest('10.240.0.2', 1), dest('10.240.0.3', 0)],
      GRACEFUL_30S,
      NOW,
      since,
    );
    assert.deepEqual(
      result.zeroWeightSince,
      new Map([
        [keyOf('10.240.0.1'), NOW - 10_000],
        [keyOf('10.240.0.3'), NOW],
      ]),
    );
    assert.deepEqual(since, before, 'the caller’s record is not mutated');
  });

  it('keeps tracking what it tells the caller to delete, until the kernel stops listing it', () => {
    const result = decide(desired([]), [dest('10.240.0.1', 0)], GRACEFUL, NOW, new Map());
    assert.deepEqual(result.zeroWeightSince, new Map([[keyOf('10.240.0.1'), NOW]]));
    assert.deepEqual(decide(desired([]), [], GRACEFUL, NOW + 1, result.zeroWeightSince).zeroWeightSince, new Map());
  });

  it('restarts the drain clock when the weight comes back above 0', () => {
    const endpoints = [ep('10.240.0.1', 'terminating-serving')];
    const step = (now: number, weight: number, since: ZeroWeightSince) =>
      decide(desired(endpoints), [dest('10.240.0.1', weight)], GRACEFUL_30S, now, since);

    const drained = step(NOW, 0, new Map());
    const revived = step(NOW + 20_000, 5, drained.zeroWeightSince);
    assert.deepEqual(revived.zeroWeightSince, new Map());
    const drainedAgain = step(NOW + 40_000, 0, revived.zeroWeightSince);
    const later = step(NOW + 65_000, 0, drainedAgain.zeroWeightSince);
    assert.deepEqual(later.deletions, [], '25 s since the weight went back to 0, not 65 s');
    const overdue = step(NOW + 70_001, 0, later.zeroWeightSince);
    assert.deepEqual(
      overdue.deletions.map((d) => d.reason),
      ['max-drain-exceeded'],
    );
  });

  it('refuses to decide on an address that is not an IP', () => {
    assert.throws(
      () => decide(desired([ep('web-0.example', 'ready')]), [dest('10.240.0.1', 0)], GRACEFUL, NOW, new Map()),
      TypeError,
    );
  });
});
