// The resolution hook that keeps client-node's generated API index out of `run`: it redirects exactly one
// import, and KubeConfig still loads and authenticates under it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { resolve } from '../../src/k8s/client-node-hooks.js';

type Next = Parameters<typeof resolve>[2];
const echo: Next = (specifier) => ({ url: specifier, shortCircuit: true });
const configModule = 'file:///app/node_modules/@kubernetes/client-node/dist/config.js';
const from = (parentURL: string) => ({ parentURL, conditions: [], importAttributes: {}, importAssertions: {} });

describe('client-node resolution hook', () => {
  it('redirects the generated index only where client-node/dist/config.js imports it', async () => {
    const slim = await resolve('./gen/index.js', from(configModule), echo);
    assert.match(slim.url, /\/src\/k8s\/client-node-generated\.js$/);
    for (const [specifier, parentURL] of [
      ['./gen/index.js', 'file:///app/node_modules/@kubernetes/client-node/dist/api.js'],
      ['./watch.js', configModule],
    ] as const) {
      const same = await resolve(specifier, from(parentURL), echo);
      assert.equal(same.url, specifier);
    }
  });

  it('leaves KubeConfig working: a kubeconfig loads and its token reaches the request options', () => {
    const hooks = new URL('../../src/k8s/client-node-hooks.js', import.meta.url).href;
    const script = `
      import { register } from 'node:module';
      register(${JSON.stringify(hooks)});
      const { KubeConfig } = await import('@kubernetes/client-node/dist/config.js');
      const kc = new KubeConfig();
      kc.loadFromOptions({
        clusters: [{ name: 'c', server: 'https://127.0.0.1:6443', skipTLSVerify: false }],
        users: [{ name: 'u', token: 'secret-token' }],
        contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
        currentContext: 'x',
      });
      const options = {};
      await kc.applyToHTTPSOptions(options);
      process.stdout.write(JSON.stringify(options.headers));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    assert.deepEqual(JSON.parse(out), { Authorization: 'Bearer secret-token' });
  });
});
