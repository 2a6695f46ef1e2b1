// Run by rtnetlink.test.ts inside `unshare -n` (a network namespace of its own, holding only lo): follows the
// node's addresses as the agent does and prints one JSON line per state, for the test to read.
import { createLogger } from '../../src/agent/log.js';
import { NodeAddresses } from '../../src/agent/node-addresses.js';
import { parseNodePortAddresses, resolveNodePortAddresses } from '../../src/k8s/nodeport-addresses.js';

const entries = process.argv.slice(2);
const selection = resolveNodePortAddresses(parseNodePortAddresses(entries), {});
const addresses = await NodeAddresses.start(selection, createLogger('error'));
const print = (line: unknown) => process.stdout.write(`${JSON.stringify(line)}\n`);
addresses.onChange((change) => print({ change }));
print({ ready: addresses.current() });
process.once('SIGTERM', () => void addresses.close().then(() => print({ closed: true })));
