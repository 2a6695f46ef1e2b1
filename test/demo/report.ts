// From the client's request records, nginx's access log, kube-proxy's log and the rollout's timestamps to one
// result per scenario, the JSON the VM hands back to the host, and the table the demo prints. Pure: tested on
// the host.
import type { RealServerLogLine } from '../support/kube-proxy.js';
import type { AccessLogEntry } from '../support/nginx.js';
import { EMULATION_TEXT, POLICIES, type AgentPolicy, type Death, type KernelEmulation, type Timings } from './scene.js';
import type { CounterChange } from './watcher.js';

/** What the load client records for every request it sent (times: Date.now() in the VM). */
export interface RequestRecord {
  kind: 'short' | 'long';
  startedAt: number;
  endedAt: number;
  /** The client's source port, once connected. */
  port?: number;
  /** The pod that answered, when one did. */
  pod?: string;
  /** Absent when the request got its whole answer. */
  error?: string;
}

export interface ScenarioMarks {
  /** When the slice saying the old endpoint is terminating was written. */
  terminatingAt: number;
  /** When the watcher first saw the old real server at weight 0 (kube-proxy's doing); absent when it never did. */
  weightZeroAt?: number;
  /** When the last slow request ended (the pod ended them, or they broke). */
  inFlightEndedAt: number;
  sliceRemovedAt: number;
  deathAt: number;
  /** When the watcher saw the old real server leave the kernel; absent when it never did. */
  realServerGoneAt?: number;
  /** Old-kernel emulation: when the watcher had set expire_nodest_conn=1, completing the old kernel's behaviour. */
  emulationCompleteAt?: number;
}

export interface RealServerRemoval {
  /** null when no watcher read showed it at weight 0: it left between two reads of the weight-0 state. */
  afterWeightZeroMs: number | null;
  /** Negative when the real server left before its endpoint left the slice. */
  afterSliceRemovalMs: number;
  /** "agent (<reason>)", "kube-proxy", or "?" when nobody owned up. */
  by: string;
}

/** The requests that went through nginx, from its access log. */
export interface NginxCounts {
  requests: number;
  requestsAfterDeath: number;
  /** 502 Bad Gateway answers to requests nginx finished once the old pod was dead. */
  badGatewayAfterDeath: number;
  /** Any answer other than 200 once the old pod was dead (502, 504 when a SYN got no answer at all). */
  failedAfterDeath: number;
  /** Every answer by status. */
  statuses: Record<string, number>;
}

/**
 * The old real server's ActiveConn from the end of the in-flight slow requests to the pod's death (or the real
 * server's removal, when earlier): the pod is alive and only the short requests, new connections on reused
 * tuples included, reach it. `--policy drain` deletes at the first ActiveConn 0 it reads (every 300 ms).
 */
export interface ActiveZero {
  windowMs: number;
  /** Share of the window (time-weighted, from 10 ms reads) with ActiveConn 0 while at weight 0. */
  zeroShare: number;
  /** From the in-flight end to the first read with ActiveConn 0; null when none in the window. */
  firstZeroMs: number | null;
}

/** What kube-proxy did with the old real server, from the kernel and its own log. */
export interface KubeProxyStory {
  /** From the terminating slice's write to the weight 0 in the kernel; null when never seen at weight 0. */
  weightZeroAfterMs: number | null;
  /** It put the real server on its graceful delete list (weight 0, deleted once it has no connections). */
  gracefulList: boolean;
  /** It deleted the real server itself: when, from the endpoint leaving the slice (negative: before). */
  deletedAfterSliceRemovalMs: number | null;
  /** Its "Error in deleting real server" lines about it: its check found the real server gone (the agent's doing). */
  deleteErrors: number;
}

export interface ScenarioResult {
  policy: AgentPolicy;
  emulation: KernelEmulation;
  death: Death;
  requests: number;
  failed: number;
  requestsAfterDeath: number;
  /** Requests started once the old pod began dying that failed. */
  failedAfterDeath: number;
  /** From the death to the start of the last failed request; null when none failed after the death. */
  lastFailureAfterDeathMs: number | null;
  /**
   * Of the requests started once the pod was dead and the old real server had left the kernel, how many and how
   * many failed: what is left of the failure once somebody removed the real server. Null when nobody did.
   */
  afterRemoval: { requests: number; failed: number } | null;
  /** Failed requests (short and long) by error. */
  errors: Record<string, number>;
  longRequests: number;
  longBroken: number;
  realServerRemoval: RealServerRemoval | null;
  /** Connection attempts the client skipped because all its ports were taken: no request, no failure. */
  portsExhausted: number;
  nginx: NginxCounts;
  kubeProxy: KubeProxyStory;
  /** Null when the watcher never saw the real server at weight 0 before the window closed. */
  activeZero: ActiveZero | null;
}

