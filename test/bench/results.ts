// What one benchmark boot measured, and its rendering as the results table (Markdown, so it pastes into the README).

/** Milliseconds. */
export interface Distribution {
  samples: number;
  p50: number;
  p99: number;
  max: number;
}

export interface ReadFigures {
  services: number;
  destinations: number;
  /** readTable() in this process, per run. */
  ourMs: number[];
  /** `ipvsadm -Ln > /dev/null`, the whole process, per run; interleaved with ours so both see the same load. */
  ipvsadmMs: number[];
  /** `ipvs-janitor list > /dev/null`, the whole process, per run. */
  cliMs: number[];
  /** The ipvsadm runs interleaved with the CLI runs. */
  cliIpvsadmMs: number[];
}

export interface LatencyFigures {
  services: number;
  /** The agent's own measure: its event_to_deletion histogram, read per deletion (exact: one observation each). */
  agent: Distribution;
  /**
   * From the slice's PUT going out (to the real kube-apiserver on the host, through the VM's forwarded port) to the
   * agent's "deleted real server" log line (wall clock, 1 ms resolution).
   */
  endToEnd: Distribution;
  /** One GET_DEST dump of the service plus one DEL_DEST, by this process's client, interleaved with the above. */
  floor: Distribution;
}

export interface ProfileEntry {
  function: string;
  location: string;
  selfPercent: number;
}

export interface BenchResults {
  date: string;
  kernel: string;
  node: string;
  /** The VM's clock source: under emulation every clock read may trap, which matters to per-request costs. */
  clockSource: string;
  read: ReadFigures[];
  /**
   * perf_hooks.monitorEventLoopDelay during the in-process reads of the largest table (the worst run), and over
   * as long a stretch of this process doing nothing: what the VM and the host's load add by themselves.
   */
  eventLoopDelay: { services: number; resolutionMs: number; p99Ms: number; maxMs: number; idleP99Ms: number; idleMaxMs: number };
  /**
   * Whole processes: `node -e 0`, and Node importing src/agent/agent.js (the Kubernetes client, logging, metrics),
   * with that process's resident memory once loaded: the agent's fixed cost before it caches anything.
   */
  startup: { nodeMs: number; agentImportMs: number; agentImportRssMiB: number };
  /** Absent when the boot measured only the reads (`npm run bench -- --only read`). */
  memory?: { services: number; endpoints: number; vmRssMiB: number; vmHwmMiB: number; syncSeconds: number; resyncSeconds: number };
  latency?: LatencyFigures[];
  /** Where an in-process read's time goes, when it is slower than ipvsadm's: self time per function. */
  profile?: { services: number; entries: ProfileEntry[] };
  totalSeconds: number;
}

