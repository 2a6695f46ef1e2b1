// IpvsClient replacing its socket while other requests are queued or in flight, as after a janitor request times
// out while /healthz probes: only the current connection is ever replaced, a request that was never sent runs on the
// new one, and one cut off mid-answer fails with NetlinkClosedError instead of reading the new socket's replies.
// Runs inside the VM. replaceConnection is private: it is what a poisoned request triggers, called here directly so
// that the interleaving is exact.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, it } from 'node:test';
import { IpvsClient } from '../../src/ipvs/client.js';

/** Enough services that the dump spans many datagrams, so the socket yields in the middle of it. */
const SERVICES = 3000;

type Internals = { replaceConnection(): void; connection: unknown };
const internals = (client: IpvsClient) => client as unknown as Internals;

let client: IpvsClient;
before(async () => {
  const rules = Array.from({ length: SERVICES }, (_, s) => `-A -t 10.98.${s >> 8}.${s & 255}:80 -s rr`);
  execFileSync('sh', ['-c', 'ipvsadm -C && ipvsadm -R'], { input: `${rules.join('\n')}\n` });
  client = await IpvsClient.open();
});
after(() => {
  client.close();
  execFileSync('ipvsadm', ['-C']);
});

it('a request queued on the replaced connection runs on the new one, which is kept', async () => {
  const probe = client.info(); // /healthz: queued on the current connection, not yet sent
  internals(client).replaceConnection();
  const replacement = internals(client).connection;
  assert.match((await probe).version, /^\d+\.\d+\.\d+$/);
  assert.equal(internals(client).connection, replacement, 'the new connection was replaced again');
});

it('a dump cut off by the replacement fails as closed; the probe and later reads get complete answers', async () => {
  const dump = client.listServices();
  // The socket yields every few datagrams: this runs in the middle of the dump.
  await new Promise((resolve) => setImmediate(resolve));
  internals(client).replaceConnection();
  const replacement = internals(client).connection;
  const probe = client.info();
  await assert.rejects(dump, { name: 'NetlinkClosedError', sent: true });
  assert.match((await probe).version, /^\d+\.\d+\.\d+$/);
  assert.equal((await client.listServices()).length, SERVICES);
  assert.equal(internals(client).connection, replacement);
});
