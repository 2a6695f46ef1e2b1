import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { assessExposure, parseKernelRelease, recommendedSysctls, type Verdict } from '../../src/agent/exposure.js';
import { applyRecommendedSysctls, logExposure } from '../../src/agent/exposure-report.js';
import { createMetrics } from '../../src/agent/metrics.js';
import { applySysctls, readSysctls, sysctlCommand, sysctlKey, type IpvsSysctls } from '../../src/agent/sysctls.js';
import { captureLog } from '../support/capture-log.js';

const kernels = {
  '3.10': '3.10.0-1160.el7.x86_64',
  '4.19': '4.19.0-26-amd64',
  '5.4': '5.4.0-150-generic',
  '5.10': '5.10.0-28-amd64',
  '5.15': '5.15.0-1019-aws',
  '5.16': '5.16.0-6-amd64',
  '6.1': '6.1.0-56-amd64',
} as const;
type Kernel = keyof typeof kernels;

const sysctls = (connReuseMode: number, expireNodestConn: number): IpvsSysctls => ({
  connReuseMode,
  expireNodestConn,
  expireQuiescentTemplate: 1,
  conntrack: 1,
});
const assess = (kernel: Kernel, s: IpvsSysctls): Verdict =>
  assessExposure({ kernelRelease: kernels[kernel], ipvs: { kind: 'present', sysctls: s } });

describe('parseKernelRelease', () => {
  const cases: [string, [number, number, number]][] = [
    ['6.1.0-56-amd64', [6, 1, 0]],
    ['3.10.0-1160.el7.x86_64', [3, 10, 0]],
    ['5.4.0-150-generic', [5, 4, 0]],
    ['5.15.167', [5, 15, 167]],
    ['6.8-rc1', [6, 8, 0]],
    [' 4.19.0-26-amd64\n', [4, 19, 0]],
  ];
  for (const [release, [major, minor, patch]] of cases) {
    it(release.trim(), () => assert.deepEqual(parseKernelRelease(release), { major, minor, patch }));
  }
  it('rejects a release without a version prefix', () => {
    assert.throws(() => parseKernelRelease('linux-amd64'), /cannot read a kernel version from "linux-amd64"/);
  });
});

