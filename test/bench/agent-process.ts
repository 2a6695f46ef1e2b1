// The real `ipvs-janitor run` as a child process: its JSON log lines, its /metrics, its memory.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { until } from '../support/poll.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export type LogLine = Record<string, unknown> & { level?: string; message?: string; timestamp?: string };

interface Waiter {
  match: (line: LogLine) => boolean;
  resolve: (line: LogLine) => void;
}

const KEPT_LINES = 20;

export class AgentProcess {
  private readonly waiters = new Set<Waiter>();
  /** The last lines it logged, for a failure's report. */
  private readonly recent: string[] = [];
  private metricsPort: number | undefined;
  private readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    private readonly say: (text: string) => void,
  ) {
    createInterface({ input: child.stdout! }).on('line', (text) => this.onLine(text));
    createInterface({ input: child.stderr! }).on('line', (text) => say(`agent stderr: ${text}`));
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** `nodeOptions` becomes the agent's NODE_OPTIONS (V8 flags such as --max-semi-space-size), nothing by default. */
  static start(args: readonly string[], say: (text: string) => void, nodeOptions = ''): AgentProcess {
    const env = { ...process.env, NODE_OPTIONS: nodeOptions };
    return new AgentProcess(spawn(process.execPath, [cli, 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env }), say);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** The first log line from now on that `match` accepts. */
  waitFor(match: (line: LogLine) => boolean, what: string, timeoutMs: number): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`the agent did not log ${what} within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      const waiter: Waiter = {
        match,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      this.waiters.add(waiter);
      void this.exited.then(() => {
        if (!this.waiters.delete(waiter)) return;
        clearTimeout(timer);
        reject(new Error(`the agent exited (${this.child.exitCode ?? this.child.signalCode}) before logging ${what}`));
      });
    });
  }

  async metrics(): Promise<string> {
    if (this.metricsPort === undefined) throw new Error('the agent has not logged its metrics port yet');
    const port = this.metricsPort;
    return new Promise((resolve, reject) => {
      // A fresh connection each time: a pooled keep-alive one may be closed by the server just as it is reused.
      get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`/metrics answered ${res.statusCode}`))));
      }).on('error', reject);
    });
  }

  /** The /metrics text once the agent has ended `count` full resyncs (polled every second); rejects after `timeoutMs`. */
  afterResyncs(count: number, timeoutMs: number): Promise<string> {
    return until(async () => {
      const text = await this.metrics();
      return metricValue(text, 'ipvs_janitor_reconcile_duration_seconds_count{trigger="resync"}') >= count && text;
    }, `the agent's full resync ${count}`, timeoutMs, 1000);
  }

  /** VmRSS and VmHWM (peak) in MiB. */
  memory(): { rssMiB: number; hwmMiB: number } {
    return processMemory(this.pid);
  }

  /** How it ended (if it did) and what it logged last. */
  describe(): string {
    const state =
      this.child.exitCode !== null || this.child.signalCode !== null
        ? `exited (${this.child.exitCode ?? this.child.signalCode})`
        : 'running';
    return `agent ${state}; its last log lines:\n${this.recent.join('\n')}`;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    await this.exited;
  }

  private onLine(text: string): void {
    this.recent.push(text);
    if (this.recent.length > KEPT_LINES) this.recent.shift();
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      this.say(`agent: ${text}`);
      return;
    }
    if (line.message === 'ipvs-janitor started') this.metricsPort = Number(line.metricsPort);
    if (line.level === 'error' || line.level === 'warn') this.say(`agent ${line.level}: ${text}`);
    for (const waiter of this.waiters) {
      if (!waiter.match(line)) continue;
      this.waiters.delete(waiter);
      waiter.resolve(line);
    }
  }
}

/** VmRSS and VmHWM (peak) in MiB from the text of /proc/<pid>/status. */
export function procMemory(status: string): { rssMiB: number; hwmMiB: number } {
  const kib = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!m) throw new Error(`/proc status has no ${field} line`);
    return Number(m[1]);
  };
  return { rssMiB: kib('VmRSS') / 1024, hwmMiB: kib('VmHWM') / 1024 };
}

/** VmRSS and VmHWM (peak) in MiB of the running process `pid`. */
export const processMemory = (pid: number): { rssMiB: number; hwmMiB: number } =>
  procMemory(readFileSync(`/proc/${pid}/status`, 'utf8'));

/** Seconds the agent's full resyncs took together, from its /metrics text. */
export const resyncSecondsSum = (text: string): number =>
  metricValue(text, 'ipvs_janitor_reconcile_duration_seconds_sum{trigger="resync"}');

/** A sample's value in Prometheus text format; 0 for a labelled series not observed yet. */
export function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}
