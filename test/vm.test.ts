// Boots the real-kernel test VM once and runs every dist/test/**/*.vmtest.js inside it.
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { test } from 'node:test';
import { runInVm, tailLines, vmPrerequisiteProblems } from './vm/harness.js';

// The harness default is 20 min; the whole suite of kernel tests, real kube-apiserver and kube-proxy included,
// gets 55 (CI allows 90 for everything).
const TIMEOUT_MS = 55 * 60 * 1000;

const SCRIPT = String.raw`
set -u
files=$(find dist/test -name '*.vmtest.js' | sort)
if [ -z "$files" ]; then
  echo "no *.vmtest.js files: minimal sanity check"
  set -ex
  test -e /proc/net/ip_vs
  ipvsadm -Ln
  ip netns add vm-sanity
  ip netns del vm-sanity
  exit 0
fi
# One etcd + kube-apiserver for every file that needs one (test/support/kube-cluster-main.ts), starting while
# the first files run: under TCG each start costs a minute or two.
if [ -x .tools/bin/kube-apiserver ]; then
  export KUBE_TEST_CLUSTER=/tmp/kube-test-cluster.url
  node dist/test/support/kube-cluster-main.js "$KUBE_TEST_CLUSTER" 2>&1 | sed -u 's/^/[shared cluster] /' &
fi
# One file at a time: the files share the VM's root network namespace and IPVS table.
node --test --test-concurrency=1 --test-reporter=spec $files
rc=$?
pkill -TERM -f kube-cluster-main.js && sleep 5
exit $rc
`;

test('kernel tests in the QEMU VM (*.vmtest.js)', { timeout: TIMEOUT_MS + 120_000 }, async () => {
  const problems = vmPrerequisiteProblems();
  if (problems.length > 0)
    throw new Error(`the test VM cannot boot on this machine: ${problems.join('; ')}.\nRun .ci/setup (it installs qemu-system-x86, linux-image-amd64, busybox-static, ipvsadm, iproute2, kmod).`);

  const result = await runInVm({
    script: SCRIPT,
    timeoutMs: TIMEOUT_MS,
    onOutput: (chunk) => process.stderr.write(chunk.replace(/^(?=.)/gm, '[vm] ')),
  });
  process.stderr.write(`[vm] exit ${result.exitCode}; boot to script ${result.bootMs} ms; whole VM run ${result.totalMs} ms\n`);
  assert.equal(result.exitCode, 0, `tests inside the VM failed (exit ${result.exitCode}); artifacts in ${result.outDir}; last output:\n${tailLines(result.output, 40)}`);
  rmSync(result.outDir, { recursive: true, force: true });
});
