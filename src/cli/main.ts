#!/usr/bin/env node
// The command line: parses arguments, runs one command, and turns expected failures into one line on
// stderr and a non-zero exit code.
import { parseArgs } from 'node:util';
import { describeIpvsError } from '../ipvs/errors.js';
import { doctor } from './doctor.js';
import { list } from './list.js';
import { parseRunOptions, runHelp, UsageError } from './options.js';

const usage = `usage: ipvs-janitor <command> [flags]

commands:
  run [flags]     the node agent (run --help lists its flags)
  list [--json]   print the kernel's IPVS table (same content as ipvsadm -Ln)
  doctor [--json] can port-reused connections reach weight-0 real servers here, and what fixes it
                  (exit 0 not exposed, 3 exposed, 4 no IPVS)
`;


async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'list': {
      const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } } });
      return list(values.json);
    }
    case 'run': {
      if (rest.includes('--help') || rest.includes('-h')) {
        process.stdout.write(runHelp);
        return;
      }
      const options = parseRunOptions(rest, process.env);
      // Loaded on demand: list and doctor need not pay for the Kubernetes client.
      const { runAgent } = await import('../agent/agent.js');
      return runAgent(options);
    }
    case 'doctor': {
      const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } } });
      process.exitCode = await doctor(values.json);
      return;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(usage);
      return;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}\n${usage}`);
  }
}

function isUsageError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS'));
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`ipvs-janitor: ${describeIpvsError(err)}\n`);
  process.exitCode = isUsageError(err) ? 2 : 1;
});
