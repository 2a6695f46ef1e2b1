// Whether a new connection that reuses a source port can be sent to a weight-0 (possibly dead) real server on
// this node, decided from the kernel version and the IPVS sysctls alone. See docs/background.md, "Kernel facts".
import { IpvsUnavailableError } from '../ipvs/errors.js';
import { sysctlChanges, sysctlKey, type IpvsSysctls, type SysctlChange, type SysctlSetting } from './sysctls.js';

export interface NodeFacts {
  /** os.release(), e.g. "6.1.0-56-amd64". */
  kernelRelease: string;
  ipvs: { kind: 'absent' } | { kind: 'present'; sysctls: IpvsSysctls };
}

export interface KernelVersion {
  major: number;
  minor: number;
  patch: number;
}

export type Verdict =
  | { kind: 'no-ipvs'; reason: string }
  | {
      kind: 'exposed';
      reason: string;
      /** The recommended settings this node differs from; applying them may not be enough (see advice). */
      fixes: SysctlChange[];
      advice: string;
      kernelFix: string;
      caveats: string[];
    }
  | {
      kind: 'not-exposed';
      reason: string;
      caveats: string[];
      /** Recommended settings this node differs from, for the caveats rather than for stale routing. */
      tuning: SysctlChange[];
    };

/** Distribution suffixes vary ("-56-amd64", ".el7.x86_64", "-150-generic"); the numeric prefix does not. */
export function parseKernelRelease(release: string): KernelVersion {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release.trim());
  if (!m) throw new Error(`cannot read a kernel version from ${JSON.stringify(release)} (expected major.minor[.patch]...)`);
  return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3] ?? 0) };
}

const atLeast = (k: KernelVersion, major: number, minor: number) =>
  k.major > major || (k.major === major && k.minor >= minor);

// f0a5e4d7a594: conn_reuse_mode=1 no longer drops (1 s client retransmit) every SYN of a reused tuple with conntrack.
const hasSynDelayFix = (k: KernelVersion) => atLeast(k, 5, 9);
// c95c07836fa4: with expire_nodest_conn=1, a reused tuple whose dest has weight 0 is rescheduled even under mode 0.
const hasWeightZeroReuseFix = (k: KernelVersion) => atLeast(k, 5, 16);

const BACKPORT_NOTE =
  'some stable and vendor kernels carry c95c07836fa4 as a backport, which this check cannot detect from the version';

/**
 * kube-proxy's own settings: since PR 102122 it leaves conn_reuse_mode=1 on 5.9+; before 5.9 mode 1 costs 1 s per
 * reused SYN, so mode 0 stays and ipvs-janitor's graceful policy removes dead real servers instead.
 */
export function recommendedSysctls(kernel: KernelVersion): SysctlSetting[] {
  return [
    { name: 'connReuseMode', value: hasSynDelayFix(kernel) ? 1 : 0 },
    { name: 'expireNodestConn', value: 1 },
    { name: 'expireQuiescentTemplate', value: 1 },
  ];
}

function commonCaveats(s: IpvsSysctls): string[] {
  return s.expireQuiescentTemplate === 0
    ? [
        `${sysctlKey('expireQuiescentTemplate')}=0: a persistent service (sessionAffinity: ClientIP) keeps sending a ` +
          'client to a weight-0 real server until its persistence template expires; kube-proxy sets it to 1',
      ]
    : [];
}

function nodestCaveat(s: IpvsSysctls): string[] {
  return s.expireNodestConn === 0
    ? [
        `${sysctlKey('expireNodestConn')}=0: packets of connections whose real server was deleted are dropped ` +
          'instead of the connections being expired, so their clients wait for their own timeouts',
      ]
    : [];
}

function conntrackSynDropCaveat(s: IpvsSysctls): string[] {
  return s.conntrack !== 0
    ? [
        'the first SYN of a reused tuple is still dropped while the old connection\'s conntrack entry is in use; ' +
          'the client retransmits it after about 1 s',
      ]
    : [];
}

function exposedAdvice(k: KernelVersion, s: IpvsSysctls, fixes: SysctlChange[]): string {
  if (hasSynDelayFix(k)) {
    return (
      'set the sysctls below (kube-proxy\'s own settings on 5.9+). kube-proxy releases before PR 102122 force ' +
      `${sysctlKey('connReuseMode')}=0 at every start: re-apply after kube-proxy restarts, or run the agent with ` +
      '--set-sysctls'
    );
  }
  const nodest = fixes.some((f) => f.name === 'expireNodestConn') ? `, set ${sysctlKey('expireNodestConn')}=1` : '';
  const delay = s.conntrack !== 0 ? ' with conntrack=1' : '';
  return (
    `no sysctl closes this on kernels before 5.9 without a cost: ${sysctlKey('connReuseMode')}=1 would reschedule ` +
    `reused tuples but delays every reused-tuple SYN by 1 s${delay} (fixed by f0a5e4d7a594 in 5.9), which is why ` +
    `kube-proxy forces 0 here. Keep ${sysctlKey('connReuseMode')}=0${nodest}, and run ipvs-janitor with the ` +
    'graceful policy: it deletes a weight-0 real server as soon as no serving endpoint backs it, which closes the ' +
    'window'
  );
}

