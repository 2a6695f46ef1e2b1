// Runs inside the test VM: proves the netns helpers give routable pods (plain TCP and IPVS NAT).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import {
  addDummy,
  createPod,
  enableForwarding,
  execInNetns,
  spawnInNetns,
  teardown,
  vip4,
  vip6,
  waitForOutput,
  type Pod,
} from './netns.js';

// A TCP server that greets each client with the address it sees the client at.
const SERVER = `
const net = require('node:net');
const port = Number(process.argv[1]);
net.createServer((s) => s.end('hello ' + s.remoteAddress.replace(/^::ffff:/, '') + '\\n'))
  .listen(port, '::', () => console.log('listening ' + port));
`;
const CLIENT = `
const net = require('node:net');
const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]), timeout: 10000 });
let got = '';
s.setEncoding('utf8').on('data', (d) => (got += d)).on('end', () => process.stdout.write(got));
s.on('timeout', () => { console.error('timeout'); process.exit(2); });
s.on('error', (e) => { console.error(String(e)); process.exit(1); });
`;

function request(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, timeout: 10_000 });
    let got = '';
    s.setEncoding('utf8').on('data', (d: string) => (got += d));
    s.on('end', () => resolve(got));
    s.on('timeout', () => s.destroy(new Error(`timeout connecting to ${host}:${port}`)));
    s.on('error', reject);
  });
}

let server: Pod;
const PORT = 8080;

before(async () => {
  enableForwarding();
  server = createPod({ name: 'nt-server', ipv6: true });
  const proc = spawnInNetns(server.netns, process.execPath, ['-e', SERVER, String(PORT)]);
  await waitForOutput(proc, /^listening /, 60_000);
});

const services: string[] = [];

after(() => {
  try {
    for (const svc of services) execFileSync('ipvsadm', ['-D', '-t', svc]);
  } finally {
    teardown();
  }
});

test('a pod answers TCP from the root namespace over IPv4 and IPv6', async () => {
  assert.equal(await request(server.ipv4, PORT), `hello ${server.gatewayV4}\n`);
  assert.equal(await request(server.ipv6!, PORT), `hello ${server.gatewayV6}\n`);
});

test('a client pod reaches the server pod through an IPVS NAT service on a dummy VIP', async () => {
  const client = createPod({ name: 'nt-client', ipv6: true });
  addDummy('nt-vips', [vip4(1), vip6(1)]);
  const svc4 = `${vip4(1)}:80`;
  const svc6 = `[${vip6(1)}]:80`;
  services.push(svc4, svc6);
  execFileSync('ipvsadm', ['-A', '-t', svc4, '-s', 'rr']);
  execFileSync('ipvsadm', ['-a', '-t', svc4, '-r', `${server.ipv4}:${PORT}`, '-m']);
  execFileSync('ipvsadm', ['-A', '-t', svc6, '-s', 'rr']);
  execFileSync('ipvsadm', ['-a', '-t', svc6, '-r', `[${server.ipv6}]:${PORT}`, '-m']);

  const v4 = await execInNetns(client.netns, process.execPath, ['-e', CLIENT, vip4(1), '80']);
  assert.equal(v4.stdout, `hello ${client.ipv4}\n`, 'NAT keeps the client address');
  const v6 = await execInNetns(client.netns, process.execPath, ['-e', CLIENT, vip6(1), '80']);
  assert.equal(v6.stdout, `hello ${client.ipv6}\n`);

  const list = execFileSync('ipvsadm', ['-Ln'], { encoding: 'utf8' });
  assert.match(list, new RegExp(`-> ${server.ipv4.replace(/\./g, '\\.')}:${PORT}\\s+Masq`));
});
