// Runs a seeded fuzz job on a worker thread and watches it: an iteration that takes longer than `hangMs` is a hang,
// reported with its number so it can be replayed alone.
import { Worker } from 'node:worker_threads';
import type { Outcome } from './replies.js';
import type { FuzzJob, FuzzMessage } from './worker.js';

export interface FuzzResult {
  iterations: number;
  outcomes: Record<Outcome, number>;
  unexpected: Extract<FuzzMessage, { kind: 'unexpected' }>[];
  hang?: { iteration: number };
  ms: number;
}

export function runFuzz(seed: number, iterations: number, hangMs = 10_000): Promise<FuzzResult> {
  const progress = new SharedArrayBuffer(4);
  const job: FuzzJob = { seed, iterations, progress };
  const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: job });
  const started = performance.now();
  const unexpected: FuzzResult['unexpected'] = [];
  return new Promise((resolve, reject) => {
    const current = new Int32Array(progress);
    let last = -1;
    const watchdog = setInterval(() => {
      const now = Atomics.load(current, 0);
      if (now === last) {
        clearInterval(watchdog);
        void worker.terminate();
        resolve({ iterations, outcomes: { decoded: 0, 'protocol error': 0, 'kernel error': 0 }, unexpected, hang: { iteration: now }, ms: performance.now() - started });
      }
      last = now;
    }, hangMs);
    worker.on('message', (msg: FuzzMessage) => {
      if (msg.kind === 'unexpected') unexpected.push(msg);
      else {
        clearInterval(watchdog);
        resolve({ iterations, outcomes: msg.outcomes, unexpected, ms: performance.now() - started });
      }
    });
    worker.on('error', (err) => {
      clearInterval(watchdog);
      reject(err);
    });
  });
}
