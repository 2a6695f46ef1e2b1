// One short scene pair of the demo, inside the VM, with the real kube-apiserver, kube-proxy (mode ipvs), nginx and
// agent, asserting the direction of the result under the old-kernel emulation. Without the agent, requests fail
// after the old pod died, through nginx (502) and directly, and kube-proxy keeps the weight-0 real server. With
// policy graceful the agent removes it once its endpoint left the slice, nothing fails once it has, and no
// in-flight request breaks. The pod dies as its endpoint leaves the slice, so requests sent to it during the
// agent's reaction fail in any run: what is asserted is that nothing fails once it reacted.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { describeKubeProxy, describeRemoval, type ScenarioResult } from './report.js';
import { DEFAULT_TIMINGS, scene, type Timings } from './scene.js';
import { Stage } from './stage.js';

const SHORT: Timings = { ...DEFAULT_TIMINGS, warmupMs: 1500, longRequests: 2, gracePeriodMs: 3000, afterDeathMs: 15_000 };
const scenes = [scene(1, 'none', 'old-kernel'), scene(3, 'graceful', 'old-kernel')] as const;

let stage: Stage | undefined;
let results: ScenarioResult[] = [];
// Played as the demo plays them: set up together, the second scene's traffic and new pod during the first's finale.
before(async () => {
  stage = await Stage.open(scenes, { kind: 'in-vm' }, (line) => console.log(`[demo] ${line}`));
  results = await stage.play(scenes, SHORT);
}, { timeout: 30 * 60_000 });
after(() => stage?.close());

test('old-kernel emulation without the agent: 502s through nginx and failed requests after the old pod died', { timeout: 30 * 60_000 }, async () => {
  const r = results[0]!;
  const summary = JSON.stringify(r);
  assert.ok(r.failedAfterDeath > 0, `expected direct failures after the death: ${summary}`);
  assert.ok(r.nginx.badGatewayAfterDeath > 0, `expected 502s through nginx after the death: ${summary}`);
  assert.equal(r.realServerRemoval, null, 'kube-proxy keeps a weight-0 real server that still has connections');
  assert.ok(r.kubeProxy.gracefulList, describeKubeProxy(r.kubeProxy));
});

test('old-kernel emulation with policy graceful: nothing fails once the agent reacted, no in-flight request breaks', { timeout: 30 * 60_000 }, async () => {
  const r = results[1]!;
  const summary = JSON.stringify(r);
  assert.equal(r.realServerRemoval?.by, 'agent (endpoint-gone)', describeRemoval(r.realServerRemoval));
  assert.ok(r.realServerRemoval.afterSliceRemovalMs >= 0, describeRemoval(r.realServerRemoval));
  assert.ok(r.afterRemoval!.requests > 0, `no requests after the removal: ${summary}`);
  assert.equal(r.afterRemoval!.failed, 0, summary);
  assert.equal(r.longBroken, 0, summary);
});
