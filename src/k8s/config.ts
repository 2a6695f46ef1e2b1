// Kubernetes client configuration, and the one-line descriptions of API failures the agent logs.
import { existsSync } from 'node:fs';
import { STATUS_CODES } from 'node:http';
// The module itself, not the package index: the index loads every generated API client (see client-node-hooks.ts).
import { KubeConfig } from '@kubernetes/client-node/dist/config.js';
import { ApiStatusError } from './transport.js';

const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** The configuration cannot work; the message is one line meant for the operator. */
export class KubeConfigError extends Error {
  override readonly name = 'KubeConfigError';
}

function firstLine(text: string): string {
  return text.split('\n', 1)[0] ?? '';
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * From a kubeconfig file when `kubeconfigPath` is given, otherwise from the pod's service account. Checks what
 * can be checked without a request, so a typo fails at start-up rather than as a stream of informer errors;
 * whether the server answers shows later, through describeKubeError.
 */
export function loadKubeConfig(kubeconfigPath?: string): KubeConfig {
  const kc = new KubeConfig();
  const source = kubeconfigPath ? `kubeconfig ${kubeconfigPath}` : 'in-cluster configuration';
  if (kubeconfigPath) {
    try {
      kc.loadFromFile(kubeconfigPath);
    } catch (err) {
      throw new KubeConfigError(`cannot load ${source}: ${firstLine(messageOf(err))}`);
    }
  } else {
    if (!process.env.KUBERNETES_SERVICE_HOST || !process.env.KUBERNETES_SERVICE_PORT) {
      throw new KubeConfigError('no --kubeconfig given and not in a pod (KUBERNETES_SERVICE_HOST/PORT unset)');
    }
    // loadFromCluster reads the token only at the first request, where its absence reads as an obscure ENOENT.
    if (!existsSync(SERVICE_ACCOUNT_TOKEN)) {
      throw new KubeConfigError(
        `${source}: no service account token at ${SERVICE_ACCOUNT_TOKEN} (automountServiceAccountToken off?)`,
      );
    }
    kc.loadFromCluster();
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new KubeConfigError(`${source}: no cluster for the current context "${kc.getCurrentContext()}"`);
  let url: URL;
  try {
    url = new URL(cluster.server);
  } catch {
    throw new KubeConfigError(`${source}: cluster "${cluster.name}" has no valid server URL ("${cluster.server}")`);
  }
  // client-node refuses plain HTTP at every request otherwise, with a message that does not name the file.
  if (url.protocol === 'http:' && !cluster.skipTLSVerify) {
    throw new KubeConfigError(
      `${source}: server ${cluster.server} is plain HTTP but insecure-skip-tls-verify is not set`,
    );
  }
  return kc;
}

/** Network error codes that mean an open connection was lost, as opposed to one never made. */
const CONNECTION_LOST = new Set(['ECONNRESET', 'EPIPE', 'ERR_STREAM_PREMATURE_CLOSE']);

/**
 * One line for any failure of a list or watch request: the HTTP status and the API's own message, or the network
 * error as it stands.
 */
export function describeKubeError(err: unknown): string {
  let text = messageOf(err);
  if (err instanceof ApiStatusError) {
    const code = err.code;
    text = `API server answered ${code} ${STATUS_CODES[code] ?? ''}${err.apiMessage ? `: ${err.apiMessage}` : ''}`;
    if (code === 401 || code === 403) text += ' (check the credentials and the RBAC rights of the agent\'s identity)';
  } else {
    const { code } = (err ?? {}) as { code?: unknown };
    if (typeof code === 'string' && CONNECTION_LOST.has(code)) text = `connection to the API server lost (${text})`;
  }
  return firstLine(text).replace(/ {2,}/g, ' ').trim();
}
