// `npm run demo`: starts the real etcd and kube-apiserver on the host's loopback, boots the test VM once with one
// port forwarded to it and, inside the VM (test/demo/vm-main.ts), starts the real kube-proxy (mode ipvs) and nginx,
// plays the rollout for every agent policy under both kernel behaviours, and prints the table.
//   npm run demo [-- --json] [-- --full] [-- --keep] [-- --scenes 8,10]
// Progress goes to stderr; stdout carries the table, or with --json exactly one JSON object.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { hostClusterEnv, hostClusterForward } from '../support/host-cluster.js';
import { KubeCluster } from '../support/kube-cluster.js';
import { runInVm, tailLines, type RunInVmResult } from '../vm/harness.js';
import { formatReport, parseDemoResult, RESULT_FILE } from './report.js';
import { selectScenes } from './scene.js';

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    full: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    scenes: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
});
if (values.help) {
  process.stdout.write(
    'usage: npm run demo [-- --json] [-- --full] [-- --keep]\n' +
      '  --json  one JSON object on stdout\n' +
      '  --full  longer runs: over two minutes after each death, so kube-proxy\'s once-a-minute check runs twice\n' +
      '  --keep  keep the VM results dir: each scene\'s raw request records, marks and watcher events\n' +
      '  --scenes 8,10  play only these scenes (numbers as in the full table\'s order: 1-10)\n',
  );
  process.exit(0);
}

let sceneList = '';
try {
  sceneList = values.scenes === undefined ? '' : ` --scenes ${selectScenes(values.scenes).join(',')}`;
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(2);
}

const started = Date.now();
let vm: RunInVmResult;
try {
  const cluster = await KubeCluster.start({ dedicated: true });
  process.stderr.write(`kube-apiserver ready on the host after ${Math.round((Date.now() - started) / 1000)} s\n`);
  try {
    vm = await runInVm({
      script: `exec node dist/test/demo/vm-main.js${values.full ? ' --full' : ''}${sceneList}`,
      env: { ...hostClusterEnv(cluster) },
      forwardToHost: hostClusterForward(cluster),
      // kube-proxy's syncs take 8-14 s each under TCG, over a minute on a host busy with other VMs.
      timeoutMs: (values.full ? 90 : 60) * 60_000,
      onOutput: (chunk) => process.stderr.write(chunk.replace(/^(?=.)/gm, '[vm] ')),
    });
  } finally {
    await cluster.stop();
  }
} catch (err) {
  // Missing tools (kube-apiserver, etcd, QEMU, the kernel) say so and name .ci/setup.
  process.stderr.write(`demo cannot run: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
if (vm.exitCode !== 0) {
  process.stderr.write(`demo failed inside the VM (exit ${vm.exitCode}); results dir ${vm.outDir}\n${tailLines(vm.output, 30)}\n`);
  process.exit(1);
}
const result = parseDemoResult(readFileSync(join(vm.outDir, RESULT_FILE), 'utf8'));
if (values.keep) process.stderr.write(`raw records: ${vm.outDir}/scene-*.json\n`);
else rmSync(vm.outDir, { recursive: true, force: true });
const wallMs = Date.now() - started;
if (values.json) process.stdout.write(`${JSON.stringify({ ...result, wallMs, vmBootMs: vm.bootMs })}\n`);
else {
  const seconds = (ms: number) => Math.round(ms / 1000);
  process.stdout.write(`${formatReport(result)}\n\nWhole demo: ${seconds(wallMs)} s (VM boot ${seconds(vm.bootMs)} s).\n`);
}
