// Debian's nginx as the reverse proxy in front of Services, in its own network namespace inside the test VM, the
// way the operators who reported the failure ran it: `proxy_pass` to a ClusterIP, one short upstream connection
// per request (HTTP/1.0, no keepalive). Its access log gives the status and upstream of every request.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { until } from './poll.js';

export const NGINX = '/usr/sbin/nginx';

export interface NginxRoute {
  /** Requests under /<prefix>/ go to the upstream with the prefix stripped. */
  prefix: string;
  /** An address:port, e.g. a ClusterIP and its port. */
  upstream: string;
}

export interface NginxOptions {
  /** A writable directory (the VM's root is read-only): config, pid, logs, temp files. */
  dir: string;
  /** The network namespace nginx runs in (`ip netns exec`). */
  netns: string;
  /** The address nginx listens on, in that namespace. */
  listen: string;
  routes: readonly NginxRoute[];
  /** proxy_connect_timeout: a SYN that gets no answer ends as 504 after this long. */
  connectTimeoutMs?: number;
}

/** One access-log line. `at`: when nginx finished the request (ms since the epoch, the VM's clock). */
export interface AccessLogEntry {
  at: number;
  status: number;
  /** The route's prefix. */
  prefix: string;
  /** The upstream address(es) nginx tried, '-' when none. */
  upstream: string;
  /** The upstream's status, '-' when no upstream answered. */
  upstreamStatus: string;
  requestSeconds: number;
}

export function nginxProblems(): string[] {
  return existsSync(NGINX) ? [] : [`${NGINX} is missing (Debian package nginx-light; run .ci/setup)`];
}

/** $msec status "uri" upstream upstream_status request_time */
const LOG_FORMAT = `'$msec $status "$request_uri" $upstream_addr $upstream_status $request_time'`;

export function nginxConfig(o: NginxOptions): string {
  const d = o.dir;
  const connect = Math.max(1, Math.round((o.connectTimeoutMs ?? 1000) / 1000));
  return [
    'daemon off;',
    'worker_processes 1;',
    'user root;',
    `pid ${d}/nginx.pid;`,
    `error_log ${d}/error.log warn;`,
    'events { worker_connections 1024; }',
    'http {',
    `  log_format demo ${LOG_FORMAT};`,
    `  access_log ${d}/access.log demo;`,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${d}/${t}-temp;`),
    '  server {',
    `    listen ${o.listen}:80;`,
    ...o.routes.flatMap((r) => [
      `    location /${r.prefix}/ {`,
      `      proxy_pass http://${r.upstream}/;`,
      // HTTP/1.0 and no upstream keepalive: every request is a new connection from a new (reused) source port.
      '      proxy_http_version 1.0;',
      '      proxy_set_header Connection close;',
      `      proxy_connect_timeout ${connect}s;`,
      '      proxy_read_timeout 30s;',
      '      proxy_buffering off;',
      // One upstream address: a failed attempt is the client's answer (502 or 504), as in the operators' setup.
      '      proxy_next_upstream off;',
      '    }',
    ]),
    '  }',
    '}',
    '',
  ].join('\n');
}

export function parseAccessLog(text: string): AccessLogEntry[] {
  const out: AccessLogEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+\.\d+) (\d{3}) "\/([^/"]*)\/[^"]*" (\S+) (\S+) (\S+)$/.exec(line);
    if (!m) continue;
    out.push({
      at: Math.round(Number(m[1]) * 1000),
      status: Number(m[2]),
      prefix: m[3]!,
      upstream: m[4]!,
      upstreamStatus: m[5]!,
      requestSeconds: Number(m[6]),
    });
  }
  return out;
}

export class Nginx {
  private constructor(
    private readonly child: ChildProcess,
    readonly dir: string,
    private stderr: string,
  ) {}

  static async start(o: NginxOptions): Promise<Nginx> {
    const problems = nginxProblems();
    if (problems.length > 0) throw new Error(`cannot start nginx: ${problems.join('; ')}`);
    mkdirSync(o.dir, { recursive: true });
    const conf = join(o.dir, 'nginx.conf');
    writeFileSync(conf, nginxConfig(o));
    writeFileSync(join(o.dir, 'access.log'), '');
    // -e: the default error log under /var/log is not writable in the VM.
    const child = spawn('ip', ['netns', 'exec', o.netns, NGINX, '-p', o.dir, '-e', join(o.dir, 'error.log'), '-c', conf], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const nginx = new Nginx(child, o.dir, '');
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (nginx.stderr = (nginx.stderr + d).slice(-4000)));
    await until(() => {
      if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}): ${nginx.stderr}${nginx.errorLog()}`);
      return existsSync(join(o.dir, 'nginx.pid'));
    }, 'nginx started', 120_000);
    return nginx;
  }

  accessLog(): AccessLogEntry[] {
    return parseAccessLog(readFileSync(join(this.dir, 'access.log'), 'utf8'));
  }

  errorLog(): string {
    try {
      return readFileSync(join(this.dir, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    // SIGQUIT: nginx's graceful stop; `ip netns exec` passes it on by exec'ing nginx.
    this.child.kill('SIGQUIT');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
