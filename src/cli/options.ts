// `run` flags, each with an environment variable (flags win), validated into one typed value.
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import { logLevels, type LogLevel } from '../agent/log.js';
import type { AgentOptions } from '../agent/agent.js';
import { InvalidNodePortAddresses, parseNodePortAddresses } from '../k8s/nodeport-addresses.js';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export type RunOptions = AgentOptions;

const flags = {
  kubeconfig: { env: 'KUBECONFIG', type: 'string', help: 'kubeconfig file; default: in-cluster service account' },
  'node-name': { env: 'NODE_NAME', type: 'string', help: 'this node, for logs (from the downward API)' },
  policy: { env: 'IPVS_JANITOR_POLICY', type: 'string', help: 'graceful (default) | drain | immediate' },
  'max-drain-seconds': {
    env: 'IPVS_JANITOR_MAX_DRAIN_SECONDS',
    type: 'string',
    help: 'delete any weight-0 real server older than this, even if served; 0 = no bound (default)',
  },
  'dry-run': { env: 'IPVS_JANITOR_DRY_RUN', type: 'boolean', help: 'decide and log, delete nothing' },
  'resync-period': { env: 'IPVS_JANITOR_RESYNC_PERIOD', type: 'string', help: 'full resync interval (default 60s)' },
  'drain-poll-interval': {
    env: 'IPVS_JANITOR_DRAIN_POLL_INTERVAL',
    type: 'string',
    help: 'how often draining real servers, and those kube-proxy has yet to zero, are read again (default 300ms)',
  },
  'nodeport-addresses': {
    env: 'IPVS_JANITOR_NODEPORT_ADDRESSES',
    type: 'string',
    help:
      'as kube-proxy\'s: comma-separated CIDRs and the keywords primary, localhost, all; default: every node ' +
      'address off kube-ipvs0 (bare IPs: exactly those addresses)',
  },
  'node-ips': {
    env: 'NODE_IPS',
    type: 'string',
    help: 'the node\'s primary IPs, for nodeport-addresses "primary" (the chart sets it from status.hostIPs)',
  },
  'kube-proxy-config': {
    env: 'IPVS_JANITOR_KUBE_PROXY_CONFIG',
    type: 'string',
    help: 'kube-proxy\'s KubeProxyConfiguration file: take nodePortAddresses, bindAddress and mode from it',
  },
  'kube-proxy-metrics-address': {
    env: 'IPVS_JANITOR_KUBE_PROXY_METRICS_ADDRESS',
    type: 'string',
    help: 'kube-proxy\'s metrics server host:port, asked for /proxyMode (default: the file\'s metricsBindAddress, else 127.0.0.1:10249)',
  },
  'metrics-address': {
    env: 'IPVS_JANITOR_METRICS_ADDRESS',
    type: 'string',
    help: 'host:port for /metrics, /healthz, /readyz (default 0.0.0.0:9940)',
  },
  'log-level': { env: 'IPVS_JANITOR_LOG_LEVEL', type: 'string', help: 'error | warn | info (default) | debug' },
  'set-sysctls': {
    env: 'IPVS_JANITOR_SET_SYSCTLS',
    type: 'boolean',
    help: 'at start, set the IPVS sysctls doctor recommends and log what changed',
  },
} as const;

export const runHelp = `usage: ipvs-janitor run [flags]

Deletes IPVS real servers that no serving endpoint backs, on every EndpointSlice/Service event and on a
periodic full resync. Every flag can also be set by the environment variable shown.

${Object.entries(flags)
  .map(([name, f]) => `  --${name}${f.type === 'string' ? ' VALUE' : ''}\n      ${f.help}  [$${f.env}]`)
  .join('\n')}
`;

const durationUnits: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go-style durations as Kubernetes users write them: "60s", "5m", "1h30m", "500ms". */
export function parseDuration(text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== text) {
    throw new UsageError(`invalid duration ${JSON.stringify(text)}: use e.g. 30s, 5m, 1h30m`);
  }
  return parts.reduce((ms, p) => ms + Number(p[1]) * durationUnits[p[2]!]!, 0);
}

