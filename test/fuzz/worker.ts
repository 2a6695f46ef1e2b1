// One fuzz run on a worker thread, so the parent can stop it if a decoder ever loops: it publishes the iteration it
// is on in shared memory and reports every unexpected error with what is needed to replay it.
import { parentPort, workerData } from 'node:worker_threads';
import { layoutOf, mutate, prng } from './mutate.js';
import { decodeDatagram, loadRecordedReplies, type Outcome } from './replies.js';

export interface FuzzJob {
  seed: number;
  iterations: number;
  /** Int32Array over a SharedArrayBuffer: [0] = the iteration being decoded. */
  progress: SharedArrayBuffer;
}

export type FuzzMessage =
  | { kind: 'unexpected'; iteration: number; operation: string; error: string; datagram: string }
  | { kind: 'done'; outcomes: Record<Outcome, number> };

/** The iteration's own random stream: replaying iteration i needs only (seed, i). */
export function iterationSeed(seed: number, iteration: number): number {
  return (Math.imul(seed, 0x9e3779b1) ^ Math.imul(iteration + 1, 0x85ebca6b)) >>> 0;
}

const MAX_REPORTED = 10;

if (parentPort) {
  const job = workerData as FuzzJob;
  const progress = new Int32Array(job.progress);
  const corpus = loadRecordedReplies().exchanges.flatMap((exchange) =>
    exchange.datagrams.map((hex) => {
      const datagram = Buffer.from(hex, 'hex');
      return { exchange, datagram, layout: layoutOf(datagram) };
    }),
  );
  const outcomes: Record<Outcome, number> = { decoded: 0, 'protocol error': 0, 'kernel error': 0 };
  let reported = 0;
  for (let i = 0; i < job.iterations; i++) {
    Atomics.store(progress, 0, i);
    const random = prng(iterationSeed(job.seed, i));
    const { exchange, datagram, layout } = corpus[Math.floor(random() * corpus.length)]!;
    const mutated = mutate(datagram, layout, random);
    try {
      outcomes[decodeDatagram(exchange, mutated)]++;
    } catch (err) {
      if (reported++ < MAX_REPORTED) {
        const error = err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ''}` : String(err);
        parentPort.postMessage({ kind: 'unexpected', iteration: i, operation: exchange.operation, error, datagram: mutated.toString('hex') } satisfies FuzzMessage);
      }
    }
  }
  parentPort.postMessage({ kind: 'done', outcomes } satisfies FuzzMessage);
}
