// The churn test's pure parts: random EndpointSlice changes as the EndpointSlice controller would write them
// (pods added, terminating with and without serving, removed, addresses reused), the API's history as a recorded
// watch replays it, and the checks on what the agent and kube-proxy did. test/demo/churn.vmtest.ts runs them
// against the real kube-apiserver, kube-proxy and agent in the VM.
import { KUBE_PROXY_CHECK_WINDOW_MS, KUBE_PROXY_SYNC_ALLOWANCE_MS } from '../../src/agent/stale-entries.js';
import { prng } from '../fuzz/mutate.js';
import type { EndpointSpec } from '../support/kube-objects.js';

export interface ChurnSize {
  services: number;
  changes: number;
  /** Mean pause between two changes. */
  meanGapMs: number;
}

/** The CI slice: a few minutes in the VM. */
export const CI_CHURN: ChurnSize = { services: 20, changes: 150, meanGapMs: 300 };
/** The size, behind IPVS_JANITOR_CHURN=full. */
export const FULL_CHURN: ChurnSize = { services: 200, changes: 2000, meanGapMs: 150 };

export const CHURN_NAMESPACE = 'churn';
export const CHURN_POD_PORT = 8080;

export type ChurnOp = 'add' | 'add-reused' | 'terminate-serving' | 'terminate-not-serving' | 'remove';

export interface ChurnChange {
  service: number;
  op: ChurnOp;
  ip: string;
  /** The service's endpoints after the change. */
  endpoints: EndpointSpec[];
}

/** Seeded, so a failing run can be replayed from its seed. */
export const random = prng;

export const serviceName = (i: number) => `churn-${i}`;
export const clusterIP = (i: number) => `10.96.${200 + ((i + 1) >> 8)}.${(i + 1) & 255}`;
/** Pod addresses of service i: 10.241.<i>.<n>, routed to a dummy interface (no pods answer: SYNs vanish). */
export const podIP = (i: number, n: number) => `10.241.${i}.${n}`;

const READY = { ready: true, serving: true, terminating: false };