function parseBoolean(name: string, text: string): boolean {
  if (/^(1|true|yes)$/i.test(text)) return true;
  if (/^(0|false|no|)$/i.test(text)) return false;
  throw new UsageError(`invalid ${name} ${JSON.stringify(text)}: use true or false`);
}

export function parseRunOptions(args: string[], env: NodeJS.ProcessEnv): RunOptions {
  const { values } = parseArgs({
    args,
    options: Object.fromEntries(Object.entries(flags).map(([name, f]) => [name, { type: f.type }])),
    strict: true,
  });
  const get = (name: keyof typeof flags): string | undefined => {
    const v = values[name];
    if (v !== undefined) return String(v);
    const fromEnv = env[flags[name].env];
    return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
  };

  const mode = get('policy') ?? 'graceful';
  if (mode !== 'graceful' && mode !== 'drain' && mode !== 'immediate') {
    throw new UsageError(`invalid --policy ${JSON.stringify(mode)}: use graceful, drain or immediate`);
  }
  const maxDrain = Number(get('max-drain-seconds') ?? '0');
  if (!Number.isInteger(maxDrain) || maxDrain < 0) {
    throw new UsageError(`invalid --max-drain-seconds ${JSON.stringify(get('max-drain-seconds'))}: use a whole number >= 0`);
  }
  const resyncPeriodMs = parseDuration(get('resync-period') ?? '60s');
  if (resyncPeriodMs < 1000) throw new UsageError('--resync-period must be at least 1s');
  const drainPollIntervalMs = parseDuration(get('drain-poll-interval') ?? '300ms');
  if (drainPollIntervalMs < 10) throw new UsageError('--drain-poll-interval must be at least 10ms');
  const list = (name: keyof typeof flags) => get(name)?.split(',').map((a) => a.trim()).filter(Boolean);
  const nodePortAddresses = list('nodeport-addresses');
  try {
    if (nodePortAddresses) parseNodePortAddresses(nodePortAddresses);
  } catch (err) {
    if (err instanceof InvalidNodePortAddresses) throw new UsageError(`invalid --nodeport-addresses: ${err.message}`);
    throw err;
  }
  const nodeIPs = list('node-ips');
  for (const ip of nodeIPs ?? []) {
    if (!isIP(ip)) throw new UsageError(`invalid --node-ips entry ${JSON.stringify(ip)}: not an IP address`);
  }
  const kubeProxyConfig = get('kube-proxy-config');
  const kubeProxyMetricsAddress = get('kube-proxy-metrics-address');
  if (kubeProxyConfig && nodePortAddresses?.length) {
    throw new UsageError(
      '--nodeport-addresses and --kube-proxy-config both given: kube-proxy\'s file already says which addresses; drop one',
    );
  }
  const logLevel = get('log-level') ?? 'info';
  if (!(logLevels as readonly string[]).includes(logLevel)) {
    throw new UsageError(`invalid --log-level ${JSON.stringify(logLevel)}: use ${logLevels.join(', ')}`);
  }
  const kubeconfig = get('kubeconfig');
  const nodeName = get('node-name');
  return {
    ...(kubeconfig ? { kubeconfig } : {}),
    ...(nodeName ? { nodeName } : {}),
    policy: maxDrain > 0 ? { mode, maxDrainSeconds: maxDrain } : { mode },
    dryRun: parseBoolean('--dry-run', get('dry-run') ?? 'false'),
    resyncPeriodMs,
    drainPollIntervalMs,
    ...(nodePortAddresses?.length ? { nodePortAddresses } : {}),
    ...(nodeIPs?.length ? { nodeIPs } : {}),
    ...(kubeProxyConfig ? { kubeProxyConfig } : {}),
    ...(kubeProxyMetricsAddress ? { kubeProxyMetricsAddress } : {}),
    metricsAddress: get('metrics-address') ?? '0.0.0.0:9940',
    logLevel: logLevel as LogLevel,
    setSysctls: parseBoolean('--set-sysctls', get('set-sysctls') ?? 'false'),
  };
}