/** Linear interpolation between order statistics. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error('percentile of no samples');
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

export const median = (values: readonly number[]): number => percentile(values, 50);

export function distribution(values: readonly number[]): Distribution {
  return { samples: values.length, p50: percentile(values, 50), p99: percentile(values, 99), max: Math.max(...values) };
}

export const TARGETS = {
  readRatio: 1.0,
  latencyRatio: 1.2,
  floorMultiple: 2,
  memoryMiB: 128,
  resyncRatio: 1.0,
  eventLoopDelayMs: 20,
  eventLoopDelayMaxMs: 100,
} as const;

const ms = (v: number): string => (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(1)} ms`);
const verdict = (ok: boolean): string => (ok ? 'met' : '**missed**');
const k = (n: number): string => (n >= 1000 ? `${n / 1000}k` : String(n));

export function renderTable(r: BenchResults): string {
  const rows: string[][] = [];
  for (const read of r.read) {
    const size = `${k(read.services)} services × ${read.destinations / read.services}`;
    const ours = median(read.ourMs);
    const theirs = median(read.ipvsadmMs);
    rows.push([
      `full read, ${size}: readTable in-process / \`ipvsadm -Ln\``,
      `${ms(ours)} / ${ms(theirs)} = **${(ours / theirs).toFixed(2)}** (medians, n=${read.ourMs.length})`,
      `≤ ${TARGETS.readRatio.toFixed(1)}`,
      verdict(ours / theirs <= TARGETS.readRatio),
    ]);
    const cli = median(read.cliMs);
    const cliTheirs = median(read.cliIpvsadmMs);
    rows.push([
      `full read, ${size}: \`ipvs-janitor list\` process / \`ipvsadm -Ln\` process`,
      `${ms(cli)} / ${ms(cliTheirs)} = **${(cli / cliTheirs).toFixed(2)}** (medians, n=${read.cliMs.length})`,
      `≤ ${TARGETS.readRatio.toFixed(1)}`,
      verdict(cli / cliTheirs <= TARGETS.readRatio),
    ]);
  }
  const latency = r.latency ?? [];
  const [small, large] = [...latency].sort((a, b) => a.services - b.services);
  for (const l of latency) {
    rows.push([
      `event → deletion, ${k(l.services)} services: agent (event received → deleted), p50 / p99`,
      `${ms(l.agent.p50)} / ${ms(l.agent.p99)} (n=${l.agent.samples})`,
      `p99 ≤ ${TARGETS.floorMultiple} × floor p99 = ${ms(TARGETS.floorMultiple * l.floor.p99)}`,
      verdict(l.agent.p99 <= TARGETS.floorMultiple * l.floor.p99),
    ]);
    rows.push([
      `event → deletion, ${k(l.services)} services: end to end (slice PUT sent → deleted), p50 / p99`,
      `${ms(l.endToEnd.p50)} / ${ms(l.endToEnd.p99)}`,
      `p99 ≤ ${TARGETS.floorMultiple} × floor p99 = ${ms(TARGETS.floorMultiple * l.floor.p99)}`,
      verdict(l.endToEnd.p99 <= TARGETS.floorMultiple * l.floor.p99),
    ]);
    rows.push([
      `floor, ${k(l.services)} services: one GET_DEST dump + one DEL_DEST, p50 / p99`,
      `${ms(l.floor.p50)} / ${ms(l.floor.p99)}`,
      '',
      '',
    ]);
  }
  if (small && large && small !== large) {
    const ratio = (pick: (l: LatencyFigures) => number): number => pick(large) / pick(small);
    for (const [what, of] of [
      ['agent', (l: LatencyFigures) => l.agent],
      ['end to end', (l: LatencyFigures) => l.endToEnd],
    ] as const) {
      const p99 = ratio((l) => of(l).p99);
      rows.push([
        `event → deletion p99, ${what}: ${k(large.services)} / ${k(small.services)} services (p50 ratio; the floor's p99 ratio)`,
        `**${p99.toFixed(2)}** (${ratio((l) => of(l).p50).toFixed(2)}; ${ratio((l) => l.floor.p99).toFixed(2)})`,
        `≤ ${TARGETS.latencyRatio}`,
        verdict(p99 <= TARGETS.latencyRatio),
      ]);
    }
  }
  const m = r.memory;
  if (m) {
    rows.push([
      `agent RSS, ${k(m.services)} Services + ${k(m.endpoints)} endpoints, after sync + full resync (peak)`,
      `**${m.vmRssMiB.toFixed(0)} MiB** (${m.vmHwmMiB.toFixed(0)} MiB)`,
      `≤ ${TARGETS.memoryMiB} MiB`,
      verdict(m.vmRssMiB <= TARGETS.memoryMiB),
    ]);
    const largeRead = r.read.find((read) => read.services === m.services);
    const ipvsadm = largeRead ? median(largeRead.ipvsadmMs) / 1000 : NaN;
    rows.push([
      `agent full resync, ${k(m.services)} Services / \`ipvsadm -Ln\` full read of the same table`,
      `${m.resyncSeconds.toFixed(1)} s / ${ipvsadm.toFixed(1)} s = **${(m.resyncSeconds / ipvsadm).toFixed(2)}**`,
      `≤ ${TARGETS.resyncRatio.toFixed(1)}`,
      verdict(m.resyncSeconds / ipvsadm <= TARGETS.resyncRatio),
    ]);
  }
  const e = r.eventLoopDelay;
  rows.push([
    `event-loop delay during a full read of ${k(e.services)} services, p99 (max); idle: p99 (max)`,
    `**${e.p99Ms.toFixed(1)} ms** (${e.maxMs.toFixed(1)} ms); idle ${e.idleP99Ms.toFixed(1)} ms (${e.idleMaxMs.toFixed(1)} ms)`,
    `p99 ≤ ${TARGETS.eventLoopDelayMs} ms, max ≤ ${TARGETS.eventLoopDelayMaxMs} ms`,
    verdict(e.p99Ms <= TARGETS.eventLoopDelayMs && e.maxMs <= TARGETS.eventLoopDelayMaxMs),
  ]);
  rows.push([
    'process start: `node -e 0` / Node importing the agent module, and that process\'s RSS (the agent\'s fixed cost)',
    `${ms(r.startup.nodeMs)} / ${ms(r.startup.agentImportMs)}, ${r.startup.agentImportRssMiB.toFixed(0)} MiB`,
    '',
    '',
  ]);
  const lines = [
    `Measured ${r.date} in one QEMU/TCG boot (kernel ${r.kernel}, Node ${r.node}, clock source ${r.clockSource}); ` +
      'every ratio compares two times from that boot.',
    '',
    '| figure | measured | target | |',
    '|---|---|---|---|',
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ];
  if (r.profile) {
    lines.push(
      '',
      `Where an in-process read of ${k(r.profile.services)} services spends its time (CPU profile, self time):`,
      '',
      '| self | function | where |',
      '|---|---|---|',
      ...r.profile.entries.map((p) => `| ${p.selfPercent.toFixed(1)} % | ${p.function} | ${p.location} |`),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** One rollout step on one Service, timed inside the VM from the slice write (the PUT sent) to the kernel's change. */
