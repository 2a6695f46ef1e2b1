// The host kernel here has no IPVS: the CLI must say so in one line, exit non-zero, and print no stack.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { it } from 'node:test';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

it('list on a kernel without IPVS fails with the one-line "no IPVS" error', (t) => {
  if (existsSync('/proc/net/ip_vs')) return t.skip('this kernel has IPVS; the VM suite covers it');
  const run = spawnSync(process.execPath, [cli, 'list'], { encoding: 'utf8' });
  assert.equal(run.status, 1);
  assert.equal(run.stdout, '');
  assert.equal(
    run.stderr,
    'ipvs-janitor: this kernel has no IPVS (generic netlink family "IPVS" not found): load the ip_vs module ' +
      '(modprobe ip_vs) or run on a node where kube-proxy uses IPVS mode\n',
  );
});