/** Initial endpoints (two ready pods per service) and the sequence of changes. */
export function churnPlan(size: ChurnSize, seed: number): { initial: EndpointSpec[][]; changes: ChurnChange[] } {
  const rnd = random(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const state: EndpointSpec[][] = [];
  const next: number[] = [];
  const gone: string[][] = [];
  for (let i = 0; i < size.services; i++) {
    state.push([{ ip: podIP(i, 1), ...READY }, { ip: podIP(i, 2), ...READY }]);
    next.push(3);
    gone.push([]);
  }
  const initial = state.map((eps) => eps.map((e) => ({ ...e })));
  const changes: ChurnChange[] = [];
  while (changes.length < size.changes) {
    const i = Math.floor(rnd() * size.services);
    const eps = state[i]!;
    const ready = eps.filter((e) => e.ready);
    const terminatingServing = eps.filter((e) => e.terminating && e.serving);
    const ops: ChurnOp[] = ['add', 'remove'];
    if (gone[i]!.length > 0) ops.push('add-reused');
    if (ready.length > 0) ops.push('terminate-serving', 'terminate-serving');
    if (terminatingServing.length > 0) ops.push('terminate-not-serving');
    if (eps.length > 4) ops.push('remove', 'remove');
    const op = pick(ops);
    let ip: string;
    switch (op) {
      case 'add':
        ip = podIP(i, next[i]!);
        next[i] = (next[i]! % 250) + 1;
        if (eps.some((e) => e.ip === ip)) continue;
        eps.push({ ip, ...READY });
        break;
      case 'add-reused': {
        ip = pick(gone[i]!);
        if (eps.some((e) => e.ip === ip)) continue;
        gone[i] = gone[i]!.filter((g) => g !== ip);
        eps.push({ ip, ...READY });
        break;
      }
      case 'terminate-serving': {
        const e = pick(ready);
        ip = e.ip;
        Object.assign(e, { ready: false, serving: true, terminating: true });
        break;
      }
      case 'terminate-not-serving': {
        const e = pick(terminatingServing);
        ip = e.ip;
        Object.assign(e, { ready: false, serving: false, terminating: true });
        break;
      }
      case 'remove': {
        if (eps.length === 0) continue;
        const e = pick(eps);
        ip = e.ip;
        state[i] = eps.filter((x) => x !== e);
        gone[i]!.push(ip);
        break;
      }
    }
    changes.push({ service: i, op, ip, endpoints: state[i]!.map((e) => ({ ...e })) });
  }
  return { initial, changes };
}

/** One EndpointSlice event as the test's own watch received it. */
export interface SliceEvent {
  at: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  service: string;
  slice: string;
  /** address -> serving (Serving == nil || *Serving, as kube-proxy and the agent read it) */
  endpoints: Record<string, boolean>;
}

/**
 * Whether the API listed `ip` as serving for `service` at time `at`, replaying the recorded watch: the union over
 * the service's slices of their state after the last event received at or before `at`.
 */
export function servingAt(events: readonly SliceEvent[], service: string, ip: string, at: number): boolean {
  const slices = new Map<string, Record<string, boolean>>();
  for (const e of events) {
    if (e.at > at) break;
    if (e.service !== service) continue;
    if (e.type === 'DELETED') slices.delete(e.slice);
    else slices.set(e.slice, e.endpoints);
  }
  return [...slices.values()].some((eps) => eps[ip] === true);
}

/** Whether `ip` was listed serving throughout [from, to]: the agent had the whole window to learn it. */
export function servingThroughout(events: readonly SliceEvent[], service: string, ip: string, from: number, to: number): boolean {
  if (!servingAt(events, service, ip, from)) return false;
  return !events.some((e) => e.at > from && e.at <= to && e.service === service && !servingAt(events, service, ip, e.at));
}

/** The address of an "<ip>:<port>" real server (IPv4 in the churn test). */
export function ipOf(realServer: string): string {
  return realServer.slice(0, realServer.lastIndexOf(':'));
}

/** Whether any event in (from, to] leaves `ip` serving for `service`. */
function servingBetween(events: readonly SliceEvent[], service: string, ip: string, from: number, to: number): boolean {
  return events.some((e) => e.at > from && e.at <= to && e.service === service && servingAt(events, service, ip, e.at));
}

/** Whether any event in (from, to] lists `ip` for `service` at all (a reused address coming back). */
export function listedBetween(events: readonly SliceEvent[], service: string, ip: string, from: number, to: number): boolean {
  return events.some((e) => e.at > from && e.at <= to && e.service === service && ip in e.endpoints);
}

export interface AgentDeletion {
  at: number;
  /** namespace/name */
  service: string;
  /** address:port */
  realServer: string;
  weight: number;
  reason: string;
  /** What made the agent look: 'event', 'follow-up' (a followed real server kube-proxy zeroed late), 'resync'. */
  trigger: string;
}

/** One kernel dump: service name -> address -> weight. */
export interface KernelSample {
  /** When the dump began: a real server in it may have been read before anything that happened after this. */
  startedAt: number;
  /** When the dump ended. */
  at: number;
  services: Record<string, Record<string, number>>;
}

export interface ChurnVerdict {
  deletions: number;
  /** Deleted while the API listed the endpoint serving for the whole allowance before the deletion. */
  deletedWhileServing: string[];
  /** Deleted while the API listed it serving at that instant (it may have changed a moment before: a race). */
  deletedWhileServingStrict: number;
  /** Above weight 0 for any reason but kube-proxy's stale entry, or for that one without its premise. */
  deletedAboveWeightZero: string[];
  /**
   * Above weight 0 because kube-proxy kept a stale graceful-list entry: the agent had deleted the same real server,
   * the address came back within kube-proxy's check window after that deletion (listed serving again, or in the
   * kernel again), and its endpoint had been out for longer than kube-proxy's sync allowance.
   */
  staleEntryDeletions: string[];
  /** A real server the agent deleted that kube-proxy put back although the API never listed it again. */
  reAddedByKubeProxy: string[];
  /**
   * One put back by a kube-proxy sync that took its view of the endpoints while the API still listed the address
   * serving, and was still running when the agent deleted it: without the agent that sync would have raised the
   * same real server's weight, so the kernel ends as it would have anyway.
   */
  reAddedByLaggingSync: string[];
}

/**
 * Whether kube-proxy may hold a stale graceful-list entry for `ip` in `service` because of one of `deletions`: the
 * agent deleted its real server, and within kube-proxy's check window after that the address was listed serving
 * again or was back in the kernel (README, Troubleshooting).
 */
export function mayHoldStaleEntry(
  deletions: readonly AgentDeletion[],
  service: string,
  ip: string,
  events: readonly SliceEvent[],
  samples: readonly KernelSample[],
  allowanceMs: number,
): boolean {
  return deletions.some((e) => {
    if (e.service !== service || ipOf(e.realServer) !== ip) return false;
    const until = e.at + KUBE_PROXY_CHECK_WINDOW_MS + allowanceMs;
    return servingBetween(events, service, ip, e.at, until) || samples.some((s) => s.startedAt > e.at && s.at <= until && s.services[service]?.[ip] !== undefined);
  });
}

/** A kube-proxy sync: when it took its view of the endpoints, and when it ended. */
export interface KubeProxySync {
  viewAt: number;
  endAt: number;
}

export function judge(
  deletions: readonly AgentDeletion[],
  events: readonly SliceEvent[],
  samples: readonly KernelSample[],
  allowanceMs: number,
  syncs: readonly KubeProxySync[] = [],
): ChurnVerdict {
  const verdict: ChurnVerdict = {
    deletions: deletions.length,
    deletedWhileServing: [],
    deletedWhileServingStrict: 0,
    deletedAboveWeightZero: [],
    staleEntryDeletions: [],
    reAddedByKubeProxy: [],
    reAddedByLaggingSync: [],
  };
  for (const d of deletions) {
    const ip = ipOf(d.realServer);
    const name = `${d.service} ${d.realServer} at ${new Date(d.at).toISOString()} (${d.reason})`;
    if (d.weight !== 0) {
      const cameBack = mayHoldStaleEntry(deletions.filter((e) => e.at < d.at), d.service, ip, events, samples, allowanceMs);
      const outLongEnough = !servingAt(events, d.service, ip, d.at - KUBE_PROXY_SYNC_ALLOWANCE_MS) && !servingBetween(events, d.service, ip, d.at - KUBE_PROXY_SYNC_ALLOWANCE_MS, d.at);
      if (d.reason === 'kube-proxy-stale-entry' && cameBack && outLongEnough) verdict.staleEntryDeletions.push(name);
      else verdict.deletedAboveWeightZero.push(`${name}: weight ${d.weight}`);
    }
    if (servingAt(events, d.service, ip, d.at)) verdict.deletedWhileServingStrict++;
    if (servingThroughout(events, d.service, ip, d.at - allowanceMs, d.at)) verdict.deletedWhileServing.push(name);
    // Only a dump begun after the deletion shows the real server back: one begun before may have read it first.
    const back = samples.find((s) => s.startedAt > d.at && s.services[d.service]?.[ip] !== undefined);
    if (!back || listedBetween(events, d.service, ip, d.at, back.at)) continue;
    const lagging = syncs.find((s) => s.endAt >= d.at && s.viewAt <= back.startedAt && servingAt(events, d.service, ip, s.viewAt));
    const line = `${name}: back at ${new Date(back.at).toISOString()}`;
    if (lagging) verdict.reAddedByLaggingSync.push(`${line}, by the sync with its view from ${new Date(lagging.viewAt).toISOString()}`);
    else verdict.reAddedByKubeProxy.push(line);
  }
  return verdict;
}

/**
 * Weight-0 real servers that no serving endpoint backs in the API's final state: what is left for nobody to
 * delete once everything is quiet.
 */
export function staleZeroWeight(final: KernelSample, events: readonly SliceEvent[]): string[] {
  const stale: string[] = [];
  for (const [service, dests] of Object.entries(final.services))
    for (const [ip, weight] of Object.entries(dests))
      if (weight === 0 && !servingAt(events, service, ip, Number.POSITIVE_INFINITY)) stale.push(`${service} ${ip}`);
  return stale;
}

/**
 * kube-proxy's own deletions ("Deleting real server" lines, "<vip>:<port>/TCP/<ip>:<port>") of real servers whose
 * endpoint the API listed serving throughout the allowance before: its graceful list can outlive a real server the
 * agent deleted, and when the address comes back as a new pod, its once-a-minute check deletes the new one.
 */
export function kubeProxyDeletedServing(
  lines: readonly { at: number; realServer: string }[],
  events: readonly SliceEvent[],
  serviceOf: (vip: string) => string | undefined,
  allowanceMs: number,
  agentDeletions: readonly AgentDeletion[],
): string[] {
  const out: string[] = [];
  for (const l of lines) {
    const m = /^([^:]+):\d+\/\w+\/(.+:\d+)$/.exec(l.realServer);
    const service = m && serviceOf(m[1]!);
    if (!m || !service) continue;
    const realServer = m[2]!;
    const ip = ipOf(realServer);
    if (!servingThroughout(events, service, ip, l.at - allowanceMs, l.at)) continue;
    // The cause README's Troubleshooting names: the agent deleted it while it was on kube-proxy's list.
    const earlier = agentDeletions.filter((d) => d.service === service && d.realServer === realServer && d.at < l.at).at(-1);
    const cause = earlier ? `${((l.at - earlier.at) / 1000).toFixed(1)} s after the agent deleted it` : 'the agent had not deleted it';
    out.push(`${l.realServer} at ${new Date(l.at).toISOString()}, ${cause}`);
  }
  return out;
}
