// The CI slice of the decoder fuzz test: 20,000 mutated and truncated datagrams from real kernel answers. Only the
// project's typed errors may escape the decoders, and none may hang. The full run (1,000,000, any seed) is
// `node dist/test/fuzz/main.js [--iterations N] [--seed S]`.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { decodeDatagram, loadRecordedReplies } from './replies.js';
import { runFuzz } from './run.js';

const CI_ITERATIONS = 20_000;
const CI_SEED = 20261202;

it('every recorded kernel answer decodes as recorded', () => {
  const { exchanges } = loadRecordedReplies();
  const shapes = new Set(exchanges.map((e) => e.shape.kind));
  assert.deepEqual([...shapes].sort(), ['ack', 'config', 'ctrl', 'dest', 'info', 'service']);
  for (const exchange of exchanges) {
    for (const hex of exchange.datagrams) {
      const outcome = decodeDatagram(exchange, Buffer.from(hex, 'hex'));
      assert.equal(outcome, exchange.operation.includes('missing') || exchange.operation.includes('without') ? 'kernel error' : 'decoded', exchange.operation);
    }
  }
});

it(`${CI_ITERATIONS.toLocaleString('en')} mutated datagrams: only typed errors, no hang`, async () => {
  const result = await runFuzz(CI_SEED, CI_ITERATIONS);
  assert.equal(result.hang, undefined, `iteration ${result.hang?.iteration} of seed ${CI_SEED} did not finish`);
  assert.deepEqual(result.unexpected, []);
  // The mutations must reach both sides: answers that still decode, and answers the decoders refuse.
  assert.ok(result.outcomes.decoded > CI_ITERATIONS / 20, JSON.stringify(result.outcomes));
  assert.ok(result.outcomes['protocol error'] > CI_ITERATIONS / 20, JSON.stringify(result.outcomes));
});
