// The demo's client, run in its own netns for the whole demo: node load.js
// Takes one JSON command per line on stdin (LoadCommand), answers with JSON lines on stdout (LoadEvent), and
// exits when stdin closes. Every request is a new connection ("Connection: close", no agent), so with the
// client netns's 64 source ports each one reuses a tuple that IPVS still remembers. The same client talks to
// nginx (a path prefix selects the Service there). Runs are named: while one scene ends, the next one's load
// already runs (ports are shared across destinations, so each run still reuses its own tuples).
import { request } from 'node:http';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RequestRecord } from './report.js';

export type LoadCommand =
  | { cmd: 'start'; run: string; host: string; port: number; pathPrefix?: string; concurrency: number; timeoutMs: number }
  /**
   * Slow requests; each reports the pod that took it as soon as the first bytes arrive, and its end. One that
   * receives nothing for idleTimeoutMs is broken.
   */
  | { cmd: 'long'; run: string; count: number; idleTimeoutMs: number }
  | { cmd: 'stop'; run: string };

export type LoadEvent =
  | { event: 'ready' }
  | { event: 'started'; run: string }
  | { event: 'long-started'; run: string; pod: string | undefined }
  | { event: 'long-ended'; run: string; error: string | undefined }
  | { event: 'stopped'; run: string; records: RequestRecord[]; portsExhausted: number }
  | { event: 'error'; message: string };

const emit = (event: LoadEvent): void => void process.stdout.write(`${JSON.stringify(event)}\n`);

const podOf = (body: string): string | undefined => /^pod (\S+)/.exec(body)?.[1];

interface Target {
  host: string;
  port: number;
  pathPrefix: string;
}

/** How long a request may take: in all (short ones), or between two chunks (slow ones, which stream). */
type Deadline = { kind: 'total' | 'idle'; ms: number };

/** 'no-port' when every local port was taken: nothing was sent, so it is neither a request nor a failure. */
function get(
  target: Target,
  kind: RequestRecord['kind'],
  path: string,
  deadline: Deadline,
  onFirstBytes?: (pod: string | undefined) => void,
): Promise<RequestRecord | 'no-port'> {
  return new Promise((resolve) => {
    const startedAt = Date.now();
    let body = '';
    let settled = false;
    const { host, port, pathPrefix } = target;
    const req = request({ host, port, path: `${pathPrefix}${path}`, agent: false, headers: { Connection: 'close' } });
    const finish = (error?: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Bound at connect(), so known even for a connection that never got an answer.
      const port = req.socket?.localPort;
      req.destroy();
      if (error === 'EADDRNOTAVAIL') return resolve('no-port');
      const pod = podOf(body);
      resolve({ kind, startedAt, endedAt: Date.now(), ...(port ? { port } : {}), ...(pod ? { pod } : {}), ...(error ? { error } : {}) });
    };
    let timer = setTimeout(() => finish('TIMEOUT'), deadline.ms);
    req.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
    req.on('response', (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (deadline.kind === 'idle') {
          clearTimeout(timer);
          timer = setTimeout(() => finish('TIMEOUT'), deadline.ms);
        }
        const first = body === '';
        body += chunk;
        if (first) onFirstBytes?.(podOf(body));
      });
      res.on('end', () => {
        if (res.statusCode !== 200) return finish(`HTTP ${res.statusCode}`);
        const whole = podOf(body) !== undefined && (kind === 'short' || body.endsWith(' done\n'));
        finish(whole ? undefined : 'INCOMPLETE');
      });
      res.on('error', (err: NodeJS.ErrnoException) => finish(err.code ?? err.message));
      // Without 'end' first, the connection went away mid-answer.
      res.on('close', () => finish('INCOMPLETE'));
    });
    req.end();
  });
}

interface Run {
  target: Target;
  stopping: boolean;
  records: RequestRecord[];
  portsExhausted: number;
  pending: Promise<void>[];
}

const runs = new Map<string, Run>();

function running(name: string): Run {
  const r = runs.get(name);
  if (!r) throw new Error(`no run ${JSON.stringify(name)}: start it first`);
  return r;
}

async function loop(r: Run, timeoutMs: number): Promise<void> {
  while (!r.stopping) {
    const result = await get(r.target, 'short', '/', { kind: 'total', ms: timeoutMs });
    if (result !== 'no-port') r.records.push(result);
    else {
      r.portsExhausted++;
      await sleep(5);
    }
  }
}

async function handle(command: LoadCommand): Promise<void> {
  switch (command.cmd) {
    case 'start': {
      if (runs.has(command.run)) throw new Error(`run ${JSON.stringify(command.run)} is running already: stop it first`);
      const target = { host: command.host, port: command.port, pathPrefix: command.pathPrefix ?? '' };
      const r: Run = { target, stopping: false, records: [], portsExhausted: 0, pending: [] };
      runs.set(command.run, r);
      for (let i = 0; i < command.concurrency; i++) r.pending.push(loop(r, command.timeoutMs));
      emit({ event: 'started', run: command.run });
      return;
    }
    case 'long': {
      const r = running(command.run);
      for (let i = 0; i < command.count; i++) {
        const onFirstBytes = (pod: string | undefined) => emit({ event: 'long-started', run: command.run, pod });
        r.pending.push(
          get(r.target, 'long', '/slow', { kind: 'idle', ms: command.idleTimeoutMs }, onFirstBytes).then((result) => {
            // A slow request is sent once; a full port range is a failure of the setup, not of IPVS.
            const now = Date.now();
            const record: RequestRecord = result === 'no-port' ? { kind: 'long', startedAt: now, endedAt: now, error: 'EADDRNOTAVAIL' } : result;
            r.records.push(record);
            emit({ event: 'long-ended', run: command.run, error: record.error });
          }),
        );
      }
      return;
    }
    case 'stop': {
      const r = running(command.run);
      r.stopping = true;
      await Promise.all(r.pending);
      runs.delete(command.run);
      emit({ event: 'stopped', run: command.run, records: r.records, portsExhausted: r.portsExhausted });
      return;
    }
  }
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === '') return;
  void handle(JSON.parse(line) as LoadCommand).catch((err: unknown) =>
    emit({ event: 'error', message: err instanceof Error ? err.message : String(err) }),
  );
});
emit({ event: 'ready' });
