// `doctor` on the real kernel, for every conn_reuse_mode x expire_nodest_conn; `--set-sysctls`'s writer against
// /proc/sys and a read-only mount. Runs inside the VM as root; restores the sysctls it changes.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseKernelRelease } from '../../src/agent/exposure.js';
import { applyRecommendedSysctls } from '../../src/agent/exposure-report.js';
import { applySysctls, ipvsSysctlFiles, IPVS_SYSCTL_DIR, readSysctls, type IpvsSysctls } from '../../src/agent/sysctls.js';
import { captureLog } from '../support/capture-log.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function setSysctls(values: Partial<IpvsSysctls>): void {
  for (const [name, value] of Object.entries(values))
    writeFileSync(join(IPVS_SYSCTL_DIR, ipvsSysctlFiles[name as keyof IpvsSysctls]), `${value}\n`);
}

function doctor(...args: string[]) {
  const run = spawnSync(process.execPath, [cli, 'doctor', ...args], { encoding: 'utf8' });
  assert.equal(run.stderr, '', 'doctor prints its report on stdout and nothing on stderr');
  return run;
}

let original: IpvsSysctls;
before(async () => {
  original = await readSysctls();
  const k = parseKernelRelease(release());
  assert.ok(k.major > 5 || (k.major === 5 && k.minor >= 16), `these expectations are for 5.16+; VM kernel is ${release()}`);
});
after(() => setSysctls(original));

describe('doctor on the real kernel', () => {
  // What kube-proxy sets besides the two sysctls under test, so the fixes are exactly those two.
  const base = { conntrack: 1, expireQuiescentTemplate: 1 };
  const cases = [
    { connReuseMode: 0, expireNodestConn: 0, kind: 'exposed', status: 3 },
    { connReuseMode: 0, expireNodestConn: 1, kind: 'not-exposed', status: 0 },
    { connReuseMode: 1, expireNodestConn: 0, kind: 'not-exposed', status: 0 },
    { connReuseMode: 1, expireNodestConn: 1, kind: 'not-exposed', status: 0 },
  ] as const;

  for (const c of cases) {
    it(`conn_reuse_mode=${c.connReuseMode} expire_nodest_conn=${c.expireNodestConn}: ${c.kind}, exit ${c.status}`, () => {
      const sysctls = { ...base, connReuseMode: c.connReuseMode, expireNodestConn: c.expireNodestConn };
      setSysctls(sysctls);

      const json = doctor('--json');
      assert.equal(json.status, c.status);
      const report = JSON.parse(json.stdout) as { kernelRelease: string; ipvs: unknown; verdict: { kind: string } };
      assert.equal(report.kernelRelease, release());
      assert.deepEqual(report.ipvs, { kind: 'present', sysctls });
      assert.equal(report.verdict.kind, c.kind);

      const text = doctor();
      assert.equal(text.status, c.status);
      for (const [name, file] of Object.entries(ipvsSysctlFiles))
        assert.match(text.stdout, new RegExp(`net\\.ipv4\\.vs\\.${file} = ${sysctls[name as keyof IpvsSysctls]}\\n`));
      assert.match(text.stdout, /^IPVS {5}present$/m);
      if (c.kind === 'exposed') {
        assert.match(text.stdout, /^EXPOSED: port-reused connections can reach weight-0 real servers on this node\.$/m);
        assert.match(text.stdout, /this kernel has c95c07836fa4 \(5\.16\)/);
        assert.match(text.stdout, /^ {2}sysctl -w net\.ipv4\.vs\.conn_reuse_mode=1\n {2}sysctl -w net\.ipv4\.vs\.expire_nodest_conn=1\n/m);
      } else {
        assert.match(text.stdout, /^NOT EXPOSED: port-reused connections cannot reach weight-0 real servers on this node\.$/m);
        assert.match(text.stdout, c.connReuseMode === 0 ? /c95c07836fa4 and net\.ipv4\.vs\.expire_nodest_conn=1/ : /f0a5e4d7a594/);
      }
    });
  }

  it('running the printed sysctl -w lines makes an exposed node safe', () => {
    setSysctls({ ...base, connReuseMode: 0, expireNodestConn: 0 });
    const lines = doctor().stdout.match(/^ {2}sysctl -w \S+$/gm) ?? [];
    assert.ok(lines.length > 0);
    for (const line of lines) execFileSync('sh', ['-c', line]);
    assert.equal(doctor().status, 0);
  });
});

describe('--set-sysctls on the real kernel', () => {
  it('applyRecommendedSysctls writes /proc/sys and logs each change', async () => {
    setSysctls({ connReuseMode: 0, expireNodestConn: 0, expireQuiescentTemplate: 0 });
    const { log, records } = captureLog();
    const changes = await applyRecommendedSysctls(log);
    assert.deepEqual(changes, [
      { name: 'connReuseMode', from: 0, to: 1 },
      { name: 'expireNodestConn', from: 0, to: 1 },
      { name: 'expireQuiescentTemplate', from: 0, to: 1 },
    ]);
    assert.deepEqual(records.map((r) => r.sysctl), [
      'net.ipv4.vs.conn_reuse_mode',
      'net.ipv4.vs.expire_nodest_conn',
      'net.ipv4.vs.expire_quiescent_template',
    ]);
    assert.equal(doctor().status, 0);
  });

  it('a read-only sysctl directory gives an error naming privileged mode', async () => {
    const dir = `/tmp/ro-vs-${process.pid}`;
    mkdirSync(dir);
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', dir]);
    try {
      for (const file of Object.values(ipvsSysctlFiles)) writeFileSync(join(dir, file), '0\n');
      execFileSync('mount', ['-o', 'remount,ro', dir]);
      await assert.rejects(
        applySysctls([{ name: 'expireNodestConn', value: 1 }], dir),
        /cannot write \/tmp\/ro-vs-\d+\/expire_nodest_conn \(EROFS\).*privileged container/,
      );
    } finally {
      execFileSync('umount', [dir]);
    }
  });
});
