// One short scene pair of the demo, inside the VM, asserting the direction of the result under the old-kernel
// emulation. Without the agent, requests still fail at the end of the run. With --policy graceful the failures
// stop once the agent has removed the real server, and no in-flight request breaks. The pod dies as its endpoint
// leaves the slice, so the requests sent to it during the agent's reaction fail in any run: what is asserted is
// that nothing fails once it reacted, not that nothing fails after the death.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { describeRemoval } from './report.js';
import { DEFAULT_TIMINGS, scene, type Timings } from './scene.js';
import { Stage } from './stage.js';

const SHORT: Timings = {
  ...DEFAULT_TIMINGS,
  warmupMs: 1500,
  longRequests: 2,
  longRequestMs: 2500,
  newReadyToTerminatingMs: 500,
  gracePeriodMs: 3500,
  afterDeathMs: 5000,
};

let stage: Stage | undefined;
before(async () => {
  stage = await Stage.open(['none', 'graceful'], (line) => console.log(`[demo] ${line}`));
});
after(() => stage?.close());

test('old-kernel emulation without the agent: requests fail after the old pod died, to the end of the run', async () => {
  const r = await stage!.play(scene(1, 'none', 'old-kernel'), SHORT);
  const summary = JSON.stringify(r);
  assert.ok(r.failedAfterDeath > 0, `expected failures after the death: ${summary}`);
  assert.ok(r.lastFailureAfterDeathMs! > SHORT.afterDeathMs - 2000, `failures stopped early: ${summary}`);
  assert.equal(r.realServerRemoval, null, 'kube-proxy keeps a weight-0 real server that still has connections');
});

test('old-kernel emulation with --policy graceful: nothing fails once the agent reacted, no in-flight request breaks', async () => {
  const r = await stage!.play(scene(2, 'graceful', 'old-kernel'), SHORT);
  const summary = JSON.stringify(r);
  assert.equal(r.realServerRemoval?.by, 'agent (endpoint-gone)', describeRemoval(r.realServerRemoval));
  assert.ok(r.realServerRemoval.afterSliceRemovalMs >= 0, describeRemoval(r.realServerRemoval));
  assert.ok(r.afterRemoval!.requests > 0, `no requests after the removal: ${summary}`);
  assert.equal(r.afterRemoval!.failed, 0, summary);
  assert.equal(r.longBroken, 0, summary);
});