export interface RolloutSample {
  service: string;
  realServer: string;
  /** Slice says terminating (ready=false, serving=true) → the kernel shows weight 0 (kube-proxy's write). */
  kubeProxyWeightZeroMs?: number;
  /** Endpoint removed from the slice → the real server gone from the kernel (the agent's delete). */
  agentDeletionMs?: number;
  /** The same, to the timestamp of the agent's "deleted real server" line. */
  agentLogMs?: number;
  /** The agent's own part: its event_to_deletion histogram (event received → deleted), when an event did it. */
  agentEventToDeletionMs?: number;
  /** The agent's `trigger` for that deletion: `event`, `resync` or `follow-up`. */
  trigger?: string;
  /** The PUT's round trip through the forwarded port, included in both times above. */
  writeMs: number[];
  /** What went wrong with this sample, when something did. */
  error?: string;
}

/**
 * The real kube-proxy (IPVS mode) and the agent in one QEMU boot, both against one real kube-apiserver filled with
 * the same Services and endpoints (kube-proxy.ts). Absent figures are measurements that did not complete; `failure`
 * says why.
 */
export interface KubeProxyBench {
  date: string;
  kernel: string;
  kubeProxyVersion: string;
  services: number;
  endpoints: number;
  /** Host side: creating the objects through the API. */
  populateSeconds: number;
  kubeProxy: {
    /** From its start until the kernel held every virtual service and real server. */
    firstSyncSeconds?: number;
    /** Virtual services in the kernel when the wait for the full table ended (all of them unless it failed). */
    servicesProgrammed: number;
    /**
     * kube-proxy's ipset entries, loaded by the bench in one `ipset restore` into the sets kube-proxy created
     * (kube-proxy-ipsets.ts), and the entries kube-proxy added / removed itself up to its first full table.
     */
    ipsetSeed?: { entries: number; loadSeconds: number; added?: number; removed?: number };
    /** Its own "syncProxyRules complete" elapsed times (IPv4), in order. */
    syncSeconds: number[];
    /** VmRSS / VmHWM once the table was complete, and at the end of the run (after the rollouts). */
    rssMiB?: number;
    hwmMiB?: number;
    rssEndMiB?: number;
  };
  agent: {
    syncSeconds?: number;
    resyncSeconds?: number;
    rssMiB?: number;
    hwmMiB?: number;
    rssEndMiB?: number;
  };
  rollouts: RolloutSample[];
  failure?: string;
  totalSeconds: number;
}

const mib = (v: number | undefined): string => (v === undefined ? 'not measured' : `${v.toFixed(0)} MiB`);
const seconds = (v: number | undefined): string => (v === undefined ? 'not measured' : `${v.toFixed(1)} s`);

/** "p50 (samples: a, b, c)" in ms or s; "not measured" when there is no sample. */
function samples(values: readonly (number | undefined)[]): string {
  const got = values.filter((v): v is number => v !== undefined);
  if (got.length === 0) return 'not measured';
  return `median **${ms(median(got))}** (n=${got.length}: ${got.map((v) => ms(v)).join(', ')})`;
}

/** One `--only agent-memory` run: the agent's memory after each of its first full resyncs under `nodeOptions`. */
export interface AgentMemoryRun {
  date: string;
  /** The agent's NODE_OPTIONS ('' for V8's defaults). */
  nodeOptions: string;
  services: number;
  afterResync: { rssMiB: number; hwmMiB: number; resyncSeconds: number }[];
}

