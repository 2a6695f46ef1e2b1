// Full resync passes, one at a time. A pass is a cursor over the Service keys that the janitor's work queue runs
// at low priority, behind every event. Asking for a resync while a pass runs folds into exactly one more pass,
// so timer ticks and re-syncs never pile up, however long a pass takes.

export type PassResult = 'complete' | 'incomplete' | 'skipped' | 'failed';

export interface ResyncPass {
  /** serviceKeyString() of every virtual service in the kernel when the pass began; undefined until read. */
  kernel?: Set<string>;
  /** Service keys not yet reconciled in this pass. */
  pending: Set<string>;
  /** Virtual services whose real servers this pass read, with how many weight-0 ones each kept. */
  zeroWeight: Map<string, number>;
  /** A step found the caches unsynced or failed: what the pass did not see says nothing about the kernel. */
  incomplete: boolean;
}

export interface PassHooks {
  /** Starts the pass: fills pass.pending and queues those keys, or ends it at once through finish(). */
  begin(pass: ResyncPass): Promise<void>;
  ended(pass: ResyncPass, result: PassResult): void;
  /** A request was folded into the pass running. */
  coalesced(): void;
}

export class ResyncPasses {
  private running: { pass: ResyncPass; done: () => void; finished: Promise<void> } | undefined;
  /** Asked for while a pass runs: one more pass after it, however many requests. */
  private again: { finished: Promise<void>; resolve: () => void } | undefined;

  constructor(private readonly hooks: PassHooks) {}

  /** The pass running, if any. */
  get current(): ResyncPass | undefined {
    return this.running?.pass;
  }

  /** Resolves once the pass running, if any, has ended. */
  async ended(): Promise<void> {
    await this.running?.finished;
  }

  /** Resolves when the pass that covers this request has ended. */
  request(): Promise<void> {
    if (this.running === undefined) return this.start();
    this.hooks.coalesced();
    if (this.again === undefined) {
      let resolve!: () => void;
      const finished = new Promise<void>((r) => (resolve = r));
      this.again = { finished, resolve };
    }
    return this.again.finished;
  }

  /** The run of `key` for `pass` is over; the last one completes the pass. */
  keyDone(pass: ResyncPass, key: string): void {
    pass.pending.delete(key);
    if (pass.pending.size === 0) this.finish(pass, 'complete');
  }

  finish(pass: ResyncPass, result: PassResult): void {
    const running = this.running;
    if (running?.pass !== pass) return;
    this.running = undefined;
    this.hooks.ended(pass, result === 'complete' && pass.incomplete ? 'incomplete' : result);
    const again = this.again;
    this.again = undefined;
    if (again !== undefined) void this.start().then(again.resolve);
    running.done();
  }

  /** Ends the pass running as incomplete; the one asked for after it never starts (its callers resolve). */
  stop(): void {
    const again = this.again;
    this.again = undefined;
    again?.resolve();
    if (this.running !== undefined) this.finish(this.running.pass, 'incomplete');
  }

  private start(): Promise<void> {
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    const pass: ResyncPass = { pending: new Set(), zeroWeight: new Map(), incomplete: false };
    this.running = { pass, done, finished };
    void this.hooks.begin(pass);
    return finished;
  }
}
