// The demo's pure parts on the host: the scenes and the objects of each rollout phase (read back through the
// agent's own mapping), the aggregation of request records, nginx's and kube-proxy's logs, the result parser and
// the table.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { parseRunOptions } from '../../src/cli/options.js';
import { policyAnnotations, servicePolicy } from '../../src/k8s/annotations.js';
import { desiredVirtualServices } from '../../src/k8s/mapping.js';
import { toServiceRecord, toSliceRecord } from '../../src/k8s/records.js';
import { addressPortKey } from '../../src/reconcile/keys.js';
import type { RealServerLogLine } from '../support/kube-proxy.js';
import { parseAccessLog, type AccessLogEntry } from '../support/nginx.js';
import {
  describeActiveZero,
  describeKubeProxy,
  describeRemoval,
  formatReport,
  formatTable,
  parseDemoResult,
  summarize,
  type DemoResult,
  type RequestRecord,
  type ScenarioMarks,
  type ScenarioResult,
} from './report.js';
import type { CounterChange } from './watcher.js';
import {
  AGENT_DEFAULT_POLICY,
  agentArgs,
  CLIENT_POD,
  DEFAULT_TIMINGS,
  demoScenes,
  selectScenes,
  EMULATION_TEXT,
  expectedWeights,
  flipsOnRemoval,
  kubeProxyRealServerName,
  NGINX_POD,
  PHASES,
  scene,
  serviceObject,
  sliceObject,
  sysctlsFor,
  USER_POD,
  virtualServiceKey,
  type Phase,
} from './scene.js';

describe('scenes', () => {
  const scenes = demoScenes();

  it('every emulation with every policy once, and the early death for graceful and drain on the old kernel; kernel by kernel, no agent first', () => {
    assert.deepEqual(
      scenes.map((s) => `${s.index} ${s.emulation} ${s.policy} ${s.death}`),
      [
        '1 old-kernel none with-slice-update',
        '2 old-kernel immediate with-slice-update',
        '3 old-kernel graceful with-slice-update',
        '4 old-kernel graceful before-slice-update',
        '5 old-kernel drain with-slice-update',
        '6 old-kernel drain before-slice-update',
        '7 new-kernel none with-slice-update',
        '8 new-kernel immediate with-slice-update',
        '9 new-kernel graceful with-slice-update',
        '10 new-kernel drain with-slice-update',
      ],
    );
  });

  it('each Service names its scene\'s policy for the one agent, skip for the scenes without one', () => {
    const annotated = scenes.map((s) => {
      const annotations = (serviceObject(s).metadata as { annotations: Record<string, string> }).annotations;
      const { policy } = servicePolicy(policyAnnotations(annotations), { mode: AGENT_DEFAULT_POLICY });
      return `${s.policy} ${policy.kind === 'skip' ? 'skip' : policy.policy.mode}`;
    });
    assert.deepEqual(annotated, scenes.map((s) => `${s.policy} ${s.policy === 'none' ? 'skip' : s.policy}`));
  });

  it('--scenes picks scenes by number and names what is not one', () => {
    assert.deepEqual(selectScenes('8, 10'), [8, 10]);
    assert.throws(() => selectScenes('11'), /--scenes 11: "11" is not a scene number \(1-10\)/);
    assert.throws(() => selectScenes('drain'), /"drain" is not a scene number/);
    assert.throws(() => selectScenes(''), /"" is not a scene number/);
  });

  it('no two scenes (or a scene and the client, nginx, its users) share a ClusterIP, a route, a pod name or address', () => {
    const pods = [CLIENT_POD, NGINX_POD, USER_POD, ...scenes.flatMap((s) => [s.pods.old, s.pods.new])];
    const ips = scenes.map((s) => s.clusterIP);
    for (const values of [ips, scenes.map((s) => s.nginxPrefix), pods.map((p) => p.name), pods.map((p) => p.ipv4), pods.map((p) => `${p.index}`)])
      assert.equal(new Set(values).size, values.length, String(values));
    for (const ip of ips) assert.match(ip, /^10\.96\.\d+\.\d+$/, 'inside the API server\'s --service-cluster-ip-range 10.96.0.0/16');
    for (const p of pods) assert.match(p.name, /^[a-z0-9][a-z0-9-]{0,11}$/, 'a netns.ts pod name');
  });
});