export function renderAgentMemory(runs: readonly AgentMemoryRun[]): string {
  const rows = runs.map((r) => {
    const rss = r.afterResync.map((a) => a.rssMiB);
    return `| ${r.date} | ${r.nodeOptions ? `\`${r.nodeOptions}\`` : 'V8 defaults'} | ${Math.min(...rss).toFixed(0)}-${Math.max(...rss).toFixed(0)} MiB ` +
      `(peak ${Math.max(...r.afterResync.map((a) => a.hwmMiB)).toFixed(0)} MiB) | ${r.afterResync.map((a) => a.resyncSeconds.toFixed(1)).join(', ')} s |`;
  });
  return ['| date | agent NODE_OPTIONS | VmRSS after each resync (peak) | each resync |', '|---|---|---|---|', ...rows, ''].join('\n');
}

export function renderKubeProxy(r: KubeProxyBench): string {
  const kp = r.kubeProxy;
  const triggers = r.rollouts.map((s) => s.trigger).filter((t) => t !== undefined);
  const rows = [
    [
      'kube-proxy: first full sync (start → every virtual service and real server in the kernel)',
      kp.firstSyncSeconds === undefined
        ? `not reached: ${kp.servicesProgrammed.toLocaleString('en')} of ${r.services.toLocaleString('en')} virtual services`
        : seconds(kp.firstSyncSeconds),
    ],
    [
      'kube-proxy\'s ipset entries loaded by the bench (one `ipset restore`, as a restarted kube-proxy finds them); added / removed by kube-proxy itself',
      kp.ipsetSeed === undefined
        ? 'none loaded (kube-proxy added every entry itself)'
        : `${kp.ipsetSeed.entries.toLocaleString('en')} in ${seconds(kp.ipsetSeed.loadSeconds)}; ${kp.ipsetSeed.added ?? 'not counted'} / ${kp.ipsetSeed.removed ?? 'not counted'}`,
    ],
    ['kube-proxy: its own sync times (IPv4 "syncProxyRules complete" elapsed), in order', kp.syncSeconds.length ? kp.syncSeconds.map((s) => seconds(s)).join(', ') : 'none logged'],
    ['kube-proxy RSS once the table was complete (peak); at the end', `**${mib(kp.rssMiB)}** (${mib(kp.hwmMiB)}); ${mib(kp.rssEndMiB)}`],
    ['agent: start → informers synced; its first full resync', `${seconds(r.agent.syncSeconds)}; ${seconds(r.agent.resyncSeconds)}`],
    ['agent RSS after sync + full resync (peak); at the end', `**${mib(r.agent.rssMiB)}** (${mib(r.agent.hwmMiB)}); ${mib(r.agent.rssEndMiB)}`],
    ['slice says terminating → kube-proxy sets weight 0 in the kernel', samples(r.rollouts.map((s) => s.kubeProxyWeightZeroMs))],
    [
      `endpoint removed from the slice → the agent deleted the real server (kernel polled every 15 ms)${triggers.length ? `; trigger: ${triggers.join(', ')}` : ''}`,
      samples(r.rollouts.map((s) => s.agentDeletionMs)),
    ],
    ['the same, to the agent\'s "deleted real server" log line', samples(r.rollouts.map((s) => s.agentLogMs))],
    ['of which the agent\'s own part (its event_to_deletion: event received → deleted)', samples(r.rollouts.map((s) => s.agentEventToDeletionMs))],
    ['the slice PUT\'s round trip (in the times above)', samples(r.rollouts.flatMap((s) => s.writeMs))],
  ];
  const errors = r.rollouts.filter((s) => s.error).map((s) => `- ${s.service} (${s.realServer}): ${s.error}`);
  return [
    `The real kube-proxy (${r.kubeProxyVersion}, mode ipvs) and the agent in one QEMU/TCG boot (kernel ${r.kernel}), ${r.date}: ` +
      `both against one real kube-apiserver on the host's loopback (reached through the VM's one forwarded port) holding ` +
      `${r.services.toLocaleString('en')} Services / ${r.endpoints.toLocaleString('en')} endpoints ` +
      `(created in ${r.populateSeconds.toFixed(0)} s); every time is measured inside the VM.`,
    '',
    '| figure | measured |',
    '|---|---|',
    ...rows.map((row) => `| ${row.join(' | ')} |`),
    ...(r.failure ? ['', `**Incomplete:** ${r.failure}`] : []),
    ...(errors.length ? ['', 'Samples that failed:', ...errors] : []),
    '',
  ].join('\n');
}
