// The demo inside the test VM: plays every scene on one stage and writes the result (and each scene's raw
// records) to the results share for the host.
//   node dist/test/demo/vm-main.js [--full]      (root, in the VM: test/demo/main.ts runs it)
import { writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { kubeProxyVersion } from '../support/kube-proxy.js';
import { EMULATION_TEXT, DEFAULT_TIMINGS, demoScenes, FULL_TIMINGS } from './scene.js';
import { RESULT_FILE, type DemoResult, type ScenarioResult } from './report.js';
import { Stage } from './stage.js';

const outDir = process.env.VM_OUT;
if (!outDir) throw new Error('VM_OUT is not set: run the demo with `npm run demo`, which boots the VM');

const full = process.argv.includes('--full');
const timings = full ? FULL_TIMINGS : DEFAULT_TIMINGS;
const started = Date.now();
const progress = (line: string) => process.stdout.write(`[demo +${Math.round((Date.now() - started) / 1000)} s] ${line}\n`);

const scenes = demoScenes();
const stage = await Stage.open(scenes, progress, outDir);
const scenesStarted = Date.now();
const scenarios: ScenarioResult[] = [];
try {
  for (const scene of scenes) scenarios.push(await stage.play(scene, timings));
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
