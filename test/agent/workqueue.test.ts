import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkQueue, type Priority, type WorkQueueOptions } from '../../src/agent/workqueue.js';

/** A queue whose runs each wait for the test to release them, recording what ran when. */
function controlledQueue(options: Partial<WorkQueueOptions> = {}) {
  const started: string[] = [];
  const errors: string[] = [];
  const gates = new Map<string, Array<() => void>>();
  const running = new Map<string, number>();
  let mostAtOnceForOneKey = 0;
  const queue = new WorkQueue({
    process: async (key: string, priority: Priority) => {
      started.push(`${key}:${priority}`);
      const now = (running.get(key) ?? 0) + 1;
      running.set(key, now);
      mostAtOnceForOneKey = Math.max(mostAtOnceForOneKey, now);
      await new Promise<void>((resolve) => gates.set(key, [...(gates.get(key) ?? []), resolve]));
      running.set(key, (running.get(key) ?? 1) - 1);
      if (key.startsWith('bad')) throw new Error(`${key} is broken`);
    },
    onError: (key) => errors.push(key),
    ...options,
  });
  const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
  return {
    queue,
    started,
    errors,
    mostAtOnceForOneKey: () => mostAtOnceForOneKey,
    /** Lets the oldest run of `key` finish, then lets the queue pick its next keys. */
    async finish(key: string) {
      const waiting = gates.get(key) ?? [];
      const release = waiting.shift();
      assert.ok(release, `${key} is not running`);
      release();
      await settle();
    },
    settle,
  };
}

describe('work queue', () => {
  it('runs a high key before every low key, also one added while a low key runs', async () => {
    const q = controlledQueue();
    for (const key of ['a', 'b', 'c']) q.queue.add(key, 'low');
    q.queue.add('x', 'high');
    await q.settle();
    assert.deepEqual(q.started, ['x:high']);
    await q.finish('x');
    assert.deepEqual(q.started, ['x:high', 'a:low']);
    q.queue.add('y', 'high');
    await q.finish('a');
    await q.finish('y');
    await q.finish('b');
    await q.finish('c');
    assert.deepEqual(q.started, ['x:high', 'a:low', 'y:high', 'b:low', 'c:low']);
    await q.queue.drained();
  });

  it('holds a waiting key once however often it is added, and raises it to high', async () => {
    const q = controlledQueue();
    q.queue.add('busy', 'high');
    await q.settle();
    for (let i = 0; i < 50; i++) q.queue.add('k', 'low');
    q.queue.add('other', 'low');
    q.queue.add('k', 'high');
    q.queue.add('k', 'low'); // does not lower it again
    assert.equal(q.queue.length, 2);
    await q.finish('busy');
    await q.finish('k');
    await q.finish('other');
    await q.queue.drained();
    assert.deepEqual(q.started, ['busy:high', 'k:high', 'other:low']);
  });

  it('never runs one key twice at once, and runs a key added during its run once more after it', async () => {
    const q = controlledQueue({ workers: 4 });
    q.queue.add('k');
    await q.settle();
    q.queue.add('k');
    q.queue.add('k', 'low');
    q.queue.add('j');
    await q.settle();
    // Four workers are free, yet the second run of k waits for the first.
    assert.deepEqual(q.started, ['k:high', 'j:high']);
    await q.finish('k');
    assert.deepEqual(q.started, ['k:high', 'j:high', 'k:high']);
    await q.finish('k');
    await q.finish('j');
    await q.queue.drained();
    assert.equal(q.started.length, 3);
    assert.equal(q.mostAtOnceForOneKey(), 1);
  });

  it('runs different keys side by side up to the number of workers', async () => {
    const q = controlledQueue({ workers: 2 });
    for (const key of ['a', 'b', 'c']) q.queue.add(key);
    await q.settle();
    assert.deepEqual(q.started, ['a:high', 'b:high']);
    await q.finish('b');
    assert.deepEqual(q.started, ['a:high', 'b:high', 'c:high']);
    await q.finish('a');
    await q.finish('c');
    await q.queue.drained();
  });

  it('reports a failed run and goes on with the other keys', async () => {
    const q = controlledQueue();
    for (const key of ['a', 'bad', 'b']) q.queue.add(key, 'low');
    await q.settle();
    for (const key of ['a', 'bad', 'b']) await q.finish(key);
    await q.queue.drained();
    assert.deepEqual(q.started, ['a:low', 'bad:low', 'b:low']);
    assert.deepEqual(q.errors, ['bad']);
    // A failed key is not retried on its own, but the next add runs it.
    q.queue.add('bad');
    await q.settle();
    await q.finish('bad');
    assert.deepEqual(q.errors, ['bad', 'bad']);
  });

  it('drained() waits for the run in flight; shutDown() drops waiting keys and refuses new ones', async () => {
    const q = controlledQueue();
    q.queue.add('a');
    q.queue.add('b');
    let drained = false;
    void q.queue.drained().then(() => (drained = true));
    await q.settle();
    let shut = false;
    void q.queue.shutDown().then(() => (shut = true));
    q.queue.add('c');
    await q.settle();
    assert.equal(drained, false);
    assert.equal(shut, false);
    await q.finish('a');
    assert.equal(drained, true);
    assert.equal(shut, true);
    assert.deepEqual(q.started, ['a:high']);
    assert.equal(q.queue.length, 0);
  });

  it('refuses a worker count below one', () => {
    assert.throws(() => new WorkQueue({ process: async () => {}, onError: () => {}, workers: 0 }), RangeError);
  });
});
