// The agent-memory table as the README shows it: one row per run, its V8 flags named.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderAgentMemory } from './results.js';

describe('bench results: the agent-memory table', () => {
  it('gives each run its flags, its RSS range and peak, and each resync', () => {
    const sample = (rssMiB: number, hwmMiB: number, resyncSeconds: number) => ({ rssMiB, hwmMiB, resyncSeconds });
    const text = renderAgentMemory([
      { date: '2026-12-03', nodeOptions: '', services: 10_000, afterResync: [sample(157.1, 159.5, 19.3), sample(160, 160.6, 12.84)] },
      { date: '2026-12-03', nodeOptions: '--max-semi-space-size=4', services: 10_000, afterResync: [sample(142.4, 144.6, 16.9)] },
    ]);
    const rows = text.trim().split('\n');
    assert.equal(rows.length, 4);
    assert.equal(rows[2], '| 2026-12-03 | V8 defaults | 157-160 MiB (peak 161 MiB) | 19.3, 12.8 s |');
    assert.equal(rows[3], '| 2026-12-03 | `--max-semi-space-size=4` | 142-142 MiB (peak 145 MiB) | 16.9 s |');
  });
});