/** Where the VM leaves its DemoResult, in the results share. */
export const RESULT_FILE = 'demo-result.json';

export interface DemoResult {
  date: string;
  kernelRelease: string;
  /** `kube-proxy --version`. */
  kubeProxyVersion: string;
  mode: 'default' | 'full';
  timings: Timings;
  emulations: Record<KernelEmulation, string>;
  scenarios: ScenarioResult[];
  /** Wall time of the scenarios inside the VM (VM clock). */
  scenariosMs: number;
}

export interface ScenarioInput {
  policy: AgentPolicy;
  emulation: KernelEmulation;
  death: Death;
  records: readonly RequestRecord[];
  marks: ScenarioMarks;
  /** "agent (<reason>)" when the agent logged the deletion. */
  removedByAgent: string | undefined;
  portsExhausted: number;
  /** nginx's access log lines of this scene's route. */
  nginx: readonly AccessLogEntry[];
  /** kube-proxy's graceful-termination lines about the old real server. */
  kubeProxy: readonly RealServerLogLine[];
  /** The watcher's counters of the old real server from weight 0 on. */
  counters: readonly CounterChange[];
}

/** ActiveConn over [from, to): the counts hold from one change to the next. */
export function activeZero(timeline: readonly CounterChange[], from: number, to: number): ActiveZero | null {
  const first = timeline[0];
  if (!first || to <= from || first[0] >= to) return null;
  let zeroMs = 0;
  let firstZero: number | null = null;
  timeline.forEach(([at, active], i) => {
    const start = Math.max(at, from);
    const end = Math.min(timeline[i + 1]?.[0] ?? to, to);
    if (active !== 0 || end <= start) return;
    zeroMs += end - start;
    firstZero ??= start;
  });
  const windowMs = to - Math.max(from, first[0]);
  return { windowMs, zeroShare: zeroMs / windowMs, firstZeroMs: firstZero === null ? null : firstZero - from };
}

export function countNginx(entries: readonly AccessLogEntry[], deathAt: number): NginxCounts {
  const after = entries.filter((e) => e.at >= deathAt);
  const statuses: Record<string, number> = {};
  for (const e of entries) statuses[e.status] = (statuses[e.status] ?? 0) + 1;
  return {
    requests: entries.length,
    requestsAfterDeath: after.length,
    badGatewayAfterDeath: after.filter((e) => e.status === 502).length,
    failedAfterDeath: after.filter((e) => e.status !== 200).length,
    statuses,
  };
}

export function kubeProxyStory(lines: readonly RealServerLogLine[], marks: ScenarioMarks): KubeProxyStory {
  const deleted = lines.find((l) => l.message === 'Deleting real server');
  return {
    weightZeroAfterMs: marks.weightZeroAt === undefined ? null : marks.weightZeroAt - marks.terminatingAt,
    gracefulList: lines.some((l) => l.message === 'Adding real server to graceful delete real server list'),
    deletedAfterSliceRemovalMs: deleted ? deleted.at - marks.sliceRemovedAt : null,
    deleteErrors: lines.filter((l) => l.message === 'Error in deleting real server').length,
  };
}

export function summarize(input: ScenarioInput): ScenarioResult {
  const { marks } = input;
  const short = input.records.filter((r) => r.kind === 'short');
  const long = input.records.filter((r) => r.kind === 'long');
  const afterDeath = short.filter((r) => r.startedAt >= marks.deathAt);
  const failedAfterDeath = afterDeath.filter((r) => r.error !== undefined);
  const errors: Record<string, number> = {};
  for (const r of input.records) if (r.error !== undefined) errors[r.error] = (errors[r.error] ?? 0) + 1;
  const gone = marks.realServerGoneAt;
  const removed = gone === undefined ? undefined : Math.max(gone, marks.emulationCompleteAt ?? gone);
  const afterRemoval = removed === undefined ? null : afterDeath.filter((r) => r.startedAt >= removed);
  const kubeProxy = kubeProxyStory(input.kubeProxy, marks);
  const removedBy = input.removedByAgent ?? (kubeProxy.deletedAfterSliceRemovalMs !== null ? 'kube-proxy' : undefined);
  const windowEnd = Math.min(marks.deathAt, marks.realServerGoneAt ?? Infinity);
  return {
    policy: input.policy,
    emulation: input.emulation,
    death: input.death,
    requests: short.length,
    failed: short.filter((r) => r.error !== undefined).length,
    requestsAfterDeath: afterDeath.length,
    failedAfterDeath: failedAfterDeath.length,
    lastFailureAfterDeathMs: failedAfterDeath.length
      ? Math.max(...failedAfterDeath.map((r) => r.startedAt)) - marks.deathAt
      : null,
    afterRemoval: afterRemoval && { requests: afterRemoval.length, failed: afterRemoval.filter((r) => r.error !== undefined).length },
    errors,
    longRequests: long.length,
    longBroken: long.filter((r) => r.error !== undefined).length,
    realServerRemoval:
      gone === undefined
        ? null
        : { afterWeightZeroMs: marks.weightZeroAt === undefined ? null : gone - marks.weightZeroAt, afterSliceRemovalMs: gone - marks.sliceRemovedAt, by: removedBy ?? '?' },
    portsExhausted: input.portsExhausted,
    nginx: countNginx(input.nginx, marks.deathAt),
    kubeProxy,
    activeZero: activeZero(input.counters, marks.inFlightEndedAt, windowEnd),
  };
}