describe('assessExposure', () => {
  // [kernel, conn_reuse_mode, expire_nodest_conn] -> verdict kind
  const exposed = 'exposed';
  const safe = 'not-exposed';
  const table: Record<Kernel, [mode0nodest0: string, mode0nodest1: string, mode1nodest0: string, mode1nodest1: string]> = {
    '3.10': [exposed, exposed, safe, safe],
    '4.19': [exposed, exposed, safe, safe],
    '5.4': [exposed, exposed, safe, safe],
    '5.10': [exposed, exposed, safe, safe],
    '5.15': [exposed, exposed, safe, safe],
    '5.16': [exposed, safe, safe, safe],
    '6.1': [exposed, safe, safe, safe],
  };
  for (const [kernel, kinds] of Object.entries(table) as [Kernel, string[]][]) {
    const combos = [
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
    ] as const;
    combos.forEach(([mode, nodest], i) => {
      it(`${kernel}: conn_reuse_mode=${mode} expire_nodest_conn=${nodest} -> ${kinds[i]}`, () => {
        assert.equal(assess(kernel, sysctls(mode, nodest)).kind, kinds[i]);
      });
    });
  }

  it('no IPVS: the same wording as every other command', () => {
    assert.deepEqual(assessExposure({ kernelRelease: kernels['6.1'], ipvs: { kind: 'absent' } }), {
      kind: 'no-ipvs',
      reason:
        'this kernel has no IPVS (generic netlink family "IPVS" not found): load the ip_vs module (modprobe ip_vs) ' +
        'or run on a node where kube-proxy uses IPVS mode',
    });
  });

  it('mode 0 with expire_nodest_conn=1 before 5.16 names the undetectable backport', () => {
    for (const kernel of ['5.10', '5.15', '4.19'] as const) {
      const v = assess(kernel, sysctls(0, 1));
      assert.equal(v.kind, 'exposed');
      assert.match(v.reason, /c95c07836fa4 \(5\.16\+\).*backport, which this check cannot detect/);
    }
  });

  it('exposed on 5.9+: fixes are the recommended sysctls, and the kernel already has f0a5e4d7a594', () => {
    const v = assess('5.10', sysctls(0, 0));
    assert.equal(v.kind, 'exposed');
    assert.deepEqual(v.fixes.map(sysctlCommand), [
      'sysctl -w net.ipv4.vs.conn_reuse_mode=1',
      'sysctl -w net.ipv4.vs.expire_nodest_conn=1',
    ]);
    assert.match(v.kernelFix, /has f0a5e4d7a594/);
  });

  it('exposed on 6.1 with expire_nodest_conn=0: c95c07836fa4 is there but turned off', () => {
    const v = assess('6.1', sysctls(0, 0));
    assert.equal(v.kind, 'exposed');
    assert.match(v.reason, /expire_nodest_conn=0 turns off the rescheduling/);
    assert.match(v.kernelFix, /has c95c07836fa4/);
  });

  it('exposed before 5.9: keep mode 0, set expire_nodest_conn, and rely on the graceful policy', () => {
    const v = assess('4.19', sysctls(0, 0));
    assert.equal(v.kind, 'exposed');
    assert.deepEqual(v.fixes, [{ name: 'expireNodestConn', from: 0, to: 1 }]);
    assert.match(v.advice, /Keep net\.ipv4\.vs\.conn_reuse_mode=0, set net\.ipv4\.vs\.expire_nodest_conn=1/);
    assert.match(v.advice, /graceful policy/);
    assert.match(v.kernelFix, /needs kernel 5\.9\+ .* or 5\.16\+/);
    const settled = assess('4.19', sysctls(0, 1));
    assert.equal(settled.kind, 'exposed');
    assert.deepEqual(settled.fixes, []);
  });

  it('mode 1 before 5.9 is safe from stale routing but warns about the 1 s SYN delay with conntrack', () => {
    const v = assess('5.4', sysctls(1, 1));
    assert.equal(v.kind, 'not-exposed');
    assert.match(v.caveats.join('\n'), /after 1 s \(fixed by f0a5e4d7a594 in 5\.9\)/);
    assert.deepEqual(v.tuning, [{ name: 'connReuseMode', from: 1, to: 0 }]);
    const noConntrack = assess('5.4', { ...sysctls(1, 1), conntrack: 0 });
    assert.equal(noConntrack.kind, 'not-exposed');
    assert.doesNotMatch(noConntrack.caveats.join('\n'), /1 s/);
  });

  it('mode 1 on 5.9+ with expire_nodest_conn=0: deleted real servers drop packets instead of expiring', () => {
    const v = assess('6.1', sysctls(1, 0));
    assert.equal(v.kind, 'not-exposed');
    assert.match(v.caveats.join('\n'), /first SYN of a reused tuple is still dropped/);
    assert.match(v.caveats.join('\n'), /expire_nodest_conn=0: packets of connections whose real server was deleted/);
    assert.deepEqual(v.tuning, [{ name: 'expireNodestConn', from: 0, to: 1 }]);
  });

  it('any non-zero conn_reuse_mode counts as reuse handling on', () => {
    assert.equal(assess('6.1', sysctls(2, 0)).kind, 'not-exposed');
  });

  it('expire_quiescent_template=0 is a caveat in every verdict', () => {
    for (const mode of [0, 1]) {
      const v = assess('6.1', { ...sysctls(mode, 1), expireQuiescentTemplate: 0 });
      assert.ok(v.kind !== 'no-ipvs');
      assert.match(v.caveats.join('\n'), /sessionAffinity: ClientIP/);
    }
  });

  it('a well-configured 6.1 node has nothing to tune', () => {
    const v = assess('6.1', sysctls(1, 1));
    assert.equal(v.kind, 'not-exposed');
    assert.deepEqual(v.tuning, []);
  });
});

describe('recommendedSysctls', () => {
  it('5.9 and later: kube-proxy\'s own settings, conn_reuse_mode=1', () => {
    for (const release of ['5.9.0', kernels['5.10'], kernels['6.1']]) {
      assert.deepEqual(recommendedSysctls(parseKernelRelease(release)), [
        { name: 'connReuseMode', value: 1 },
        { name: 'expireNodestConn', value: 1 },
        { name: 'expireQuiescentTemplate', value: 1 },
      ]);
    }
  });
  it('before 5.9: conn_reuse_mode stays 0 (mode 1 costs 1 s per reused SYN)', () => {
    for (const release of [kernels['3.10'], kernels['4.19'], '5.8.18']) {
      assert.deepEqual(recommendedSysctls(parseKernelRelease(release)), [
        { name: 'connReuseMode', value: 0 },
        { name: 'expireNodestConn', value: 1 },
        { name: 'expireQuiescentTemplate', value: 1 },
      ]);
    }
  });
});