function exposedKernelFix(k: KernelVersion): string {
  if (hasWeightZeroReuseFix(k)) {
    return (
      `this kernel has c95c07836fa4 (5.16): ${sysctlKey('expireNodestConn')}=1 alone makes it reschedule reused ` +
      'tuples away from weight-0 real servers, and f0a5e4d7a594 (5.9) makes conn_reuse_mode=1 safe with conntrack'
    );
  }
  if (hasSynDelayFix(k)) {
    return (
      'this kernel has f0a5e4d7a594 (5.9), so conn_reuse_mode=1 costs no 1 s SYN delay; c95c07836fa4 (5.16) would ' +
      `also protect conn_reuse_mode=0 with expire_nodest_conn=1 (${BACKPORT_NOTE})`
    );
  }
  return (
    'needs kernel 5.9+ (f0a5e4d7a594: conn_reuse_mode=1 without the 1 s SYN delay) or 5.16+ (c95c07836fa4: ' +
    `expire_nodest_conn=1 reschedules reused tuples away from weight-0 real servers under conn_reuse_mode=0); ${BACKPORT_NOTE}`
  );
}

export function assessExposure(facts: NodeFacts): Verdict {
  if (facts.ipvs.kind === 'absent') return { kind: 'no-ipvs', reason: new IpvsUnavailableError().message };
  const k = parseKernelRelease(facts.kernelRelease);
  const s = facts.ipvs.sysctls;
  const changes = sysctlChanges(recommendedSysctls(k), s);

  // Any non-zero conn_reuse_mode turns on the kernel's port-reuse handling (bit 2 only widens it to FIN_WAIT).
  if (s.connReuseMode !== 0) {
    const reason =
      `${sysctlKey('connReuseMode')}=${s.connReuseMode}: a SYN that reuses the tuple of a finished connection is ` +
      'scheduled afresh, so weights apply and weight-0 real servers get no new connections';
    if (hasSynDelayFix(k)) {
      return {
        kind: 'not-exposed',
        reason: `${reason}; this kernel (5.9+) has f0a5e4d7a594, so it costs no 1 s SYN delay`,
        caveats: [...conntrackSynDropCaveat(s), ...nodestCaveat(s), ...commonCaveats(s)],
        tuning: changes,
      };
    }
    const synDelay =
      s.conntrack !== 0
        ? [
            `on kernels before 5.9 every SYN that reuses a tuple is dropped while ${sysctlKey('conntrack')}=1 and the ` +
              'client retransmits it after 1 s (fixed by f0a5e4d7a594 in 5.9): that is why kube-proxy forces ' +
              'conn_reuse_mode=0 on this kernel and will set it back when it restarts; the recommended settings keep ' +
              '0 and rely on ipvs-janitor\'s graceful policy to delete dead real servers',
          ]
        : [];
    return {
      kind: 'not-exposed',
      reason,
      caveats: [...synDelay, ...nodestCaveat(s), ...commonCaveats(s)],
      tuning: changes,
    };
  }

  const reuse =
    `${sysctlKey('connReuseMode')}=0: a new connection that reuses a source port still in the IPVS connection table ` +
    '(TIME_WAIT lasts 2 minutes) goes to the old real server whatever its weight';
  if (s.expireNodestConn !== 0 && hasWeightZeroReuseFix(k)) {
    return {
      kind: 'not-exposed',
      reason:
        `${reuse}, but this kernel (5.16+) has c95c07836fa4 and ${sysctlKey('expireNodestConn')}=1: a SYN on a ` +
        'reused tuple whose real server has weight 0 is rescheduled',
      caveats: [...conntrackSynDropCaveat(s), ...commonCaveats(s)],
      tuning: changes,
    };
  }
  const why = hasWeightZeroReuseFix(k)
    ? `; ${sysctlKey('expireNodestConn')}=0 turns off the rescheduling this kernel (5.16+, c95c07836fa4) would do`
    : s.expireNodestConn !== 0
      ? `; ${sysctlKey('expireNodestConn')}=1 reschedules such SYNs only on kernels with c95c07836fa4 (5.16+), and ` +
        `this one predates it (${BACKPORT_NOTE})`
      : '';
  return {
    kind: 'exposed',
    reason: reuse + why,
    fixes: changes,
    advice: exposedAdvice(k, s, changes),
    kernelFix: exposedKernelFix(k),
    caveats: commonCaveats(s),
  };
}