/** The agent's view of the demo's objects: "address:port condition" per endpoint of each virtual service. */
function agentView(s: ReturnType<typeof scene>, phase: Phase): string[] {
  const service = toServiceRecord(serviceObject(s) as unknown as V1Service);
  const vss = desiredVirtualServices(service, [toSliceRecord(sliceObject(s, phase) as unknown as V1EndpointSlice)], []);
  assert.equal(vss.length, 1);
  assert.deepEqual(vss[0]!.key, virtualServiceKey(s));
  assert.deepEqual(vss[0]!.service, { namespace: 'demo', name: s.serviceName });
  return vss[0]!.endpoints.map((e) => `${addressPortKey(e.address, e.port)} ${e.condition}`);
}

describe('rollout phases', () => {
  const s = scene(3, 'graceful', 'old-kernel');
  const old = `${s.pods.old.ipv4}:8080`;
  const neu = `${s.pods.new.ipv4}:8080`;

  it('the agent reads each phase\'s slice as the rollout means it', () => {
    assert.deepEqual(
      PHASES.map((phase) => [phase, agentView(s, phase)]),
      [
        ['old-ready', [`${old} ready`]],
        ['new-ready', [`${old} ready`, `${neu} ready`]],
        ['old-terminating', [`${old} terminating-serving`, `${neu} ready`]],
        ['old-gone', [`${neu} ready`]],
      ],
    );
  });

  it('slices carry the Service label, IPv4, the named target port and all three conditions', () => {
    const slice = sliceObject(s, 'old-terminating') as unknown as V1EndpointSlice;
    assert.equal(slice.metadata?.labels?.['kubernetes.io/service-name'], 'web-3');
    assert.equal(slice.addressType, 'IPv4');
    assert.deepEqual(slice.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
    assert.equal(slice.metadata?.labels?.['endpointslice.kubernetes.io/managed-by'], 'ipvs-janitor-tests', 'no "/": the API validates it');
    assert.deepEqual(slice.endpoints[0]?.conditions, { ready: false, serving: true, terminating: true });
    assert.deepEqual(slice.endpoints[1]?.conditions, { ready: true, serving: true, terminating: false });
    // One slice object through the rollout: each phase replaces it, as the controller updates it.
    assert.equal(new Set(PHASES.map((p) => (sliceObject(s, p).metadata as { name: string }).name)).size, 1);
  });

  it('what the kernel shows once kube-proxy applied a phase: new at weight 1, the old one at 1 until terminating', () => {
    assert.deepEqual(expectedWeights(s, 'old-ready'), { [s.pods.old.ipv4]: 1 });
    assert.deepEqual(expectedWeights(s, 'new-ready'), { [s.pods.old.ipv4]: 1, [s.pods.new.ipv4]: 1 });
    assert.deepEqual(expectedWeights(s, 'old-terminating'), { [s.pods.new.ipv4]: 1 });
    assert.equal(kubeProxyRealServerName(s, s.pods.old), `10.96.100.3:80/TCP/${s.pods.old.ipv4}:8080`);
  });
});

describe('kernel emulations and agent flags', () => {
  it('old kernel: reuse mode 0 and expire_nodest_conn 0 over kube-proxy\'s values; new kernel: kube-proxy\'s own', () => {
    const kubeProxy = { conntrack: 1, expireQuiescentTemplate: 1, connReuseMode: 1, expireNodestConn: 1 };
    const values = (e: 'old-kernel' | 'new-kernel') => Object.fromEntries(sysctlsFor(e, kubeProxy).map((x) => [x.name, x.value]));
    assert.deepEqual(values('old-kernel'), { conntrack: 1, expireQuiescentTemplate: 1, connReuseMode: 0, expireNodestConn: 0 });
    assert.deepEqual(values('new-kernel'), kubeProxy);
    assert.deepEqual(Object.fromEntries(sysctlsFor('new-kernel', { ...kubeProxy, conntrack: 0 }).map((x) => [x.name, x.value])).conntrack, 0, 'as kube-proxy left it');
    assert.equal(flipsOnRemoval('old-kernel'), true);
    assert.equal(flipsOnRemoval('new-kernel'), false);
    assert.match(EMULATION_TEXT['old-kernel'], /expire_nodest_conn stays 0 while the old real server exists/);
  });

  it('the agent\'s flags parse as the run command parses them', () => {
    const [command, ...flags] = agentArgs('/tmp/kubeconfig');
    assert.equal(command, 'run');
    const options = parseRunOptions(flags, {});
    assert.deepEqual(
      [options.policy, options.kubeconfig, options.resyncPeriodMs, options.metricsAddress, options.nodePortAddresses],
      [{ mode: 'graceful' }, '/tmp/kubeconfig', 60_000, '127.0.0.1:0', ['127.0.0.1']],
    );
  });
});

const marks: ScenarioMarks = { terminatingAt: 10_000, inFlightEndedAt: 13_000, sliceRemovedAt: 16_000, deathAt: 16_050 };
const short = (startedAt: number, error?: string): RequestRecord => ({
  kind: 'short',
  startedAt,
  endedAt: startedAt + 5,
  pod: 'd1-old',
  ...(error ? { error } : {}),
});

describe('summarize', () => {
  const records: RequestRecord[] = [
    short(1000),
    short(12_000, 'TIMEOUT'), // failed, but before the death
    short(16_049),
    short(16_050, 'EHOSTUNREACH'),
    short(20_000, 'TIMEOUT'),
    short(21_000),
    { kind: 'long', startedAt: 9000, endedAt: 13_000, pod: 'd1-old' },
    { kind: 'long', startedAt: 9000, endedAt: 11_000, pod: 'd1-old', error: 'ECONNRESET' },
  ];
  const base = {
    policy: 'immediate',
    emulation: 'old-kernel',
    death: 'with-slice-update',
    records,
    marks,
    removedByAgent: undefined,
    portsExhausted: 7,
    nginx: [] as AccessLogEntry[],
    kubeProxy: [] as RealServerLogLine[],
    counters: [] as CounterChange[],
  } as const;

  it('counts short requests overall and those started once the pod began dying; long ones apart', () => {
    const r = summarize(base);
    assert.deepEqual(
      { ...r, errors: { ...r.errors } },
      {
        policy: 'immediate',
        emulation: 'old-kernel',
        death: 'with-slice-update',
        requests: 6,
        failed: 3,
        requestsAfterDeath: 3,
        failedAfterDeath: 2,
        lastFailureAfterDeathMs: 3950,
        afterRemoval: null,
        errors: { TIMEOUT: 2, EHOSTUNREACH: 1, ECONNRESET: 1 },
        longRequests: 2,
        longBroken: 1,
        realServerRemoval: null,
        portsExhausted: 7,
        nginx: { requests: 0, requestsAfterDeath: 0, badGatewayAfterDeath: 0, failedAfterDeath: 0, statuses: {} },
        kubeProxy: { weightZeroAfterMs: null, gracefulList: false, deletedAfterSliceRemovalMs: null, deleteErrors: 0 },
        activeZero: null,
      },
    );
  });

  it('counts nginx\'s 502s (and other failures) among the requests it finished once the pod was dead', () => {
    const log = parseAccessLog(
      [
        '15.000 200 "/s1/" 10.96.100.1:80 200 0.004',
        '16.050 502 "/s1/" 10.96.100.1:80 502 0.001',
        '17.000 504 "/s1/" 10.96.100.1:80 504 1.001',
        '18.000 200 "/s1/" 10.96.100.1:80 200 0.003',
        'not a line nginx wrote',
      ].join('\n'),
    );
    assert.deepEqual(log[1], { at: 16_050, status: 502, prefix: 's1', upstream: '10.96.100.1:80', upstreamStatus: '502', requestSeconds: 0.001 });
    assert.deepEqual(summarize({ ...base, nginx: log }).nginx, {
      requests: 4,
      requestsAfterDeath: 3,
      badGatewayAfterDeath: 1,
      failedAfterDeath: 2,
      statuses: { 200: 2, 502: 1, 504: 1 },
    });
  });

  it('reads what kube-proxy did with the old real server from its log and the watcher; kube-proxy removed it when it says so', () => {
    const rs = '10.96.100.1:80/TCP/10.240.0.22:8080';
    const lines: RealServerLogLine[] = [
      { at: 10_500, message: 'Adding real server to graceful delete real server list', realServer: rs },
      { at: 76_000, message: 'Deleting real server', realServer: rs },
    ];
    const r = summarize({ ...base, marks: { ...marks, weightZeroAt: 10_400, realServerGoneAt: 76_010 }, kubeProxy: lines });
    assert.deepEqual(r.kubeProxy, { weightZeroAfterMs: 400, gracefulList: true, deletedAfterSliceRemovalMs: 60_000, deleteErrors: 0 });
    assert.equal(r.realServerRemoval?.by, 'kube-proxy');
    assert.equal(r.realServerRemoval?.afterWeightZeroMs, 65_610, 'from the weight 0 the watcher saw');
    assert.equal(describeKubeProxy(r.kubeProxy), 'weight 0 0.40 s after the slice said terminating; graceful list; deleted it itself 60.0 s after the endpoint left the slice');
    const afterAgent = summarize({
      ...base,
      marks: { ...marks, realServerGoneAt: 16_300 },
      removedByAgent: 'agent (endpoint-gone)',
      kubeProxy: [lines[0]!, { at: 70_000, message: 'Error in deleting real server', realServer: rs }],
    });
    assert.equal(afterAgent.realServerRemoval?.by, 'agent (endpoint-gone)');
    assert.match(describeKubeProxy(afterAgent.kubeProxy), /^never saw weight 0; graceful list; 1 "Error in deleting real server"$/);
  });

  it('times the real server\'s removal from weight 0 and from the slice, negative when it went first', () => {
    const seen = { ...marks, weightZeroAt: 10_020 };
    const before = summarize({ ...base, marks: { ...seen, realServerGoneAt: 10_040 }, removedByAgent: 'agent (immediate)' });
    assert.deepEqual(before.realServerRemoval, { afterWeightZeroMs: 20, afterSliceRemovalMs: -5960, by: 'agent (immediate)' });
    const after = summarize({ ...base, marks: { ...seen, realServerGoneAt: 16_035 } });
    assert.deepEqual(after.realServerRemoval, { afterWeightZeroMs: 6015, afterSliceRemovalMs: 35, by: '?' });
  });

  it('a removal the watcher never saw at weight 0 is not timed from the terminating slice as if from weight 0', () => {
    // Seen in a demo run: kube-proxy's weight 0 and the agent's deletion fell between two reads, and the table said
    // "54.8 s after weight 0", the time since the slice said terminating.
    const r = summarize({ ...base, marks: { ...marks, realServerGoneAt: 10_040 }, removedByAgent: 'agent (immediate)' });
    assert.equal(r.realServerRemoval?.afterWeightZeroMs, null);
    assert.equal(describeRemoval(r.realServerRemoval), 'before the watcher\'s next read of weight 0, before the endpoint left the slice; by agent (immediate)');
  });

  it('what is left once the pod is dead and the real server gone: requests started after both', () => {
    assert.deepEqual(summarize({ ...base, marks: { ...marks, realServerGoneAt: 10_040 } }).afterRemoval, { requests: 3, failed: 2 });
    assert.deepEqual(summarize({ ...base, marks: { ...marks, realServerGoneAt: 20_500 } }).afterRemoval, { requests: 1, failed: 0 });
    const flipped = { ...marks, realServerGoneAt: 16_040, emulationCompleteAt: 20_500 };
    assert.deepEqual(summarize({ ...base, marks: flipped }).afterRemoval, { requests: 1, failed: 0 }, 'the emulation counts once it is complete');
  });

  it('ActiveConn 0 between the in-flight end and the death (or an earlier removal), time-weighted from the changes', () => {
    // Weight 0 at 10.4 s; slow requests active until 13 s; then newcomers come and go; the pod dies at 16.05 s.
    const counters: CounterChange[] = [[10_400, 3, 5], [13_000, 0, 8], [13_500, 1, 8], [14_000, 0, 9], [15_000, 2, 9], [17_000, 0, 11]];
    const r = summarize({ ...base, counters });
    assert.deepEqual(r.activeZero, { windowMs: 3050, zeroShare: 1500 / 3050, firstZeroMs: 0 });
    assert.equal(describeActiveZero(r.activeZero), '49% of 3.05 s, first at +0.00 s');
    // Removed by the agent at 14.2 s: the window ends there.
    const drained = summarize({ ...base, counters, marks: { ...marks, realServerGoneAt: 14_200 } });
    assert.deepEqual(drained.activeZero, { windowMs: 1200, zeroShare: 700 / 1200, firstZeroMs: 0 });
    // Newcomers always active: never 0 in the window.
    const trap = summarize({ ...base, counters: [[10_400, 3, 5], [13_000, 1, 8], [13_100, 2, 8], [16_500, 0, 9]] });
    assert.deepEqual(trap.activeZero, { windowMs: 3050, zeroShare: 0, firstZeroMs: null });
    assert.equal(describeActiveZero(trap.activeZero), 'never in 3.05 s');
    // Removed before the in-flight requests ended (immediate): no window.
    assert.equal(summarize({ ...base, counters, marks: { ...marks, realServerGoneAt: 10_500 } }).activeZero, null);
    assert.equal(describeActiveZero(null), '-');
  });

  it('no failure after the death: lastFailureAfterDeathMs is null', () => {
    assert.equal(summarize({ ...base, records: [short(16_100), short(12_000, 'TIMEOUT')] }).lastFailureAfterDeathMs, null);
  });
});

function result(scenarios: ScenarioResult[]): DemoResult {
  return {
    date: '2026-11-25',
    kernelRelease: '6.1.0-56-amd64',
    kubeProxyVersion: 'v1.37.2',
    mode: 'default',
    timings: DEFAULT_TIMINGS,
    emulations: { ...EMULATION_TEXT },
    scenarios,
    scenariosMs: 200_000,
  };
}

const none: ScenarioResult = summarize({
  policy: 'none',
  emulation: 'old-kernel',
  death: 'with-slice-update',
  counters: [],
  records: [short(1000), short(17_000, 'TIMEOUT'), short(18_000, 'TIMEOUT')],
  marks,
  removedByAgent: undefined,
  portsExhausted: 0,
  nginx: [],
  kubeProxy: [],
});
const graceful: ScenarioResult = summarize({
  policy: 'graceful',
  emulation: 'new-kernel',
  death: 'before-slice-update',
  counters: [[12_000, 0, 4]],
  records: [short(1000), short(17_000)],
  marks: { ...marks, realServerGoneAt: 16_042 },
  removedByAgent: 'agent (endpoint-gone)',
  portsExhausted: 0,
  nginx: [],
  kubeProxy: [],
});

describe('parseDemoResult', () => {
  it('round-trips what the VM writes', () => {
    const r = result([none, graceful]);
    assert.deepEqual(parseDemoResult(JSON.stringify(r)), r);
  });

  it('names what is wrong', () => {
    assert.throws(() => parseDemoResult('{"date":'), /demo result: not JSON/);
    assert.throws(() => parseDemoResult(JSON.stringify({ ...result([none]), scenarios: [] })), /no scenarios/);
    assert.throws(() => parseDemoResult(JSON.stringify(result([{ ...none, failedAfterDeath: -1 }]))), /scenario 0: failedAfterDeath is not a count/);
    assert.throws(() => parseDemoResult(JSON.stringify(result([{ ...none, policy: 'always' as 'none' }]))), /unknown policy always/);
    assert.throws(
      () => parseDemoResult(JSON.stringify(result([{ ...none, realServerRemoval: {} as ScenarioResult['realServerRemoval'] }]))),
      /realServerRemoval is neither null nor a removal/,
    );
    assert.throws(() => parseDemoResult(JSON.stringify(result([{ ...none, afterRemoval: { requests: 1, failed: 0 } }]))), /disagree/);
    assert.throws(() => parseDemoResult(JSON.stringify(result([{ ...none, death: 'later' as 'with-slice-update' }]))), /unknown death later/);
    assert.throws(
      () => parseDemoResult(JSON.stringify(result([{ ...none, activeZero: {} as ScenarioResult['activeZero'] }]))),
      /activeZero is neither null nor a measurement/,
    );
  });
});

describe('table', () => {
  it('one aligned Markdown row per scenario', () => {
    const lines = formatTable([none, graceful]).split('\n');
    assert.equal(lines.length, 4);
    assert.equal(new Set(lines.map((l) => l.length)).size, 1, 'every line as wide as the header');
    assert.match(lines[0]!, /^\| kernel +\| agent +\| pod died +\| requests \(direct \+ nginx\) \| 502s through nginx after the pod died \| failed direct requests after the pod died \|/);
    assert.match(lines[1]!, /^\|-+\|-+\|-+\|-+:\|-+:\|-+:\|/);
    assert.deepEqual(
      lines.slice(2).map((l) => l.split('|').slice(1, -1).map((c) => c.trim())),
      [
        ['old-kernel', 'no agent (skip)', 'at the slice update', '3 + 0', '0 of 0', '2 of 2, last at +1.95 s', '-', '0 of 0', '-', 'never (still there at the end)', 'never saw weight 0'],
        ['new-kernel', 'policy graceful', 'before the slice update', '2 + 0', '0 of 0', '0 of 1', '0 of 1', '0 of 0', '100% of 3.04 s, first at +0.00 s', '0.04 s after the endpoint left the slice; by agent (endpoint-gone)', 'never saw weight 0'],
      ],
    );
  });

  it('a removal before the endpoint left the slice is told as such', () => {
    assert.equal(
      describeRemoval({ afterWeightZeroMs: 51, afterSliceRemovalMs: -5949, by: 'agent (immediate)' }),
      '0.05 s after weight 0, before the endpoint left the slice; by agent (immediate)',
    );
  });


  it('the report states the kernel, the timeline and what each emulation is', () => {
    const text = formatReport(result([none]));
    assert.match(text, /^IPVS rollout demo, 2026-11-25, kernel 6\.1\.0-56-amd64 in a QEMU VM, real kube-proxy v1\.37\.2 \(mode ipvs\)/);
    assert.match(text, /4 concurrent short HTTP requests .* 5000 ms timeout/);
    assert.match(text, /serves its slow requests for 6\.00 s more and ends them, serves short requests for 3\.00 s more/);
    assert.match(text, /or 1\.50 s before/);
    assert.ok(text.includes(`old-kernel: ${EMULATION_TEXT['old-kernel']}.`));
    assert.ok(text.includes(`new-kernel: ${EMULATION_TEXT['new-kernel']}.`));
    assert.ok(text.endsWith(formatTable([none])));
  });
});
