// `ipvs-janitor doctor`: can port-reused connections reach weight-0 real servers on this node, and what fixes it.
import { assessExposure, type NodeFacts, type Verdict } from '../agent/exposure.js';
import { readNodeFacts } from '../agent/exposure-report.js';
import { askProxyMode, DEFAULT_METRICS_ADDRESS, type ProxyModeAnswer } from '../k8s/kube-proxy-mode.js';
import { ipvsSysctlFiles, sysctlCommand, sysctlKey, type IpvsSysctlName, type SysctlChange } from '../agent/sysctls.js';

const exitCodes: Record<Verdict['kind'], number> = { 'not-exposed': 0, exposed: 3, 'no-ipvs': 4 };

const commands = (changes: SysctlChange[]) => changes.map((c) => `  ${sysctlCommand(c)}\n`).join('');
const bullets = (lines: string[]) => lines.map((l) => `  - ${l}\n`).join('');

function formatVerdict(v: Verdict): string {
  switch (v.kind) {
    case 'no-ipvs':
      return `NO IPVS: ${v.reason}\n`;
    case 'exposed':
      return (
        'EXPOSED: port-reused connections can reach weight-0 real servers on this node.\n' +
        `${v.reason}.\n\n` +
        `Kernel: ${v.kernelFix}.\n\n` +
        `What to do: ${v.advice}.\n` +
        commands(v.fixes) +
        (v.caveats.length ? `\nAlso:\n${bullets(v.caveats)}` : '')
      );
    case 'not-exposed':
      return (
        'NOT EXPOSED: port-reused connections cannot reach weight-0 real servers on this node.\n' +
        `${v.reason}.\n` +
        (v.tuning.length ? `\nRecommended for this kernel:\n${commands(v.tuning)}` : '') +
        (v.caveats.length ? `\nCaveats:\n${bullets(v.caveats)}` : '')
      );
  }
}

/** What kube-proxy's metrics server says of its mode; another mode than IPVS leaves nothing to clean. */
function formatProxyMode(answer: ProxyModeAnswer): { line: string; note: string } {
  if (answer.kind === 'unreachable') return { line: `proxy    unknown (${answer.url}: ${answer.reason})\n`, note: '' };
  const line = `proxy    kube-proxy in ${answer.mode} mode (${answer.url})\n`;
  if (answer.mode === 'ipvs') return { line, note: '' };
  return { line, note: `\nkube-proxy runs in ${answer.mode} mode: it leaves no weight-0 real servers, this node needs no ipvs-janitor.\n` };
}

function formatReport(facts: NodeFacts, verdict: Verdict, proxy: ProxyModeAnswer): string {
  const { line, note } = formatProxyMode(proxy);
  const head = `kernel   ${facts.kernelRelease}\nIPVS     ${facts.ipvs.kind}\n${line}`;
  if (facts.ipvs.kind === 'absent') return `${head}\n${formatVerdict(verdict)}${note}`;
  const { sysctls } = facts.ipvs;
  const values = (Object.keys(ipvsSysctlFiles) as IpvsSysctlName[])
    .map((name, i) => `${i === 0 ? 'sysctls' : '       '}  ${sysctlKey(name)} = ${sysctls[name]}\n`)
    .join('');
  return `${head}${values}\n${formatVerdict(verdict)}${note}`;
}

/**
 * Prints the report; resolves with the exit code: 0 not exposed, 3 exposed, 4 no IPVS. kube-proxy's mode, asked of
 * its metrics server at `kubeProxyMetricsAddress`, is reported and does not change the exit code.
 */
export async function doctor(json: boolean, kubeProxyMetricsAddress = DEFAULT_METRICS_ADDRESS): Promise<number> {
  const [facts, kubeProxy] = await Promise.all([readNodeFacts(), askProxyMode(kubeProxyMetricsAddress)]);
  const verdict = assessExposure(facts);
  process.stdout.write(json ? `${JSON.stringify({ ...facts, kubeProxy, verdict }, null, 2)}\n` : formatReport(facts, verdict, kubeProxy));
  return exitCodes[verdict.kind];
}
