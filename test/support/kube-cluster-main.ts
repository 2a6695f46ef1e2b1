// Owns the cluster a whole VM suite shares: starts it, serves its state and lifecycle operations to the test
// files (which attach through SHARED_CLUSTER_ENV) on a loopback control port, and stops it on SIGTERM.
//   node dist/test/support/kube-cluster-main.js URL_FILE
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { KubeCluster } from './kube-cluster.js';

const urlFile = process.argv[2];
if (!urlFile) {
  process.stderr.write('usage: kube-cluster-main URL_FILE\n');
  process.exit(2);
}
const started = Date.now();
const cluster = await KubeCluster.start({ dedicated: true });
process.stderr.write(`kube-cluster-main: etcd + kube-apiserver ready in ${Date.now() - started} ms\n`);

const operations: Record<string, () => Promise<void>> = {
  'restart-apiserver': () => cluster.restartApiserver(),
  'stop-apiserver': () => cluster.stopApiserver(),
  'start-apiserver': () => cluster.startApiserverAgain(),
};
// One operation at a time, in arrival order: a restart must not interleave with a stop.
let queue: Promise<unknown> = Promise.resolve();
const server = createServer((req, res) => {
  const name = (req.url ?? '').slice(1);
  if (req.method === 'GET' && name === 'state') {
    res.end(JSON.stringify(cluster.state));
    return;
  }
  const operation = req.method === 'POST' ? operations[name] : undefined;
  if (!operation) {
    res.writeHead(404).end(`no operation ${req.method} ${req.url}`);
    return;
  }
  queue = queue.then(operation).then(
    () => res.end('ok'),
    (err: unknown) => res.writeHead(500).end(err instanceof Error ? err.message : String(err)),
  );
});
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as { port: number };
  writeFileSync(urlFile, `http://127.0.0.1:${port}\n`);
});
process.once('SIGTERM', () => {
  server.close();
  void cluster.stop().then(() => process.exit(0));
});
