// The node side of exposure.ts: gathers the facts it judges, and reports or fixes what it found for the agent.
import { stat } from 'node:fs/promises';
import { release } from 'node:os';
import { IpvsClient } from '../ipvs/client.js';
import { IpvsUnavailableError } from '../ipvs/errors.js';
import { assessExposure, parseKernelRelease, recommendedSysctls, type NodeFacts, type Verdict } from './exposure.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { applySysctls, IPVS_SYSCTL_DIR, readSysctls, sysctlKey, type SysctlChange } from './sysctls.js';

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * The sysctl directory appears when ip_vs is loaded; without it, the netlink family decides, so "no IPVS" means
 * exactly what it means for every other command.
 */
export async function readNodeFacts(sysctlDir = IPVS_SYSCTL_DIR): Promise<NodeFacts> {
  const kernelRelease = release();
  if (await exists(sysctlDir)) return { kernelRelease, ipvs: { kind: 'present', sysctls: await readSysctls(sysctlDir) } };
  try {
    (await IpvsClient.open()).close();
  } catch (err) {
    if (err instanceof IpvsUnavailableError) return { kernelRelease, ipvs: { kind: 'absent' } };
    throw err;
  }
  throw new Error(
    `IPVS answers over netlink but ${sysctlDir} does not exist: the kernel hides the IPVS sysctls from network ` +
      'namespaces owned by a non-initial user namespace; run in the host user namespace to read them',
  );
}

/** One log line with the verdict, and the node_exposed gauge, at agent start. */
export async function logExposure(
  log: Logger,
  metrics: Metrics,
  readFacts: () => Promise<NodeFacts> = readNodeFacts,
): Promise<Verdict> {
  const facts = await readFacts();
  const verdict = assessExposure(facts);
  metrics.nodeExposed.set(verdict.kind === 'exposed' ? 1 : 0);
  log.log(verdict.kind === 'exposed' ? 'warn' : 'info', 'port-reuse exposure', {
    kernelRelease: facts.kernelRelease,
    sysctls: facts.ipvs.kind === 'present' ? facts.ipvs.sysctls : undefined,
    verdict,
  });
  return verdict;
}

/** The --set-sysctls opt-in: brings this node to recommendedSysctls and logs each change. */
export async function applyRecommendedSysctls(log: Logger, sysctlDir = IPVS_SYSCTL_DIR): Promise<SysctlChange[]> {
  const changes = await applySysctls(recommendedSysctls(parseKernelRelease(release())), sysctlDir);
  for (const c of changes) log.info('ipvs sysctl set', { sysctl: sysctlKey(c.name), from: c.from, to: c.to });
  if (changes.length === 0) log.info('ipvs sysctls already as recommended');
  return changes;
}
