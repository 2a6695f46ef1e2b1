// The decoder fuzz test's full run, seeded: node dist/test/fuzz/main.js [--iterations 1000000] [--seed 1]
// Exits 1 on any error other than the project's typed ones, or on a hang; prints how to replay it.
import { parseArgs } from 'node:util';
import { runFuzz } from './run.js';

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '1000000' }, seed: { type: 'string', default: '1' } } });
const iterations = Number(values.iterations);
const seed = Number(values.seed);
const result = await runFuzz(seed, iterations);
process.stdout.write(
  `${iterations.toLocaleString('en')} datagrams, seed ${seed}, ${(result.ms / 1000).toFixed(1)} s: ` +
    `${Object.entries(result.outcomes).map(([k, v]) => `${k} ${v}`).join(', ')}\n`,
);
for (const u of result.unexpected) {
  process.stdout.write(`UNEXPECTED at iteration ${u.iteration} (${u.operation}): ${u.error}\n  datagram ${u.datagram}\n`);
}
if (result.hang) process.stdout.write(`HANG at iteration ${result.hang.iteration}\n`);
process.exitCode = result.unexpected.length > 0 || result.hang ? 1 : 0;
