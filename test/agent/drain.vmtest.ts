// The drain policy on the real kernel: the janitor in-process with the project's IPVS client, real TCP and UDP
// traffic between pods (network namespaces) through IPVS, and the Kubernetes side as plain data.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Janitor, type DesiredState } from '../../src/agent/janitor.js';
import { createMetrics } from '../../src/agent/metrics.js';
import { IpvsClient } from '../../src/ipvs/client.js';
import type { Destination, DestinationSpec, ServiceKey } from '../../src/ipvs/types.js';
import type { DesiredEndpoint, DesiredVirtualService, ServiceRef } from '../../src/reconcile/types.js';
import { captureLog, type LogRecord } from '../support/capture-log.js';
import {
  addDummy,
  createPod,
  enableForwarding,
  execInNetns,
  spawnInNetns,
  teardown,
  vip4,
  waitForOutput,
  type Pod,
} from '../support/netns.js';
import { until } from '../support/poll.js';

const POD_SERVER = fileURLToPath(new URL('../demo/pod-server.js', import.meta.url));
const POLL_MS = 200;
// TCG runs code 5-10 times slower than a node: "within one interval" gets that much room and a margin.
const WITHIN_ONE_INTERVAL_MS = POLL_MS * 10 + 1000;

/** GETs a URL and prints the body as it comes, then END. */
const HTTP_CLIENT = `require('http').get(process.argv[1], (res) => {
  res.on('data', (d) => process.stdout.write(d));
  res.on('end', () => process.stdout.write('END\\n'));
}).on('error', (e) => { console.error(e.message); process.exit(1); });`;
/** Sends one UDP datagram. */
const UDP_CLIENT = `const s = require('dgram').createSocket('udp4');
s.send('ping', Number(process.argv[2]), process.argv[1], () => s.close());`;

