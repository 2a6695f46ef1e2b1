// Runs inside the test VM: the kernel and tools the other kernel tests rely on are there.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';

const sh = (cmd: string, args: string[]): string => execFileSync(cmd, args, { encoding: 'utf8' });

test('IPVS is in the kernel', () => {
  assert.ok(existsSync('/proc/net/ip_vs'), '/proc/net/ip_vs exists');
  assert.match(readFileSync('/proc/net/ip_vs', 'utf8'), /^IP Virtual Server version/);
  const sysctls = readdirSync('/proc/sys/net/ipv4/vs');
  for (const s of ['conntrack', 'expire_nodest_conn', 'expire_quiescent_template', 'conn_reuse_mode'])
    assert.ok(sysctls.includes(s), `net.ipv4.vs.${s} exists (have ${sysctls.join(' ')})`);
});

test('ipvsadm -Ln works', () => {
  assert.match(sh('ipvsadm', ['-Ln']), /IP Virtual Server version/);
});

test('network namespaces can be created and removed', () => {
  const name = `sanity-${process.pid}`;
  sh('ip', ['netns', 'add', name]);
  try {
    assert.ok(sh('ip', ['netns', 'list']).split('\n').some((l) => l.startsWith(name)));
    assert.match(sh('ip', ['netns', 'exec', name, 'ip', '-o', 'link']), /\blo\b/);
  } finally {
    sh('ip', ['netns', 'del', name]);
  }
  assert.ok(!sh('ip', ['netns', 'list']).split('\n').some((l) => l.startsWith(name)));
});
