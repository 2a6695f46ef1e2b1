#!/usr/bin/env node
// The command line: parses arguments, runs one command, and turns expected failures into one line on
// stderr and a non-zero exit code.
// Each command loads its own modules when it runs: list and doctor never load logging or the Kubernetes client.
import { register } from 'node:module';
import { parseArgs } from 'node:util';
import { describeIpvsError } from '../ipvs/errors.js';

const usage = `usage: ipvs-janitor <command> [flags]

commands:
  run [flags]     the node agent (run --help lists its flags)
  list [--json]   print the kernel's IPVS table (same content as ipvsadm -Ln)
  doctor [--json] [--kube-proxy-metrics-address HOST:PORT]
                  can port-reused connections reach weight-0 real servers here, and what fixes it; kube-proxy's
                  mode from its /proxyMode (default 127.0.0.1:10249) (exit 0 not exposed, 3 exposed, 4 no IPVS)
`;


async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'list': {
      const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } } });
      const { list } = await import('./list.js');
      return list(values.json);
    }
    case 'run': {
      const { parseRunOptions, runHelp, UsageError } = await import('./options.js');
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(runHelp);
        return;
      }
      let options;
      try {
        options = parseRunOptions(rest, process.env);
      } catch (err) {
        if (err instanceof UsageError) return usageFailure(err.message);
        throw err;
      }
      // Before anything imports client-node: its KubeConfig need not load every generated API client.
      register('../k8s/client-node-hooks.js', import.meta.url);
      const { runAgent } = await import('../agent/agent.js');
      return runAgent(options);
    }
    case 'doctor': {
      const { values } = parseArgs({
        args: rest,
        options: {
          json: { type: 'boolean', default: false },
          'kube-proxy-metrics-address': { type: 'string' },
        },
      });
      const { doctor } = await import('./doctor.js');
      process.exitCode = await doctor(values.json, values['kube-proxy-metrics-address']);
      return;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(usage);
      return;
    default:
      return usageFailure(`unknown command ${JSON.stringify(command)}\n${usage}`);
  }
}

function usageFailure(message: string): void {
  process.stderr.write(`ipvs-janitor: ${message}\n`);
  process.exitCode = 2;
}

function isParseArgsError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (isParseArgsError(err)) return usageFailure((err as Error).message);
  process.stderr.write(`ipvs-janitor: ${describeIpvsError(err)}\n`);
  process.exitCode = 1;
});
