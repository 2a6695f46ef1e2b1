// Per-Service policy annotations: what overrides the agent's default, and how invalid values are reported.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { policyAnnotations, ServicePolicies, servicePolicy, type AnnotationProblem } from '../../src/k8s/annotations.js';
import { toServiceRecord } from '../../src/k8s/records.js';
import type { Policy } from '../../src/reconcile/types.js';

const graceful300: Policy = { mode: 'graceful', maxDrainSeconds: 300 };

describe('servicePolicy', () => {
  const table: Array<[Record<string, string> | undefined, unknown, string[]]> = [
    [undefined, { kind: 'policy', policy: graceful300 }, []],
    [{ 'ipvs-janitor/policy': 'immediate' }, { kind: 'policy', policy: { mode: 'immediate', maxDrainSeconds: 300 } }, []],
    [{ 'ipvs-janitor/policy': 'drain' }, { kind: 'policy', policy: { mode: 'drain', maxDrainSeconds: 300 } }, []],
    [{ 'ipvs-janitor/policy': ' graceful ' }, { kind: 'policy', policy: graceful300 }, []],
    [{ 'ipvs-janitor/policy': 'skip', 'ipvs-janitor/max-drain-seconds': '5' }, { kind: 'skip' }, []],
    [{ 'ipvs-janitor/max-drain-seconds': '30' }, { kind: 'policy', policy: { mode: 'graceful', maxDrainSeconds: 30 } }, []],
    [{ 'ipvs-janitor/max-drain-seconds': '0' }, { kind: 'policy', policy: { mode: 'graceful' } }, []],
    [{ 'ipvs-janitor/policy': 'Immediate' }, { kind: 'policy', policy: graceful300 }, ['ipvs-janitor/policy=Immediate']],
    [{ 'ipvs-janitor/max-drain-seconds': '-1' }, { kind: 'policy', policy: graceful300 }, ['ipvs-janitor/max-drain-seconds=-1']],
    [{ 'ipvs-janitor/max-drain-seconds': '1.5' }, { kind: 'policy', policy: graceful300 }, ['ipvs-janitor/max-drain-seconds=1.5']],
    [{ 'ipvs-janitor/max-drain-seconds': '5m' }, { kind: 'policy', policy: graceful300 }, ['ipvs-janitor/max-drain-seconds=5m']],
    [
      { 'ipvs-janitor/policy': 'fast', 'ipvs-janitor/max-drain-seconds': '60' },
      { kind: 'policy', policy: { mode: 'graceful', maxDrainSeconds: 60 } },
      ['ipvs-janitor/policy=fast'],
    ],
  ];
  for (const [annotations, want, problems] of table) {
    it(`${JSON.stringify(annotations)} → ${JSON.stringify(want)}`, () => {
      const got = servicePolicy(policyAnnotations(annotations), graceful300);
      assert.deepEqual(got.policy, want);
      assert.deepEqual(got.problems.map((p) => `${p.annotation}=${p.value}`), problems);
    });
  }

  it('the slim Service record keeps the two annotations and nothing else of metadata.annotations', () => {
    const record = toServiceRecord({
      metadata: {
        namespace: 'shop',
        name: 'web',
        annotations: { 'ipvs-janitor/policy': 'immediate', 'kubectl.kubernetes.io/last-applied-configuration': 'x'.repeat(2000) },
      },
      spec: { clusterIPs: ['10.96.0.10'], ports: [{ port: 80 }] },
    });
    assert.deepEqual(record.policyAnnotations, { policy: 'immediate' });
  });
});

describe('ServicePolicies', () => {
  it('reports an invalid value once per Service and value, again when it changes, forgets it once fixed', () => {
    const reported: Array<[string, AnnotationProblem]> = [];
    const policies = new ServicePolicies({ mode: 'graceful' }, (service, problem) => reported.push([service, problem]));
    const svc = (policy?: string) => ({ namespace: 'shop', name: 'web', policyAnnotations: policyAnnotations(policy ? { 'ipvs-janitor/policy': policy } : undefined) });
    for (let i = 0; i < 3; i++) assert.deepEqual(policies.of(svc('aggressive')), { kind: 'policy', policy: { mode: 'graceful' } });
    assert.equal(reported.length, 1);
    assert.deepEqual(reported[0], ['shop/web', { annotation: 'ipvs-janitor/policy', value: 'aggressive', problem: 'use graceful, drain, immediate, skip' }]);
    policies.of(svc('fast'));
    assert.equal(reported.length, 2);
    assert.deepEqual(policies.of(svc('immediate')), { kind: 'policy', policy: { mode: 'immediate' } });
    policies.of(svc('fast'));
    assert.equal(reported.length, 3, 'reported again after it was fixed and broken anew');
  });
});
