// The demo inside the test VM: plays every scene on one stage and writes the result (and each scene's raw
// records) to the results share for the host.
//   node dist/test/demo/vm-main.js [--full] [--scenes 8,10]     (root, in the VM: test/demo/main.ts runs it)
import { writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { kubeProxyVersion } from '../support/kube-proxy.js';
import { EMULATION_TEXT, DEFAULT_TIMINGS, demoScenes, FULL_TIMINGS, selectScenes } from './scene.js';
import { RESULT_FILE, type DemoResult, type ScenarioResult } from './report.js';
import { Stage } from './stage.js';

const outDir = process.env.VM_OUT;
if (!outDir) throw new Error('VM_OUT is not set: run the demo with `npm run demo`, which boots the VM');

const full = process.argv.includes('--full');
const timings = full ? FULL_TIMINGS : DEFAULT_TIMINGS;
const started = Date.now();
const progress = (line: string) => process.stdout.write(`[demo +${Math.round((Date.now() - started) / 1000)} s] ${line}\n`);

const chosen = process.argv.indexOf('--scenes');
const only = chosen >= 0 ? selectScenes(process.argv[chosen + 1] ?? '') : undefined;
const scenes = demoScenes().filter((s) => only === undefined || only.includes(s.index));
// main.ts starts the API server on the host and forwards its port (host-cluster.ts).
const stage = await Stage.open(scenes, { kind: 'host', env: process.env }, progress, outDir);
const scenesStarted = Date.now();
let scenarios: ScenarioResult[];
try {
  scenarios = await stage.play(scenes, timings);
} finally {
  await stage.close();
}
const result: DemoResult = {
  date: new Date().toISOString().slice(0, 10),
  kernelRelease: release(),
  kubeProxyVersion: kubeProxyVersion().replace(/^Kubernetes /, ''),
  mode: full ? 'full' : 'default',
  timings,
  emulations: { ...EMULATION_TEXT },
  scenarios,
  scenariosMs: Date.now() - scenesStarted,
};
writeFileSync(join(outDir, RESULT_FILE), `${JSON.stringify(result, null, 2)}\n`);
