// Per-Service policy annotations: `ipvs-janitor/policy` and `ipvs-janitor/max-drain-seconds` override the agent's
// default policy for that Service only. An invalid value is reported (once per value) and the default applies.
import type { Policy } from '../reconcile/types.js';

export const POLICY_ANNOTATION = 'ipvs-janitor/policy';
export const MAX_DRAIN_ANNOTATION = 'ipvs-janitor/max-drain-seconds';

/** The policies of --policy, and `skip`: the agent leaves the Service's real servers alone, as if the Service were not Kubernetes'. */
const MODES = ['graceful', 'drain', 'immediate', 'skip'] as const;
type Mode = (typeof MODES)[number];

/** The raw annotation values, as the slim Service record keeps them. */
export interface PolicyAnnotations {
  readonly policy?: string;
  readonly maxDrainSeconds?: string;
}

/** The two annotations out of a Service's metadata; undefined when it has neither (the usual case). */
export function policyAnnotations(annotations: Readonly<Record<string, string>> | undefined): PolicyAnnotations | undefined {
  const policy = annotations?.[POLICY_ANNOTATION];
  const maxDrainSeconds = annotations?.[MAX_DRAIN_ANNOTATION];
  if (policy === undefined && maxDrainSeconds === undefined) return undefined;
  return { ...(policy !== undefined ? { policy } : {}), ...(maxDrainSeconds !== undefined ? { maxDrainSeconds } : {}) };
}

export type ServicePolicy = { readonly kind: 'skip' } | { readonly kind: 'policy'; readonly policy: Policy };

export interface AnnotationProblem {
  readonly annotation: string;
  readonly value: string;
  readonly problem: string;
}

/** The Service's policy: each valid annotation overrides its part of `defaults`; invalid ones are listed. */
export function servicePolicy(
  annotations: PolicyAnnotations | undefined,
  defaults: Policy,
): { policy: ServicePolicy; problems: AnnotationProblem[] } {
  const problems: AnnotationProblem[] = [];
  let mode: Mode = defaults.mode as Mode;
  let maxDrainSeconds = defaults.maxDrainSeconds ?? 0;
  const rawMode = annotations?.policy?.trim();
  if (rawMode !== undefined) {
    if ((MODES as readonly string[]).includes(rawMode)) mode = rawMode as Mode;
    else problems.push({ annotation: POLICY_ANNOTATION, value: annotations!.policy!, problem: `use ${MODES.join(', ')}` });
  }
  const rawMax = annotations?.maxDrainSeconds?.trim();
  if (rawMax !== undefined) {
    if (/^\d{1,9}$/.test(rawMax)) maxDrainSeconds = Number(rawMax);
    else problems.push({ annotation: MAX_DRAIN_ANNOTATION, value: annotations!.maxDrainSeconds!, problem: 'use a whole number of seconds >= 0 (0 = unbounded)' });
  }
  if (mode === 'skip') return { policy: { kind: 'skip' }, problems };
  return { policy: { kind: 'policy', policy: maxDrainSeconds > 0 ? { mode, maxDrainSeconds } : { mode } }, problems };
}

/**
 * servicePolicy() for the agent: reports a Service's invalid annotations once per distinct value, not on every
 * reconciliation of that Service.
 */
export class ServicePolicies {
  private readonly reported = new Map<string, string>();

  constructor(
    private readonly defaults: Policy,
    private readonly report: (service: string, problem: AnnotationProblem) => void,
  ) {}

  of(service: { readonly namespace: string; readonly name: string; readonly policyAnnotations?: PolicyAnnotations }): ServicePolicy {
    const { policy, problems } = servicePolicy(service.policyAnnotations, this.defaults);
    const key = `${service.namespace}/${service.name}`;
    if (problems.length === 0) {
      this.reported.delete(key);
      return policy;
    }
    const signature = JSON.stringify(problems);
    if (this.reported.get(key) !== signature) {
      this.reported.set(key, signature);
      for (const problem of problems) this.report(key, problem);
    }
    return policy;
  }
}
