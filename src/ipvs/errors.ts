// Expected IPVS failures, each named with what the operator should do about it.
import { NetlinkError } from '../netlink/errors.js';

/** The kernel has no "IPVS" generic netlink family. */
export class IpvsUnavailableError extends Error {
  override readonly name = 'IpvsUnavailableError';
  constructor() {
    super(
      'this kernel has no IPVS (generic netlink family "IPVS" not found): load the ip_vs module (modprobe ip_vs) ' +
        'or run on a node where kube-proxy uses IPVS mode',
    );
  }
}

/** One line for an operator: the failure and, for errnos with a known cause, the remedy. */
export function describeIpvsError(err: unknown): string {
  if (err instanceof NetlinkError && err.errno === 'EPERM') {
    return `${err.message}: IPVS needs CAP_NET_ADMIN; run as root or grant the NET_ADMIN capability`;
  }
  return err instanceof Error ? err.message : String(err);
}
