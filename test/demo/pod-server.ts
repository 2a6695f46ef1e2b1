// A demo pod's HTTP server, run inside the pod's netns:  node pod-server.js <pod name> <port>
//   GET /            answers at once: "pod <name>"
//   GET /slow?ms=N   "pod <name> start", a line every 250 ms, "pod <name> done" after N ms
// Every answer closes its connection, so each request is a new connection that can reuse a source port.
import { createServer } from 'node:http';

const [name = 'pod', port = '8080'] = process.argv.slice(2);
// The ticks make the client acknowledge data throughout, as a download does: a connection the kernel expired
// in between cannot go unnoticed.
const TICK_MS = 250;

createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://pod');
  res.setHeader('Connection', 'close');
  if (url.pathname !== '/slow') {
    res.end(`pod ${name}\n`);
    return;
  }
  const ms = Number(url.searchParams.get('ms') ?? 1000);
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.write(`pod ${name} start\n`);
  const tick = setInterval(() => res.write('.\n'), TICK_MS);
  const done = setTimeout(() => {
    clearInterval(tick);
    res.end(`pod ${name} done\n`);
  }, ms);
  res.on('close', () => {
    clearInterval(tick);
    clearTimeout(done);
  });
}).listen(Number(port), '0.0.0.0', () => process.stdout.write(`listening ${port}\n`));
