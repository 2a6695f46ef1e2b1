// kube-proxy's own answer to "which proxier runs here": GET /proxyMode on its metrics server (plain HTTP, loopback
// port 10249 by default). The mode in a configuration file says what was asked for; this says what runs.
import { request } from 'node:http';

export type ProxyModeAnswer =
  | { readonly kind: 'mode'; readonly mode: string; readonly url: string }
  | { readonly kind: 'unreachable'; readonly url: string; readonly reason: string };

const TIMEOUT_MS = 2000;

/** host:port as kube-proxy's metricsBindAddress; an unspecified host (0.0.0.0, ::) is asked on loopback. */
export function proxyModeUrl(metricsAddress: string): string {
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(metricsAddress);
  if (!m) throw new TypeError(`kube-proxy metrics address ${JSON.stringify(metricsAddress)} is not host:port`);
  const host = m[1] === '' || /^[0:.]+$/.test(m[1]!) ? '127.0.0.1' : m[1]!;
  return `http://${host.includes(':') ? `[${host}]` : host}:${m[2]}/proxyMode`;
}

/** Never rejects: an unreachable kube-proxy is an answer too (not running, or its metrics bound elsewhere). */
export function askProxyMode(metricsAddress: string): Promise<ProxyModeAnswer> {
  let url: string;
  try {
    url = proxyModeUrl(metricsAddress);
  } catch (err) {
    return Promise.resolve({ kind: 'unreachable', url: metricsAddress, reason: (err as Error).message });
  }
  return new Promise((resolve) => {
    const req = request(url, { timeout: TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk.slice(0, 256)));
      res.on('end', () => {
        if (res.statusCode === 200 && /^[a-z]+$/.test(body.trim())) resolve({ kind: 'mode', mode: body.trim(), url });
        else resolve({ kind: 'unreachable', url, reason: `HTTP ${res.statusCode}: ${JSON.stringify(body.slice(0, 80))}` });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ kind: 'unreachable', url, reason: err.code ?? err.message }));
    req.end();
  });
}

export const DEFAULT_METRICS_ADDRESS = '127.0.0.1:10249';

/** The one line `run` logs at start about kube-proxy's mode: what runs, else what its file asks for. */
export function proxyModeLine(
  answer: ProxyModeAnswer,
  configured: string | undefined,
): { level: 'info' | 'warn'; message: string; fields: Record<string, string> } {
  const mode = answer.kind === 'mode' ? answer.mode : configured;
  const source = answer.kind === 'mode' ? { source: answer.url } : { source: 'kube-proxy configuration file' };
  if (mode === 'ipvs') return { level: 'info', message: 'kube-proxy is in IPVS mode', fields: { mode, ...source } };
  if (mode !== undefined) {
    return {
      level: 'warn',
      message: 'kube-proxy is not in IPVS mode: it leaves no weight-0 real servers, nothing for this agent to clean',
      fields: { mode, ...source },
    };
  }
  return {
    level: 'info',
    message: 'could not ask kube-proxy its mode',
    fields: { url: answer.url, reason: answer.kind === 'unreachable' ? answer.reason : '' },
  };
}
