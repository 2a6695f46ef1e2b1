// Module resolution hooks for `run`: client-node's KubeConfig module imports the generated API index (every
// API group's client and ~1,000 model classes) only for makeApiClient(), which the agent never calls; its own
// transport speaks to the API server. Pointing that one import at a module with the two names KubeConfig uses
// cuts the agent's fixed memory by about 40 MiB (measured: 113 -> 77 MiB RSS to load KubeConfig, the hook
// thread included).
import type { ResolveHook } from 'node:module';

const CONFIG_MODULE = '/@kubernetes/client-node/dist/config.js';
const SLIM_GENERATED_INDEX = new URL('./client-node-generated.js', import.meta.url).href;

export const resolve: ResolveHook = (specifier, context, nextResolve) =>
  specifier === './gen/index.js' && context.parentURL?.endsWith(CONFIG_MODULE)
    ? nextResolve(SLIM_GENERATED_INDEX, context)
    : nextResolve(specifier, context);