type AddressKey = Extract<ServiceKey, { kind: 'address' }>;
const tcp = (address: string, port: number): AddressKey => ({ kind: 'address', family: 'ipv4', protocol: 'tcp', address, port });
const rs = (pod: Pod, weight: number, port = 8080): DestinationSpec => ({
  family: 'ipv4',
  address: pod.ipv4,
  port,
  forwarding: 'masq',
  weight,
});
const ep = (pod: Pod, condition: DesiredEndpoint['condition'], port = 8080): DesiredEndpoint => ({
  address: pod.ipv4,
  port,
  condition,
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// Drain decisions are timed to one --drain-poll-interval: poll the kernel every 20 ms.
const soon = (check: () => Promise<boolean>, what: string, ms = 30_000) => until(check, what, ms, 20);

describe('drain policy on the real kernel', () => {
  const web: ServiceRef = { namespace: 'shop', name: 'web' };
  const wanted = new Map<string, DesiredVirtualService>();
  const desired: DesiredState = {
    isSynced: () => true,
    services: () => [web],
    virtualServicesOf: (ref) => (ref.name === web.name ? [...wanted.values()] : []),
    // This file's desired state is the test's own map, always current.
    confirm: async () => ({ kind: 'current' }),
  };
  let ipvs: IpvsClient;
  let janitor: Janitor;
  let records: LogRecord[];
  let client: Pod;
  let old: Pod;
  let fresh: Pod;
  const servers = new Map<string, ReturnType<typeof spawnInNetns>>();

  const find = async (key: ServiceKey, pod: Pod): Promise<Destination | undefined> =>
    (await ipvs.listDestinations(key)).find((d) => d.address === pod.ipv4);
  const deletions = () => records.filter((r) => r.message === 'deleted real server');
  const want = (key: AddressKey, endpoints: DesiredEndpoint[]) =>
    wanted.set(`${key.protocol} ${key.address}`, { service: web, key, endpoints });

  before(async () => {
    enableForwarding();
    client = createPod({ name: 'dr-client' });
    old = createPod({ name: 'dr-old' });
    fresh = createPod({ name: 'dr-new' });
    addDummy('dr-vips', [vip4(201), vip4(202), vip4(203), vip4(204)]);
    for (const pod of [old, fresh]) {
      const server = spawnInNetns(pod.netns, process.execPath, [POD_SERVER, pod.name, '8080']);
      servers.set(pod.name, server);
      await waitForOutput(server, /listening/);
    }
    ipvs = await IpvsClient.open();
    const captured = captureLog();
    records = captured.records;
    janitor = new Janitor({
      ipvs,
      desired,
      policy: { mode: 'drain' },
      dryRun: false,
      log: captured.log,
      metrics: createMetrics(),
      drainPollIntervalMs: POLL_MS,
    });
  });

  after(async () => {
    await janitor?.stop();
    if (ipvs) {
      for (const s of await ipvs.listServices()) await ipvs.deleteService(s.key);
      ipvs.close();
    }
    teardown();
  });

  it('keeps a terminating real server while its long request runs, deletes it within one interval after', async () => {
    const svc = tcp(vip4(201), 80);
    await ipvs.createService({ key: svc, scheduler: 'rr' });
    await ipvs.createDestination(svc, rs(old, 1));
    want(svc, [ep(old, 'ready')]);
    const request = spawnInNetns(client.netns, process.execPath, ['-e', HTTP_CLIENT, `http://${svc.address}/slow`]);
    await waitForOutput(request, /pod dr-old start/);

    // The rollout: kube-proxy zeroes the old pod and adds the new one; the slice says old is terminating.
    await ipvs.updateDestination(svc, rs(old, 0));
    await ipvs.createDestination(svc, rs(fresh, 1));
    want(svc, [ep(old, 'terminating-serving'), ep(fresh, 'ready')]);
    janitor.serviceChanged(web);
    await janitor.idle();
    const draining = await find(svc, old);
    assert.equal(draining?.weight, 0);
    assert.ok((draining?.activeConnections ?? 0) >= 1, 'the long request is an active connection');

    // Followed, re-read every interval, kept while the request runs.
    await sleep(POLL_MS * 8);
    assert.ok(await find(svc, old), 'kept while its request is in flight');
    assert.equal(deletions().length, 0);

    servers.get(old.name)?.kill('SIGUSR1'); // the pod finishes its in-flight work
    await waitForOutput(request, /^END$/);
    const ended = performance.now();
    await soon(async () => (await find(svc, old)) === undefined, 'drained real server deleted');
    const tookMs = performance.now() - ended;
    assert.ok(tookMs < WITHIN_ONE_INTERVAL_MS, `deleted ${Math.round(tookMs)} ms after the request ended`);
    process.stdout.write(`# drained real server deleted ${Math.round(tookMs)} ms after its request ended (poll ${POLL_MS} ms)\n`);
    const [deleted] = deletions();
    assert.deepEqual([deleted?.reason, deleted?.trigger, deleted?.activeConnections], ['endpoint-drained', 'follow-up', 0]);
    assert.equal((await find(svc, fresh))?.weight, 1, 'a weight > 0 real server is never touched');
  });

  it('deletes at once a terminating real server with only inactive (TIME_WAIT) entries', async () => {
    const svc = tcp(vip4(202), 80);
    await ipvs.createService({ key: svc, scheduler: 'rr' });
    await ipvs.createDestination(svc, rs(fresh, 1));
    want(svc, [ep(fresh, 'ready')]);
    const { stdout } = await execInNetns(client.netns, process.execPath, ['-e', HTTP_CLIENT, `http://${svc.address}/`]);
    assert.match(stdout, /pod dr-new/);
    await ipvs.updateDestination(svc, rs(fresh, 0));
    const before = await find(svc, fresh);
    assert.deepEqual([before?.activeConnections, (before?.inactiveConnections ?? 0) >= 1], [0, true]);

    const already = deletions().length;
    want(svc, [ep(fresh, 'terminating-serving')]);
    janitor.serviceChanged(web);
    await janitor.idle();
    assert.equal(await find(svc, fresh), undefined);
    const deleted = deletions()[already];
    assert.deepEqual([deleted?.reason, deleted?.trigger], ['endpoint-drained', 'event']);
  });

  it('deletes at once the UDP real server of a terminating endpoint: every UDP entry is inactive', async () => {
    const svc: AddressKey = { kind: 'address', family: 'ipv4', protocol: 'udp', address: vip4(203), port: 53 };
    await ipvs.createService({ key: svc, scheduler: 'rr' });
    await ipvs.createDestination(svc, rs(old, 1, 5353));
    want(svc, [ep(old, 'ready', 5353)]);
    await execInNetns(client.netns, process.execPath, ['-e', UDP_CLIENT, svc.address, '53']);
    await soon(async () => ((await find(svc, old))?.inactiveConnections ?? 0) >= 1, 'the datagram made a UDP entry', 5000);
    assert.equal((await find(svc, old))?.activeConnections, 0);
    await ipvs.updateDestination(svc, rs(old, 0, 5353));

    const already = deletions().length;
    want(svc, [ep(old, 'terminating-serving', 5353)]);
    janitor.serviceChanged(web);
    await janitor.idle();
    assert.equal(await find(svc, old), undefined);
    assert.equal(deletions()[already]?.trigger, 'event');
  });

  it('deletes at once the real server of an endpoint gone from the slice, active connections or not', async () => {
    // The demo's old-kernel scenes: once the pod is dead, reused tuples kept ActiveConn above 0 on its real server.
    const svc = tcp(vip4(204), 80);
    await ipvs.createService({ key: svc, scheduler: 'rr' });
    await ipvs.createDestination(svc, rs(fresh, 1));
    want(svc, [ep(fresh, 'ready')]);
    const request = spawnInNetns(client.netns, process.execPath, ['-e', HTTP_CLIENT, `http://${svc.address}/slow`]);
    await waitForOutput(request, /pod dr-new start/);
    await ipvs.updateDestination(svc, rs(fresh, 0));
    assert.ok(((await find(svc, fresh))?.activeConnections ?? 0) >= 1, 'the long request is an active connection');

    const already = deletions().length;
    want(svc, []);
    janitor.serviceChanged(web);
    await janitor.idle();
    request.kill();
    assert.equal(await find(svc, fresh), undefined);
    const deleted = deletions()[already];
    assert.deepEqual([deleted?.reason, deleted?.trigger], ['endpoint-gone', 'event']);
    assert.ok(Number(deleted?.activeConnections) >= 1);
  });
});
