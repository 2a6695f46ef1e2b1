// GET requests to the API server with the kubeconfig's TLS and credentials, abortable from the moment they are
// sent. client-node's Watch cannot be aborted before the server answers with headers (it hands out its
// controller only then), so a server that accepts a watch and never answers would hold it forever.
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';

/** The API server answered a request with an error status, or a watch with an ERROR event. */
export class ApiStatusError extends Error {
  override readonly name = 'ApiStatusError';

  constructor(
    /** HTTP status, or the Status object's code for an ERROR event. */
    readonly code: number,
    /** The API's own message (a metav1.Status message), when it gave one. */
    readonly apiMessage: string | undefined,
  ) {
    super(apiMessage ?? `status ${code}`);
  }
}

/** HTTP 410 Gone: the resourceVersion asked for is older than the server keeps. */
export const STATUS_GONE = 410;

export type Query = Readonly<Record<string, string | number | boolean | undefined>>;

function statusMessage(text: string): string | undefined {
  try {
    const message: unknown = (JSON.parse(text) as { message?: unknown }).message;
    return typeof message === 'string' ? message : undefined;
  } catch {
    return text.trim().split('\n', 1)[0] || undefined;
  }
}

/** The whole body, calling `onData` at each chunk (a sign of life for a caller's idle timer). */
async function readBody(res: IncomingMessage, onData: () => void = () => {}): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of res) {
    chunks.push(chunk as Buffer);
    onData();
  }
  return Buffer.concat(chunks).toString();
}

/**
 * Sends GET `path?query` and resolves with the response once its status is 200; any other status rejects with an
 * ApiStatusError carrying the API's message. Aborting `signal` ends the request or the response at any point.
 */
export async function apiGet(kc: KubeConfig, path: string, query: Query, signal: AbortSignal): Promise<IncomingMessage> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error(`no cluster for the current context "${kc.getCurrentContext()}"`);
  const url = new URL(cluster.server.replace(/\/+$/, '') + path);
  for (const [key, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(key, String(value));
  // Per request: an in-cluster token is re-read from its file when it is due.
  const options: RequestOptions = {};
  await kc.applyToHTTPSOptions(options);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = send(url, { ...options, method: 'GET', signal, headers: { ...options.headers, accept: 'application/json' } });
    req.once('response', resolve);
    req.once('error', reject);
    req.end();
  });
  if (res.statusCode === 200) return res;
  throw new ApiStatusError(res.statusCode ?? 0, statusMessage(await readBody(res).catch(() => '')));
}

/** Calls `onLine` for each newline-terminated line of the body, in order; resolves when the body ends. */
export async function forEachLine(res: IncomingMessage, onLine: (line: string) => void): Promise<void> {
  res.setEncoding('utf8');
  let partial = '';
  for await (const chunk of res) {
    const lines = (partial + (chunk as string)).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line !== '') onLine(line);
  }
  if (partial !== '') onLine(partial);
}

/** The whole body as JSON; `onData` runs at each chunk. */
export async function readJson<T>(res: IncomingMessage, onData: () => void): Promise<T> {
  return JSON.parse(await readBody(res, onData)) as T;
}
