// The host kernel here has no IPVS: doctor must say so as a verdict (exit 4), not fail with a stack trace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { release } from 'node:os';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const noIpvs =
  'this kernel has no IPVS (generic netlink family "IPVS" not found): load the ip_vs module (modprobe ip_vs) ' +
  'or run on a node where kube-proxy uses IPVS mode';
const hasIpvs = existsSync('/proc/net/ip_vs');
const noKubeProxy = 'proxy    unknown (http://127.0.0.1:10249/proxyMode: ECONNREFUSED)\n';

it('doctor without IPVS reports it and exits 4', { skip: hasIpvs && 'this kernel has IPVS; doctor.vmtest covers it' }, () => {
  const run = spawnSync(process.execPath, [cli, 'doctor'], { encoding: 'utf8' });
  assert.equal(run.status, 4);
  assert.equal(run.stderr, '');
  assert.equal(run.stdout, `kernel   ${release()}\nIPVS     absent\n${noKubeProxy}\nNO IPVS: ${noIpvs}\n`);
});

it('doctor --json without IPVS is one object with the same wording', { skip: hasIpvs && 'this kernel has IPVS; doctor.vmtest covers it' }, () => {
  const run = spawnSync(process.execPath, [cli, 'doctor', '--json'], { encoding: 'utf8' });
  assert.equal(run.status, 4);
  assert.equal(run.stderr, '');
  assert.deepEqual(JSON.parse(run.stdout), {
    kernelRelease: release(),
    ipvs: { kind: 'absent' },
    // No kube-proxy on this host: its metrics port (default 127.0.0.1:10249) refuses the connection.
    kubeProxy: { kind: 'unreachable', url: 'http://127.0.0.1:10249/proxyMode', reason: 'ECONNREFUSED' },
    verdict: { kind: 'no-ipvs', reason: noIpvs },
  });
});
