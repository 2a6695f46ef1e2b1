// `npm run bench`: one boot of the test VM runs test/bench/in-vm.ts; its progress goes to stderr, the results table
// to stdout, and the figures as JSON to test/bench/results.json (or the path given as the only argument).
// `npm run bench -- --only read` measures only the reads (no agent): about a third of the time.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { renderTable, type BenchResults } from './results.js';
import { repoRoot, runInVm, tailLines } from '../vm/harness.js';

const VM_TIMEOUT_MS = 60 * 60_000;

const { values, positionals } = parseArgs({ options: { only: { type: 'string' } }, allowPositionals: true });
if (values.only !== undefined && values.only !== 'read') throw new Error(`--only ${values.only}: only "read" is known`);
const jsonPath = resolve(positionals[0] ?? join(repoRoot(), 'test/bench/results.json'));
const vm = await runInVm({
  env: values.only ? { BENCH_ONLY: values.only } : {},
  // The kernel's log tells of an OOM kill or a crash that the benchmark's own output cannot.
  script: '"$NODE" dist/test/bench/in-vm.js || { rc=$?; dmesg | tail -n 20; exit "$rc"; }',
  timeoutMs: VM_TIMEOUT_MS,
  onOutput: (chunk) => process.stderr.write(chunk),
});
if (vm.exitCode !== 0) {
  process.stderr.write(`benchmark failed inside the VM (exit ${vm.exitCode}); artifacts in ${vm.outDir}\n${tailLines(vm.output, 20)}\n`);
  process.exit(1);
}
const results = JSON.parse(readFileSync(join(vm.outDir, 'bench.json'), 'utf8')) as BenchResults;
process.stdout.write(renderTable(results));
writeFileSync(jsonPath, `${JSON.stringify(results, null, 2)}\n`);
process.stderr.write(`figures written to ${jsonPath}; VM artifacts (CPU profile, if any) in ${vm.outDir}\n`);
