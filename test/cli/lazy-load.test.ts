// `list` and `doctor` load only what they use: no logging library, no Kubernetes client. A module hook records
// every module the CLI process resolves; `run --help` is the control that shows the hook sees winston when it loads.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'cli-modules-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const hooks = join(dir, 'hooks.mjs');
writeFileSync(
  hooks,
  `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(process.env.MODULE_LOG, result.url + '\\n');
  return result;
}
`,
);
const register = join(dir, 'register.mjs');
writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);

const heavy = ['/node_modules/winston/', '/node_modules/@kubernetes/client-node/', '/src/agent/log.js', '/src/cli/options.js'];

function modulesLoadedBy(...args: string[]): string[] {
  const log = join(dir, `${args.join('-')}.log`);
  writeFileSync(log, '');
  const run = spawnSync(process.execPath, ['--import', pathToFileURL(register).href, cli, ...args], {
    encoding: 'utf8',
    env: { ...process.env, MODULE_LOG: log },
  });
  assert.equal(run.signal, null, run.stderr);
  return readFileSync(log, 'utf8').split('\n').filter(Boolean);
}

const loadedHeavy = (modules: string[]) => modules.filter((url) => heavy.some((part) => url.includes(part)));

it('the hook sees what a command loads (control: run --help loads winston through options.ts)', () => {
  const modules = modulesLoadedBy('run', '--help');
  assert.ok(modules.some((url) => url.includes('/node_modules/winston/')), modules.join('\n'));
});

for (const command of ['list', 'doctor']) {
  it(`${command} loads no logging library and no Kubernetes client`, () => {
    const modules = modulesLoadedBy(command);
    assert.ok(modules.some((url) => url.endsWith(`/src/cli/${command}.js`)), `${command}.js was not loaded: ${modules.join('\n')}`);
    assert.deepEqual(loadedHeavy(modules), []);
  });
}
