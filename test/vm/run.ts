// Runs chosen kernel test files in one VM boot, for working on one file without the whole suite:
//   node dist/test/vm/run.js dist/test/agent/agent.vmtest.js [more files...]
// The host's IPVS_JANITOR_* variables (e.g. IPVS_JANITOR_CHURN=full) are passed into the VM.
import { runInVm, tailLines } from './harness.js';

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node dist/test/vm/run.js FILE.vmtest.js...\n');
  process.exit(2);
}
const quoted = files.map((f) => `'${f.replace(/'/g, `'\\''`)}'`).join(' ');
const result = await runInVm({
  env: Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith('IPVS_JANITOR_') && e[1] !== undefined)),
  script: `exec node --test --test-concurrency=1 --test-reporter=spec ${quoted}`,
  timeoutMs: 40 * 60 * 1000,
  onOutput: (chunk) => process.stderr.write(chunk.replace(/^(?=.)/gm, '[vm] ')),
});
process.stderr.write(`[vm] exit ${result.exitCode}; boot ${result.bootMs} ms; whole run ${result.totalMs} ms\n`);
if (result.exitCode !== 0) process.stderr.write(`${tailLines(result.output, 5)}\nartifacts: ${result.outDir}\n`);
process.exitCode = result.exitCode;