describe('sysctl files', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
  function fakeProc(values: Record<string, string>): string {
    const dir = mkdtempSync(join(tmpdir(), 'ipvs-sysctls-'));
    dirs.push(dir);
    for (const [file, value] of Object.entries(values)) writeFileSync(join(dir, file), value);
    return dir;
  }
  const stock = { conn_reuse_mode: '0\n', expire_nodest_conn: '0\n', expire_quiescent_template: '1\n', conntrack: '1\n' };

  it('reads the four sysctls', async () => {
    assert.deepEqual(await readSysctls(fakeProc(stock)), {
      connReuseMode: 0,
      expireNodestConn: 0,
      expireQuiescentTemplate: 1,
      conntrack: 1,
    });
  });

  it('names the file that is missing or unreadable', async () => {
    const { conntrack: _, ...noConntrack } = stock;
    await assert.rejects(readSysctls(fakeProc(noConntrack)), /ENOENT.*conntrack/);
    await assert.rejects(readSysctls(fakeProc({ ...stock, conntrack: 'yes\n' })), /conntrack: expected an integer, read "yes"/);
  });

  it('applies only what differs and reports it', async () => {
    const dir = fakeProc(stock);
    const changes = await applySysctls(
      [
        { name: 'connReuseMode', value: 1 },
        { name: 'expireNodestConn', value: 1 },
        { name: 'expireQuiescentTemplate', value: 1 },
      ],
      dir,
    );
    assert.deepEqual(changes, [
      { name: 'connReuseMode', from: 0, to: 1 },
      { name: 'expireNodestConn', from: 0, to: 1 },
    ]);
    assert.equal(readFileSync(join(dir, 'conn_reuse_mode'), 'utf8'), '1\n');
    assert.equal(readFileSync(join(dir, 'expire_quiescent_template'), 'utf8'), '1\n');
    assert.deepEqual(await applySysctls([{ name: 'connReuseMode', value: 1 }], dir), []);
  });

  it('a write the kernel refuses names privileged mode', async (t) => {
    if (process.getuid?.() === 0) return t.skip('root writes read-only files; doctor.vmtest covers a read-only mount');
    const dir = fakeProc(stock);
    chmodSync(join(dir, 'conn_reuse_mode'), 0o444);
    await assert.rejects(
      applySysctls([{ name: 'connReuseMode', value: 1 }], dir),
      /cannot write .*conn_reuse_mode \(EACCES\).*privileged container/,
    );
  });

  it('applyRecommendedSysctls logs each change', async () => {
    const dir = fakeProc({ ...stock, conn_reuse_mode: '1\n' });
    const { log, records } = captureLog();
    const changes = await applyRecommendedSysctls(log, dir);
    assert.deepEqual(
      records.map((r) => [r.message, r.sysctl, r.from, r.to]),
      changes.map((c) => ['ipvs sysctl set', sysctlKey(c.name), c.from, c.to]),
    );
    assert.ok(changes.some((c) => c.name === 'expireNodestConn'));
    await applyRecommendedSysctls(log, dir);
    assert.equal(records.at(-1)?.message, 'ipvs sysctls already as recommended');
  });
});

describe('logExposure', () => {
  it('logs one line with the verdict and sets node_exposed', async () => {
    const metrics = createMetrics();
    const { log, records } = captureLog();
    const facts = { kernelRelease: kernels['5.4'], ipvs: { kind: 'present' as const, sysctls: sysctls(0, 1) } };
    const verdict = await logExposure(log, metrics, async () => facts);
    assert.equal(verdict.kind, 'exposed');
    assert.equal(records.length, 1);
    assert.equal(records[0]?.level, 'warn');
    assert.deepEqual(records[0]?.verdict, JSON.parse(JSON.stringify(verdict)));
    assert.deepEqual(records[0]?.sysctls, facts.ipvs.sysctls);
    assert.equal((await metrics.nodeExposed.get()).values[0]?.value, 1);

    await logExposure(log, metrics, async () => ({ ...facts, kernelRelease: kernels['6.1'] }));
    assert.equal(records[1]?.level, 'info');
    assert.equal((await metrics.nodeExposed.get()).values[0]?.value, 0);
  });
});
