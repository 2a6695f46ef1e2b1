// A keyed work queue in the manner of client-go's workqueue: a key waiting in the queue is held once however
// often it is added (the dirty set), a key is never processed twice at once (the processing set), and a key
// added while it is processed runs again once that run ends, so no change goes unseen. Two lanes: a `high`
// key (an event) always goes before a `low` one (a resync step), so a long resync never delays an event by
// more than the one step in flight.

export type Priority = 'high' | 'low';

export interface WorkQueueOptions {
  /** Processes one key. Never called for a key already being processed. */
  process(key: string, priority: Priority): Promise<void>;
  /** A rejected process(): the key is not retried on its own; the next add() runs it again. */
  onError(key: string, err: unknown): void;
  /** How many different keys may be processed at once. */
  workers?: number;
}

/** First in, first out, without Array.shift()'s copy: a resync puts thousands of keys in the low lane. */
class Fifo {
  private items: string[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: string): void {
    this.items.push(item);
  }

  shift(): string | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

export class WorkQueue {
  /** Keys waiting to be processed, at the priority they will run with. */
  private readonly dirty = new Map<string, Priority>();
  private readonly processing = new Set<string>();
  // A lane may hold entries that went stale (the key was promoted to high, or already ran): next() skips them.
  private readonly lanes: Record<Priority, Fifo> = { high: new Fifo(), low: new Fifo() };
  private readonly workers: number;
  private running = 0;
  private pumpScheduled = false;
  private shuttingDown = false;
  private waiters: Array<() => void> = [];

  constructor(private readonly o: WorkQueueOptions) {
    this.workers = o.workers ?? 1;
    if (!Number.isInteger(this.workers) || this.workers < 1) {
      throw new RangeError('workers must be a whole number >= 1');
    }
  }

  /**
   * Marks the key as needing a run. A key already waiting stays one entry (raised to `high` if asked);
   * a key being processed runs again afterwards. Processing starts on a later microtask, so a burst of
   * add() calls in one turn of the event loop costs one run.
   */
  add(key: string, priority: Priority = 'high'): void {
    if (this.shuttingDown) return;
    const waiting = this.dirty.get(key);
    if (waiting === 'high' || waiting === priority) return;
    this.dirty.set(key, priority);
    if (!this.processing.has(key)) this.lanes[priority].push(key);
    this.schedulePump();
  }

  /** Keys waiting, not counting those being processed. */
  get length(): number {
    return this.dirty.size;
  }

  /** Resolves once nothing waits and nothing is being processed. */
  drained(): Promise<void> {
    if (this.isDrained()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Drops every waiting key and refuses new ones; resolves when the runs in flight have ended. */
  shutDown(): Promise<void> {
    this.shuttingDown = true;
    this.dirty.clear();
    this.lanes.high.clear();
    this.lanes.low.clear();
    return this.drained();
  }

  private isDrained(): boolean {
    return this.dirty.size === 0 && this.running === 0;
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.workers) {
      const next = this.next();
      if (next === undefined) break;
      void this.run(next.key, next.priority);
    }
    if (this.isDrained()) this.wake();
  }

  private next(): { key: string; priority: Priority } | undefined {
    for (const priority of ['high', 'low'] as const) {
      const lane = this.lanes[priority];
      for (let key = lane.shift(); key !== undefined; key = lane.shift()) {
        if (this.dirty.get(key) === priority && !this.processing.has(key)) return { key, priority };
      }
    }
    return undefined;
  }

  private async run(key: string, priority: Priority): Promise<void> {
    this.running++;
    this.processing.add(key);
    this.dirty.delete(key);
    try {
      await this.o.process(key, priority);
    } catch (err) {
      this.o.onError(key, err);
    } finally {
      this.processing.delete(key);
      this.running--;
      const again = this.dirty.get(key);
      if (again !== undefined) this.lanes[again].push(key);
      this.pump();
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
