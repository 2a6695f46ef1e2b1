// From the client's request records and the rollout's timestamps to one result per scenario, the JSON the VM
// hands back to the host, and the table the demo prints. Pure: tested on the host.
import { EMULATION_TEXT, type AgentPolicy, type KernelEmulation, type Timings } from './scene.js';

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
  terminatingAt: number;
  sliceRemovedAt: number;
  deathAt: number;
  /** When the watcher saw the old real server leave the kernel; absent when it never did. */
  realServerGoneAt?: number;
  /** Old-kernel emulation: when the watcher had set expire_nodest_conn=1, completing the old kernel's behaviour. */
  emulationCompleteAt?: number;
}

export interface RealServerRemoval {
  afterWeightZeroMs: number;
  /** Negative when the real server left before its endpoint left the slice. */
  afterSliceRemovalMs: number;
  /** "agent (<reason>)", "kube-proxy", or "?" when nobody owned up. */
  by: string;
}

export interface ScenarioResult {
  policy: AgentPolicy;
  emulation: KernelEmulation;
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
}

/** Where the VM leaves its DemoResult, in the results share. */
export const RESULT_FILE = 'demo-result.json';

export interface DemoResult {
  date: string;
  kernelRelease: string;
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
  records: readonly RequestRecord[];
  marks: ScenarioMarks;
  removedBy: string | undefined;
  portsExhausted: number;
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
  return {
    policy: input.policy,
    emulation: input.emulation,
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
        : { afterWeightZeroMs: gone - marks.terminatingAt, afterSliceRemovalMs: gone - marks.sliceRemovedAt, by: input.removedBy ?? '?' },
    portsExhausted: input.portsExhausted,
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
  if (!Array.isArray(result.scenarios) || result.scenarios.length === 0) fail('no scenarios');
  result.scenarios.forEach((s, i) => {
    for (const field of NUMBER_FIELDS)
      if (!Number.isInteger(s[field]) || s[field] < 0) fail(`scenario ${i}: ${field} is not a count`);
    if (!['none', 'immediate', 'graceful'].includes(s.policy)) fail(`scenario ${i}: unknown policy ${s.policy}`);
    if (!(s.emulation in EMULATION_TEXT)) fail(`scenario ${i}: unknown emulation ${s.emulation}`);
    const removal = s.realServerRemoval;
    if (removal !== null && (typeof removal !== 'object' || !Number.isFinite(removal.afterSliceRemovalMs)))
      fail(`scenario ${i}: realServerRemoval is neither null nor a removal`);
    if ((s.afterRemoval === null) !== (removal === null)) fail(`scenario ${i}: afterRemoval and realServerRemoval disagree`);
  });
  return result;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

export function describeRemoval(removal: RealServerRemoval | null): string {
  if (removal === null) return 'never (still there at the end)';
  return removal.afterSliceRemovalMs < 0
    ? `${seconds(removal.afterWeightZeroMs)} after weight 0, before the endpoint left the slice; by ${removal.by}`
    : `${seconds(removal.afterSliceRemovalMs)} after the endpoint left the slice; by ${removal.by}`;
}

const HEADER = [
  'kernel',
  'agent',
  'requests',
  'failed after the pod died',
  'failed once the real server was gone',
  'failed overall',
  'in-flight long requests broken',
  'old real server left the kernel',
];

/** A Markdown table, padded so it also reads in a terminal. */
export function formatTable(scenarios: readonly ScenarioResult[]): string {
  const rows = scenarios.map((s) => [
    s.emulation,
    s.policy === 'none' ? 'no agent' : `--policy ${s.policy}`,
    String(s.requests),
    s.lastFailureAfterDeathMs === null
      ? `0 of ${s.requestsAfterDeath}`
      : `${s.failedAfterDeath} of ${s.requestsAfterDeath}, last at +${seconds(s.lastFailureAfterDeathMs)}`,
    s.afterRemoval === null ? '-' : `${s.afterRemoval.failed} of ${s.afterRemoval.requests}`,
    String(s.failed),
    `${s.longBroken} of ${s.longRequests}`,
    describeRemoval(s.realServerRemoval),
  ]);
  const numeric = [false, false, true, true, true, true, true, false];
  const widths = HEADER.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell, c) => (numeric[c] ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, c) => (numeric[c] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(HEADER), rule, ...rows.map(line)].join('\n');
}

/** The table with what it measured: kernel, timeline and what each emulation stands for. */
export function formatReport(result: DemoResult): string {
  const t = result.timings;
  return [
    `IPVS rollout demo, ${result.date}, kernel ${result.kernelRelease} in a QEMU VM (${result.mode} run, ` +
      `scenarios took ${seconds(result.scenariosMs)} of VM time)`,
    '',
    `Client: ${t.concurrency} concurrent short HTTP requests in a loop (new connection each, ${t.requestTimeoutMs} ms ` +
      'timeout) from 64 source ports with tcp_tw_reuse=1, to a NAT virtual service (rr) with two pods.',
    `Rollout: old pod alone for ${seconds(t.warmupMs)}; ${t.longRequests} long requests (${seconds(t.longRequestMs)}) ` +
      `start on it; new pod ready (weight 1); ${seconds(t.newReadyToTerminatingMs)} later the old endpoint is ` +
      `terminating and serving (weight 0) for ${seconds(t.gracePeriodMs)}; then it leaves the slice and the pod dies ` +
      `(server killed, veth removed); traffic goes on for ${seconds(t.afterDeathMs)}.`,
    '',
    ...Object.entries(result.emulations).map(([name, text]) => `${name}: ${text}.`),
    '',
    formatTable(result.scenarios),
  ].join('\n');
}
