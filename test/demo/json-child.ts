// A child process of the demo that speaks JSON lines: commands on stdin, messages on stdout.
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { nextWake } from '../support/kube-proxy.js';

export type Message = Record<string, unknown>;

export class JsonChild<Command extends object | string, Event extends Message> {
  readonly messages: Event[] = [];
  private stderr = '';
  private exit: string | undefined;
  private readonly wake = new Set<() => void>();

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.messages.push(JSON.parse(line) as Event);
      } catch {
        this.stderr = `${this.stderr}${line}\n`.slice(-4000);
      }
      this.wake.forEach((w) => w());
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr = (this.stderr + d).slice(-4000)));
    const ended = (why: string) => {
      this.exit ??= `${name} ${why}`;
      this.wake.forEach((w) => w());
    };
    child.once('exit', (code, signal) => ended(`exited (${signal ?? code})`));
    child.once('error', (err) => ended(`failed: ${err.message}`));
  }

  get exited(): boolean {
    return this.exit !== undefined;
  }

  send(command: Command): number {
    this.child.stdin!.write(`${typeof command === 'string' ? command : JSON.stringify(command)}\n`);
    return this.messages.length;
  }

  /** The first message at index `from` or later that passes `test`; an 'error' event or an exit rejects. */
  async wait<E extends Event>(test: (m: Event) => m is E, what: string, timeoutMs: number, from = 0): Promise<E> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.messages.slice(from).find((m) => test(m) || m.event === 'error');
      if (found?.event === 'error') throw new Error(`${this.name}: ${String(found.message)}`);
      if (found) return found as E;
      const why = this.exit ?? (Date.now() > deadline ? `no ${what} within ${timeoutMs} ms` : undefined);
      if (why) throw new Error(`${this.name}: ${why}\n${this.stderr}`);
      await nextWake(this.wake, deadline);
    }
  }
}

export const isEvent =
  <E extends { event: string }, K extends E['event']>(event: K) =>
  (m: E): m is Extract<E, { event: K }> =>
    m.event === event;

/** isEvent() for one named run of a child that serves several (the load client). */
export const isRunEvent =
  <E extends { event: string }, K extends E['event']>(event: K, run: string) =>
  (m: E): m is Extract<E, { event: K }> =>
    m.event === event && (m as { run?: unknown }).run === run;