function fail(why: string): never {
  throw new Error(`demo result: ${why}`);
}

const NUMBER_FIELDS = [
  'requests',
  'failed',
  'requestsAfterDeath',
  'failedAfterDeath',
  'longRequests',
  'longBroken',
  'portsExhausted',
] as const satisfies readonly (keyof ScenarioResult)[];

/** Reads the VM's result file; throws naming the first thing that is not what the host can print. */
export function parseDemoResult(text: string): DemoResult {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    fail(`not JSON (${(err as Error).message})`);
  }
  const result = value as DemoResult;
  if (typeof result !== 'object' || result === null) fail('not an object');
  if (typeof result.date !== 'string' || typeof result.kernelRelease !== 'string') fail('no date or kernelRelease');
  if (typeof result.kubeProxyVersion !== 'string') fail('no kubeProxyVersion');
  if (!Array.isArray(result.scenarios) || result.scenarios.length === 0) fail('no scenarios');
  result.scenarios.forEach((s, i) => {
    for (const field of NUMBER_FIELDS)
      if (!Number.isInteger(s[field]) || s[field] < 0) fail(`scenario ${i}: ${field} is not a count`);
    if (!POLICIES.includes(s.policy)) fail(`scenario ${i}: unknown policy ${s.policy}`);
    if (!(s.emulation in EMULATION_TEXT)) fail(`scenario ${i}: unknown emulation ${s.emulation}`);
    if (s.death !== 'with-slice-update' && s.death !== 'before-slice-update') fail(`scenario ${i}: unknown death ${s.death}`);
    if (s.activeZero !== null && (typeof s.activeZero !== 'object' || !Number.isFinite(s.activeZero.zeroShare)))
      fail(`scenario ${i}: activeZero is neither null nor a measurement`);
    const removal = s.realServerRemoval;
    if (removal !== null && (typeof removal !== 'object' || !Number.isFinite(removal.afterSliceRemovalMs)))
      fail(`scenario ${i}: realServerRemoval is neither null nor a removal`);
    if ((s.afterRemoval === null) !== (removal === null)) fail(`scenario ${i}: afterRemoval and realServerRemoval disagree`);
    if (typeof s.nginx !== 'object' || !Number.isInteger(s.nginx?.badGatewayAfterDeath)) fail(`scenario ${i}: no nginx counts`);
    if (typeof s.kubeProxy !== 'object' || typeof s.kubeProxy?.gracefulList !== 'boolean') fail(`scenario ${i}: no kube-proxy story`);
  });
  return result;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

export function describeRemoval(removal: RealServerRemoval | null): string {
  if (removal === null) return 'never (still there at the end)';
  if (removal.afterSliceRemovalMs >= 0) return `${seconds(removal.afterSliceRemovalMs)} after the endpoint left the slice; by ${removal.by}`;
  const when = removal.afterWeightZeroMs === null ? 'before the watcher\'s next read of weight 0' : `${seconds(removal.afterWeightZeroMs)} after weight 0`;
  return `${when}, before the endpoint left the slice; by ${removal.by}`;
}

export function describeKubeProxy(k: KubeProxyStory): string {
  const parts = [k.weightZeroAfterMs === null ? 'never saw weight 0' : `weight 0 ${seconds(k.weightZeroAfterMs)} after the slice said terminating`];
  if (k.gracefulList) parts.push('graceful list');
  if (k.deletedAfterSliceRemovalMs !== null)
    parts.push(
      k.deletedAfterSliceRemovalMs < 0
        ? 'deleted it itself before the endpoint left the slice'
        : `deleted it itself ${seconds(k.deletedAfterSliceRemovalMs)} after the endpoint left the slice`,
    );
  if (k.deleteErrors > 0) parts.push(`${k.deleteErrors} "Error in deleting real server"`);
  return parts.join('; ');
}

