// kube-proxy's own KubeProxyConfiguration: what the agent reads from it, checked against what kube-proxy v1.37.2
// itself makes of the same file (`kube-proxy --config F --write-config-to OUT` loads, defaults, validates and writes
// it, then exits: no root, no IPVS).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { parse } from 'yaml';
import {
  KubeProxyConfigError,
  parseKubeProxyConfiguration,
  readKubeProxyConfiguration,
} from '../../src/k8s/kube-proxy-config.js';
import { nodePortAddresses, primaryIPs, resolveNodePortAddresses } from '../../src/k8s/nodeport-addresses.js';
import { TOOLS_BIN } from '../support/kube-cluster.js';
import { IPVS_PRIMARY_AND_CIDR, KUBEADM_DEFAULT_MODE, KUBEADM_IPVS, NFTABLES, REFUSED } from './kube-proxy-configs.js';

const dir = mkdtempSync(join(tmpdir(), 'kube-proxy-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;
const file = (text: string) => {
  const path = join(dir, `config-${++files}.conf`);
  writeFileSync(path, text);
  return path;
};

/** kube-proxy's reading of the file: its fully defaulted configuration, or its error. */
function kubeProxyReads(text: string): { ok: true; config: Record<string, unknown> } | { ok: false; error: string } {
  const kubeProxy = join(TOOLS_BIN, 'kube-proxy');
  assert.ok(existsSync(kubeProxy), `${kubeProxy} is missing: run .ci/setup (it builds kube-proxy v1.37.2)`);
  const out = join(dir, `out-${++files}.yaml`);
  const r = spawnSync(kubeProxy, ['--config', file(text), '--write-config-to', out], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0 || !existsSync(out)) return { ok: false, error: `${r.stderr}${r.stdout}` };
  return { ok: true, config: parse(readFileSync(out, 'utf8')) as Record<string, unknown> };
}

describe('KubeProxyConfiguration files kube-proxy v1.37.2 accepts', () => {
  const cases = [
    { name: "kubeadm's, IPVS mode", text: KUBEADM_IPVS, mode: 'ipvs', metrics: '127.0.0.1:10249' },
    { name: 'primary + CIDRs, bindAddress, metrics on 0.0.0.0', text: IPVS_PRIMARY_AND_CIDR, mode: 'ipvs', metrics: '0.0.0.0:10249' },
    { name: "kubeadm's default mode (iptables)", text: KUBEADM_DEFAULT_MODE, mode: 'iptables', metrics: '127.0.0.1:10249' },
    { name: 'nftables (nodePortAddresses default to primary)', text: NFTABLES, mode: 'nftables', metrics: '127.0.0.1:10249' },
  ];
  for (const c of cases) {
    it(`${c.name}: the agent reads what kube-proxy reads`, () => {
      const theirs = kubeProxyReads(c.text);
      assert.ok(theirs.ok, theirs.ok ? '' : theirs.error);
      const ours = parseKubeProxyConfiguration(c.text);
      assert.equal(ours.mode, c.mode);
      assert.equal(theirs.config.mode, c.mode);
      assert.equal(ours.metricsBindAddress, c.metrics);
      assert.equal(theirs.config.metricsBindAddress, c.metrics);
      // kube-proxy writes the entries it will use (after its defaults); ours resolve from the same entries.
      const entries = (theirs.config.nodePortAddresses as string[] | null) ?? [];
      assert.equal(ours.nodePortAddresses.kind, 'kube-proxy');
      const kinds = ours.nodePortAddresses.kind === 'kube-proxy'
        ? ours.nodePortAddresses.entries.map((e) => (e.kind === 'keyword' ? e.keyword : `${e.cidr.address}/${e.cidr.prefix}`))
        : [];
      assert.deepEqual(kinds, entries);
      assert.equal(ours.bindAddress, theirs.config.bindAddress);
    });
  }

  it('primary resolves with the file\'s bindAddress over the node IP, as kube-proxy\'s detectNodeIPs', () => {
    const ours = parseKubeProxyConfiguration(IPVS_PRIMARY_AND_CIDR);
    const selection = resolveNodePortAddresses(ours.nodePortAddresses, primaryIPs(['10.0.9.9', 'fd00:5::9'], ours.bindAddress));
    const local = (address: string) => ({ address, onIpvsDummy: false });
    assert.deepEqual(
      nodePortAddresses(selection, ['10.0.5.1', '10.0.9.9', '192.168.3.3', '172.16.0.1', 'fd00:5::9', 'fd00:6::1'].map(local)).sort(),
      ['10.0.5.1', '192.168.3.3', 'fd00:5::9'],
    );
  });
});

describe('KubeProxyConfiguration files kube-proxy v1.37.2 refuses', () => {
  for (const c of REFUSED) {
    it(`${c.name}: refused by kube-proxy and by the agent, naming the value`, () => {
      const theirs = kubeProxyReads(c.text);
      assert.equal(theirs.ok, false, 'kube-proxy accepted it');
      assert.match(theirs.ok ? '' : theirs.error, c.mentions);
      assert.throws(() => parseKubeProxyConfiguration(c.text), (err: Error) => err instanceof KubeProxyConfigError && c.mentions.test(err.message));
    });
  }

  it('names the file and the problem for a missing file, another kind, or not YAML', () => {
    assert.throws(() => readKubeProxyConfiguration(join(dir, 'absent.conf')), /cannot read kube-proxy configuration .*absent\.conf: ENOENT/);
    assert.throws(
      () => readKubeProxyConfiguration(file('apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n')),
      /config-\d+\.conf: .*expected kubeproxy\.config\.k8s\.io\/v1alpha1 KubeProxyConfiguration/,
    );
    assert.throws(() => readKubeProxyConfiguration(file('mode: [ipvs\n')), /config-\d+\.conf: not YAML/);
  });
});
