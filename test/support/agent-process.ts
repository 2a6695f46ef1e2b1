// The real `ipvs-janitor run` as a child process for end-to-end tests: every JSON line it logs is kept (with its
// own timestamp, so a test can place each deletion on the same clock as what it saw in the API).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { until } from './poll.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export type LogLine = Record<string, unknown> & { level?: string; message?: string; timestamp?: string };


export const isDeletion = (l: LogLine): boolean => l.message === 'deleted real server';
/** The agent's "the caches are complete" line (its full resync follows). */
export const isSynced = (l: LogLine): boolean => typeof l.message === 'string' && l.message.startsWith('informers synced');
/** Milliseconds since the epoch at which the agent logged the line. */
export const loggedAt = (l: LogLine): number => Date.parse(String(l.timestamp));

export class AgentProcess {
  /** Everything it logged, in order. */
  readonly lines: LogLine[] = [];
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (text) => {
      try {
        this.lines.push(JSON.parse(text) as LogLine);
      } catch {
        this.lines.push({ message: `(not JSON) ${text}` });
      }
    });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** `ipvs-janitor run ARGS`; its stderr goes to the test's stderr. */
  static start(args: readonly string[]): AgentProcess {
    return new AgentProcess(spawn(process.execPath, [cli, 'run', ...args], { stdio: ['ignore', 'pipe', 'inherit'] }));
  }

  get pid(): number {
    return this.child.pid!;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The first line at or after index `from` that `match` accepts; fails early when the agent exits. */
  async waitFor(match: (l: LogLine) => boolean, what: string, timeoutMs = 60_000, from = 0): Promise<LogLine> {
    try {
      return await until(() => {
        const line = this.lines.slice(from).find(match);
        if (line === undefined && !this.running) throw new Error(`the agent exited before logging ${what}`);
        return line;
      }, `agent log: ${what}`, timeoutMs);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n${this.describe()}`);
    }
  }

  /** How it stands and its last `n` lines, for a failure message. */
  describe(n = 40): string {
    const state = this.running ? 'running' : `exited (${this.child.exitCode ?? this.child.signalCode})`;
    return `agent ${state}; last log lines:\n${this.lines.slice(-n).map((l) => JSON.stringify(l)).join('\n')}`;
  }

  /** SIGTERM; resolves with its exit code (null when a signal ended it). */
  async stop(): Promise<number | null> {
    if (this.running) {
      this.child.kill('SIGTERM');
      await this.exited;
    }
    return this.child.exitCode;
  }
}