export function describeActiveZero(z: ActiveZero | null): string {
  if (z === null) return '-';
  const share = `${Math.round(z.zeroShare * 100)}% of ${seconds(z.windowMs)}`;
  return z.firstZeroMs === null ? `never in ${seconds(z.windowMs)}` : `${share}, first at +${seconds(z.firstZeroMs)}`;
}

const HEADER = [
  'kernel',
  'agent',
  'pod died',
  'requests (direct + nginx)',
  '502s through nginx after the pod died',
  'failed direct requests after the pod died',
  'failed direct once the real server was gone',
  'in-flight slow requests broken',
  'ActiveConn 0 at weight 0, in-flight ended to death',
  'old real server left the kernel',
  'kube-proxy and the old real server',
];

/** A Markdown table, padded so it also reads in a terminal. */
export function formatTable(scenarios: readonly ScenarioResult[]): string {
  const order = (s: ScenarioResult) => (s.emulation === 'old-kernel' ? 0 : 1);
  const rows = [...scenarios].sort((a, b) => order(a) - order(b)).map((s) => [
    s.emulation,
    s.policy === 'none' ? 'no agent (skip)' : `policy ${s.policy}`,
    s.death === 'with-slice-update' ? 'at the slice update' : 'before the slice update',
    `${s.requests} + ${s.nginx.requests}`,
    `${s.nginx.badGatewayAfterDeath} of ${s.nginx.requestsAfterDeath}` +
      (s.nginx.failedAfterDeath > s.nginx.badGatewayAfterDeath ? ` (+${s.nginx.failedAfterDeath - s.nginx.badGatewayAfterDeath} other)` : ''),
    s.lastFailureAfterDeathMs === null
      ? `0 of ${s.requestsAfterDeath}`
      : `${s.failedAfterDeath} of ${s.requestsAfterDeath}, last at +${seconds(s.lastFailureAfterDeathMs)}`,
    s.afterRemoval === null ? '-' : `${s.afterRemoval.failed} of ${s.afterRemoval.requests}`,
    `${s.longBroken} of ${s.longRequests}`,
    describeActiveZero(s.activeZero),
    describeRemoval(s.realServerRemoval),
    describeKubeProxy(s.kubeProxy),
  ]);
  const numeric = [false, false, false, true, true, true, true, true, false, false, false];
  const widths = HEADER.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell, c) => (numeric[c] ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, c) => (numeric[c] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(HEADER), rule, ...rows.map(line)].join('\n');
}

/** The table with what it measured: kernel, kube-proxy, timeline and what each emulation stands for. */
export function formatReport(result: DemoResult): string {
  const t = result.timings;
  return [
    `IPVS rollout demo, ${result.date}, kernel ${result.kernelRelease} in a QEMU VM, real kube-proxy ` +
      `${result.kubeProxyVersion} (mode ipvs) and kube-apiserver (${result.mode} run, scenarios took ` +
      `${seconds(result.scenariosMs)} of VM time)`,
    '',
    `Clients: ${t.concurrency} concurrent short HTTP requests in a loop (new connection each, ${t.requestTimeoutMs} ms ` +
      'timeout) from 64 source ports with tcp_tw_reuse=1, to the ClusterIP (rr, NAT, two pods); as many through ' +
      'nginx (proxy_pass to the ClusterIP, one upstream connection per request from 64 source ports).',
    `Rollout, as EndpointSlice updates kube-proxy applies: old pod alone for ${seconds(t.warmupMs)}; ` +
      `${t.longRequests} slow requests start on it; new pod ready; old endpoint ready=false, serving=true, ` +
      `terminating=true, and once kube-proxy has set its weight to 0 the old pod serves its slow requests for ` +
      `${seconds(t.gracePeriodMs)} more and ends them, serves short requests for ${seconds(t.lingerMs)} more (a ` +
      `preStop-like delay), and dies (server killed, veth removed) either as its endpoint leaves the slice or ` +
      `${seconds(t.deathLeadMs)} before; traffic goes on for ${seconds(t.afterDeathMs)} after the death.`,
    '',
    ...Object.entries(result.emulations).map(([name, text]) => `${name}: ${text}.`),
    '',
    formatTable(result.scenarios),
  ].join('\n');
}
