// Runs the API stand-in as its own process, for the demo and VM tests that drive it from elsewhere.
//
//   node dist/test/k8s/standin-main.js [objects.json|objects.yaml]
//
// Prints {"url": ..., "kubeconfig": ...} on one line, then reads commands from stdin, one per line, and answers
// each with one JSON line ({"ok": true, ...} or {"ok": false, "error": ...}):
//   apply {json object}            create or replace; answers the stored resourceVersion
//   delete <Kind> <namespace> <name>
//   drop | expire | bookmark       dropWatches() | expireHistory() | bookmark()
//   fail <path> <status> [count]   failNext()
//   requests <list|watch> <path>   the request counter
// It exits when stdin closes.
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseAllDocuments } from 'yaml';
import { StandIn, type Kind, type KubeObject, type Verb } from './standin.js';

type Document = KubeObject | KubeObject[] | { items: KubeObject[] } | null;

function objectsOf(value: Document): KubeObject[] {
  if (value === null) return [];
  if (Array.isArray(value)) return value;
  return 'items' in value && Array.isArray(value.items) ? value.items : [value as KubeObject];
}

/**
 * JSON or YAML, each document an object, an array of objects or a List. A .json file skips the YAML parser,
 * which takes minutes over the tens of megabytes of a benchmark cluster.
 */
function loadObjects(file: string): KubeObject[] {
  const text = readFileSync(file, 'utf8');
  if (file.endsWith('.json')) return objectsOf(JSON.parse(text) as Document);
  return parseAllDocuments(text).flatMap((doc) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]?.message}`);
    return objectsOf(doc.toJS() as Document);
  });
}

function run(standin: StandIn, line: string): Record<string, unknown> {
  const [command = '', ...args] = line.trim().split(/\s+/);
  const rest = line.trim().slice(command.length).trim();
  switch (command) {
    case 'apply':
      return { resourceVersion: standin.apply(JSON.parse(rest) as KubeObject).metadata.resourceVersion };
    case 'delete':
      return { deleted: standin.delete(args[0] as Kind, args[1] ?? '', args[2] ?? '') };
    case 'drop':
      standin.dropWatches();
      return {};
    case 'expire':
      standin.expireHistory();
      return {};
    case 'bookmark':
      standin.bookmark();
      return {};
    case 'fail':
      standin.failNext({ path: args[0] ?? '', status: Number(args[1]), count: args[2] ? Number(args[2]) : 1 });
      return {};
    case 'requests':
      return { count: standin.requests(args[0] as Verb, args[1] ?? '') };
    default:
      throw new Error(`unknown command: ${command}`);
  }
}

const standin = await StandIn.start();
for (const obj of process.argv[2] ? loadObjects(process.argv[2]) : []) standin.apply(obj);
process.stdout.write(`${JSON.stringify({ url: standin.url, kubeconfig: standin.kubeconfigFile() })}\n`);

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim() === '') return;
  let answer: Record<string, unknown>;
  try {
    answer = { ok: true, ...run(standin, line) };
  } catch (err) {
    answer = { ok: false, error: (err as Error).message };
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`);
});
lines.on('close', () => void standin.close());
