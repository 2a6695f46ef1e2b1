// How the agent names Services, virtual services and kernel errors in its work-queue keys, logs and metrics.
import type { ServiceKey } from '../ipvs/types.js';
import { NetlinkError, NetlinkProtocolError, NetlinkTimeoutError } from '../netlink/errors.js';
import { addressPortKey } from '../reconcile/keys.js';
import type { ServiceRef } from '../reconcile/types.js';

// Namespaces and names are DNS labels/subdomains: neither holds a '/'.
export const refKey = (ref: ServiceRef) => `${ref.namespace}/${ref.name}`;
export function refOf(key: string): ServiceRef {
  const slash = key.indexOf('/');
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export function describeServiceKey(key: ServiceKey): string {
  if (key.kind === 'fwmark') return `FWM ${key.fwmark}${key.family === 'ipv6' ? ' IPv6' : ''}`;
  let where: string;
  try {
    where = addressPortKey(key.address, key.port);
  } catch {
    // Logging the address that made a reconcile throw must not throw too.
    where = `${key.address} port ${key.port}`;
  }
  return `${key.protocol.toUpperCase()} ${where}`;
}

export function errnoLabel(err: unknown): string {
  if (err instanceof NetlinkError) return err.errno;
  if (err instanceof NetlinkTimeoutError) return 'TIMEOUT';
  if (err instanceof NetlinkProtocolError) return 'PROTOCOL';
  return 'OTHER';
}

export const message = (err: unknown) => (err instanceof Error ? err.message : String(err));
