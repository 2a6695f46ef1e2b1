#!/usr/bin/env node
// The command line: parses arguments, runs one command, and turns expected failures into one line on
// stderr and a non-zero exit code.
import { parseArgs } from 'node:util';
import { describeIpvsError } from '../ipvs/errors.js';
import { doctor } from './doctor.js';
import { list } from './list.js';

const usage = `usage: ipvs-janitor <command> [flags]

commands:
  list [--json]   print the kernel's IPVS table (same content as ipvsadm -Ln)
  doctor [--json] can port-reused connections reach weight-0 real servers here, and what fixes it
                  (exit 0 not exposed, 3 exposed, 4 no IPVS)
`;

/** A failure the user can act on: printed as one line, never as a stack trace. */
export class UsageError extends Error {}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'list': {
      const { values } = parseArgs({ args: rest, options: { json: { type: 'boolean', default: false } } });
      return list(values.json);
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

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`ipvs-janitor: ${describeIpvsError(err)}\n`);
  process.exitCode = err instanceof UsageError ? 2 : 1;
});
