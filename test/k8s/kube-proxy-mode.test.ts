// kube-proxy's mode as `run` and `doctor` learn it: from the real kube-proxy v1.37.2's metrics server (/proxyMode),
// run on the host inside a network namespace of its own (unshare -n) with etcd + kube-apiserver beside it, so its
// nftables rules touch nothing of the host's.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { askProxyMode, proxyModeLine, proxyModeUrl } from '../../src/k8s/kube-proxy-mode.js';

describe('kube-proxy /proxyMode', () => {
  it('asks the real kube-proxy (nftables mode); doctor reports it and that the node needs no agent', () => {
    const script = fileURLToPath(new URL('./kube-proxy-mode-netns.js', import.meta.url));
    const run = spawnSync('unshare', ['-n', process.execPath, script, 'nftables'], { encoding: 'utf8', timeout: 180_000 });
    assert.equal(run.status, 0, `${run.stderr}${run.stdout}`);
    const { answer, doctor } = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as {
      answer: unknown;
      doctor: { status: number; stdout: string };
    };
    assert.deepEqual(answer, { kind: 'mode', mode: 'nftables', url: 'http://127.0.0.1:10249/proxyMode' });
    // The host has no IPVS (exit 4); kube-proxy's answer is part of the report all the same.
    assert.deepEqual(JSON.parse(doctor.stdout).kubeProxy, answer);
  });

  it('an unreachable kube-proxy is an answer, never a failure', async () => {
    assert.deepEqual(await askProxyMode('127.0.0.1:1'), {
      kind: 'unreachable',
      url: 'http://127.0.0.1:1/proxyMode',
      reason: 'ECONNREFUSED',
    });
    assert.equal((await askProxyMode('nonsense')).kind, 'unreachable');
  });

  it('asks an unspecified bind address on loopback', () => {
    assert.equal(proxyModeUrl('0.0.0.0:10249'), 'http://127.0.0.1:10249/proxyMode');
    assert.equal(proxyModeUrl('[::]:10249'), 'http://127.0.0.1:10249/proxyMode');
    assert.equal(proxyModeUrl('[::1]:10249'), 'http://[::1]:10249/proxyMode');
    assert.equal(proxyModeUrl('10.0.0.4:9999'), 'http://10.0.0.4:9999/proxyMode');
  });

  it("run's one line: what runs wins over what the file asks for; another mode than IPVS is a warning", () => {
    const url = 'http://127.0.0.1:10249/proxyMode';
    assert.deepEqual(proxyModeLine({ kind: 'mode', mode: 'ipvs', url }, 'nftables'), {
      level: 'info', message: 'kube-proxy is in IPVS mode', fields: { mode: 'ipvs', source: url },
    });
    const nft = proxyModeLine({ kind: 'mode', mode: 'nftables', url }, undefined);
    assert.equal(nft.level, 'warn');
    assert.match(nft.message, /not in IPVS mode: .*nothing for this agent to clean/);
    assert.deepEqual(nft.fields, { mode: 'nftables', source: url });
    const fromFile = proxyModeLine({ kind: 'unreachable', url, reason: 'ECONNREFUSED' }, 'iptables');
    assert.equal(fromFile.level, 'warn');
    assert.deepEqual(fromFile.fields, { mode: 'iptables', source: 'kube-proxy configuration file' });
    assert.deepEqual(proxyModeLine({ kind: 'unreachable', url, reason: 'ECONNREFUSED' }, undefined), {
      level: 'info', message: 'could not ask kube-proxy its mode', fields: { url, reason: 'ECONNREFUSED' },
    });
  });
});
