// A demo pod's HTTP server, run inside the pod's netns:  node pod-server.js <pod name> <port>
//   GET /        answers at once: "pod <name>"
//   GET /slow    "pod <name> start", a line every 250 ms, and "pod <name> done" when the process gets SIGUSR1:
//                the pod finishing its in-flight work at the end of its grace period, whenever that comes
//                (kube-proxy's syncs make the rollout's timing unknown in advance)
// Every answer closes its connection, so each request is a new connection that can reuse a source port.
import { createServer, type ServerResponse } from 'node:http';

const [name = 'pod', port = '8080'] = process.argv.slice(2);
// The ticks make the client acknowledge data throughout, as a download does: a connection the kernel expired
// in between cannot go unnoticed.
const TICK_MS = 250;
const slow = new Set<ServerResponse>();

process.on('SIGUSR1', () => {
  for (const res of slow) res.end(`pod ${name} done\n`);
  slow.clear();
});

createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://pod');
  res.setHeader('Connection', 'close');
  if (url.pathname !== '/slow') {
    res.end(`pod ${name}\n`);
    return;
  }
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.write(`pod ${name} start\n`);
  slow.add(res);
  const tick = setInterval(() => res.write('.\n'), TICK_MS);
  res.on('close', () => {
    clearInterval(tick);
    slow.delete(res);
  });
}).listen(Number(port), '0.0.0.0', () => process.stdout.write(`listening ${port}\n`));
