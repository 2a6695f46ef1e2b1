// kube-proxy's own KubeProxyConfiguration (the file it is started with, from the kube-system/kube-proxy ConfigMap):
// the agent takes its node-port addresses, bind address and mode from it, so the two never disagree.
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { parseNodePortAddresses, InvalidNodePortAddresses, type NodePortAddresses } from './nodeport-addresses.js';

const API_VERSION = 'kubeproxy.config.k8s.io/v1alpha1';
const KIND = 'KubeProxyConfiguration';

/** The modes kube-proxy accepts on Linux (validateProxyModeLinux); "kernelspace" is Windows'. */
export const PROXY_MODES = ['iptables', 'ipvs', 'nftables'] as const;
export type ProxyMode = (typeof PROXY_MODES)[number];

export interface KubeProxySettings {
  /** After kube-proxy's Linux default: an empty mode is iptables. */
  readonly mode: ProxyMode;
  readonly nodePortAddresses: NodePortAddresses;
  /** Overrides the node's primary IP of its family when it is a specified address (default 0.0.0.0: not). */
  readonly bindAddress: string;
  /** Where kube-proxy serves /metrics and /proxyMode, after its default (127.0.0.1:10249). */
  readonly metricsBindAddress: string;
}

export class KubeProxyConfigError extends Error {
  override readonly name = 'KubeProxyConfigError';
}

const METRICS_PORT = 10249;

function stringList(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    throw new KubeProxyConfigError(`${field} must be a list of strings`);
  }
  return value;
}

function optionalString(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new KubeProxyConfigError(`${field} must be a string`);
  return value;
}

/** proxyutil.AppendPortIfNeeded: "0.0.0.0" becomes "0.0.0.0:10249", "[::1]" or "::1" becomes "[::1]:10249". */
function withMetricsPort(address: string): string {
  if (/^\[.*\]:\d+$/.test(address) || /^[^:]+:\d+$/.test(address)) return address;
  const host = address.replace(/^\[|\]$/g, '');
  return host.includes(':') ? `[${host}]:${METRICS_PORT}` : `${host}:${METRICS_PORT}`;
}

/**
 * Reads the fields the agent needs, with kube-proxy's defaults and validation for them. Fields it does not use
 * are not checked: kube-proxy itself validates its file.
 * @throws KubeProxyConfigError naming the field and the problem
 */
export function parseKubeProxyConfiguration(text: string): KubeProxySettings {
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    throw new KubeProxyConfigError(`not YAML: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new KubeProxyConfigError(`not a ${KIND} (the document is not a mapping)`);
  }
  const config = doc as Record<string, unknown>;
  if (config.apiVersion !== API_VERSION || config.kind !== KIND) {
    throw new KubeProxyConfigError(
      `apiVersion ${JSON.stringify(config.apiVersion)}, kind ${JSON.stringify(config.kind)}: expected ${API_VERSION} ${KIND}`,
    );
  }
  const rawMode = optionalString(config.mode, 'mode') ?? 'iptables';
  if (!(PROXY_MODES as readonly string[]).includes(rawMode)) {
    throw new KubeProxyConfigError(`mode ${JSON.stringify(rawMode)} is not one of ${PROXY_MODES.join(', ')}`);
  }
  const mode = rawMode as ProxyMode;
  let entries = stringList(config.nodePortAddresses, 'nodePortAddresses');
  // platformApplyDefaults: nftables mode without nodePortAddresses uses the primary IPs.
  if (mode === 'nftables' && entries.length === 0) entries = ['primary'];
  let nodePortAddresses: NodePortAddresses;
  try {
    nodePortAddresses = parseNodePortAddresses(entries);
  } catch (err) {
    if (err instanceof InvalidNodePortAddresses) throw new KubeProxyConfigError(`nodePortAddresses: ${err.message}`);
    throw err;
  }
  if (nodePortAddresses.kind === 'exact') {
    throw new KubeProxyConfigError(
      `nodePortAddresses: ${JSON.stringify(entries)} are IPs, not CIDRs; kube-proxy rejects them (write e.g. ${entries[0]}/32)`,
    );
  }
  const bindAddress = optionalString(config.bindAddress, 'bindAddress') ?? '0.0.0.0';
  const metricsBindAddress = withMetricsPort(
    optionalString(config.metricsBindAddress, 'metricsBindAddress') ?? '127.0.0.1',
  );
  return { mode, nodePortAddresses, bindAddress, metricsBindAddress };
}

/** @throws KubeProxyConfigError naming the file */
export function readKubeProxyConfiguration(path: string): KubeProxySettings {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new KubeProxyConfigError(`cannot read kube-proxy configuration ${path}: ${code}`);
  }
  try {
    return parseKubeProxyConfiguration(text);
  } catch (err) {
    if (err instanceof KubeProxyConfigError) throw new KubeProxyConfigError(`kube-proxy configuration ${path}: ${err.message}`);
    throw err;
  }
}
