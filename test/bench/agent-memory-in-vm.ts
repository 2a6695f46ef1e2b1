// Inside the test VM (main.ts `--only agent-memory` boots it): the agent's memory with the large table, under the
// V8 flags given in AGENT_NODE_OPTIONS, against the host's kube-apiserver that main.ts filled with the fixture's
// Services. The agent resyncs back to back (period 1 s); its RSS is read after each of RESYNCS full passes, since
// what a pass reads is what the young generation keeps. Writes $VM_OUT/agent-memory.json.
import { writeFileSync } from 'node:fs';
import { reachHostCluster } from '../support/host-cluster.js';
import { addDummy, ip } from '../support/netns.js';
import { AgentProcess, resyncSecondsSum } from './agent-process.js';
import { addServices, benchAgentArgs, ENDPOINT_RANGE, LARGE } from './fixture.js';
import { KernelTableWriter } from './kernel-table.js';
import type { AgentMemoryRun } from './results.js';

const RESYNCS = 3;
const SYNC_TIMEOUT_MS = 15 * 60_000;

const nodeOptions = process.env.AGENT_NODE_OPTIONS ?? '';
const say = (text: string): void => {
  process.stderr.write(`[agent memory] ${text}\n`);
};

addDummy('bench0', []);
ip('route', 'add', ENDPOINT_RANGE, 'dev', 'bench0');
const writer = await KernelTableWriter.open();
addServices(writer, 0, LARGE);
writer.flush();
writer.close();
const cluster = await reachHostCluster(process.env);
const agent = AgentProcess.start(benchAgentArgs(cluster), say, nodeOptions);
const run: AgentMemoryRun = { date: new Date().toISOString().slice(0, 10), nodeOptions, services: LARGE, afterResync: [] };
try {
  await agent.waitFor((l) => l.message === 'informers synced: full resync', 'informers synced', SYNC_TIMEOUT_MS);
  let summed = 0;
  for (let n = 1; n <= RESYNCS; n++) {
    const total = resyncSecondsSum(await agent.afterResyncs(n, SYNC_TIMEOUT_MS));
    const sample = { ...agent.memory(), resyncSeconds: total - summed };
    summed = total;
    run.afterResync.push(sample);
    say(`after resync ${n} (${sample.resyncSeconds.toFixed(1)} s): VmRSS ${sample.rssMiB.toFixed(1)} MiB, VmHWM ${sample.hwmMiB.toFixed(1)} MiB`);
  }
} finally {
  await agent.stop();
}
writeFileSync(`${process.env.VM_OUT ?? '/tmp'}/agent-memory.json`, `${JSON.stringify(run, null, 2)}\n`);
