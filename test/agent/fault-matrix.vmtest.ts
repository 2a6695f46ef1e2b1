// The fault matrix: one agent process (`run`, the chart's ServiceAccount, its API traffic through Toxiproxy) lives
// through a rollout under each fault in turn, against the real kube-apiserver inside the VM and the real kernel.
// Per fault it must (1) never delete a real server whose endpoint was serving in the API at that moment, judged
// from the test's own admin watch (SliceRecorder), (2) recover without restarting, and (3) delete the stale ones
// once it is synced again. The counts are printed as a table (and written to $VM_OUT/fault-matrix.md).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IpvsClient } from '../../src/ipvs/client.js';
import type { DestinationSpec, ServiceKey } from '../../src/ipvs/types.js';
import { AgentProcess, isDeletion, isSynced, loggedAt } from '../support/agent-process.js';
import { until } from '../support/poll.js';
import { HttpFault } from '../support/http-fault.js';
import { KubeCluster } from '../support/kube-cluster.js';
import { createService, ensureNamespace, sliceObject, type EndpointSpec } from '../support/kube-objects.js';
import { ChartIdentity } from '../support/rbac.js';
import { servingKey, SliceRecorder } from '../support/slice-recorder.js';
import { Toxiproxy } from '../support/toxiproxy.js';

const NS = 'matrix';
const PROXY = 'api';
// Short, so that a resync on a stale cache, the way deletions on stale information happen, gets many chances.
const RESYNC = '5s';
// Longer than the API server's bookmark interval (about a minute): a dead-watch detector has time to fire.
const HANG_MS = 100_000;
// Lists must be larger than this for `limit_data` to cut them (the TLS handshake fits well below it).
const LIST_CUT_BYTES = 8_000;
const FILLER_SERVICES = 60;
const FILLER_NS = 'matrix-filler';
const RECOVERY_MS = 4 * 60_000;

interface Fault {
  name: string;
  /** Starts the fault; the rollout follows at once. */
  inject(): Promise<void>;
  /** Runs after the rollout and ends the fault. */
  heal(): Promise<void>;
  /** How the fault is made, for the report. */
  how: string;
}

interface Row {
  fault: string;
  deletions: number;
  violations: string[];
  staleDeleted: number;
  staleExpected: number;
  servingKept: boolean;
  recoveredSeconds: number | undefined;
  error?: string;
}

const rs = (address: string, weight: number): DestinationSpec => ({ family: 'ipv4', address, port: 8080, forwarding: 'masq', weight });
const ready = (ip: string): EndpointSpec => ({ ip, ready: true, serving: true, terminating: false });
const draining = (ip: string): EndpointSpec => ({ ip, ready: false, serving: true, terminating: true });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('fault matrix: a rollout under each API fault, one agent process throughout', () => {
  let cluster: KubeCluster;
  let identity: ChartIdentity;
  let toxiproxy: Toxiproxy;
  let httpFault: HttpFault;
  let recorder: SliceRecorder;
  let ipvs: IpvsClient;
  let agent: AgentProcess;
  const rows: Row[] = [];

  /** Forces a relist: the agent's resourceVersion predates a compaction and the restarted API server's cache. */
  const expireAgentVersion = async () => {
    await cluster.compact();
    await cluster.restartApiserver();
  };

  const faults: Fault[] = [
    {
      name: 'watch drop',
      how: 'toxiproxy proxy disabled (open connections cut, new ones refused), enabled after the rollout',
      inject: () => toxiproxy.setEnabled(PROXY, false),
      heal: () => toxiproxy.setEnabled(PROXY, true),
    },
    {
      name: 'API server restart',
      how: 'kube-apiserver stopped and started (SIGTERM); the rollout is written as soon as it is ready again',
      inject: () => cluster.restartApiserver(),
      heal: async () => undefined,
    },
    {
      name: '410 relist (compaction)',
      how: 'agent cut off, rollout written, etcd compacted, kube-apiserver restarted (fresh watch cache), proxy enabled',
      inject: () => toxiproxy.setEnabled(PROXY, false),
      heal: async () => {
        await expireAgentVersion();
        await toxiproxy.setEnabled(PROXY, true);
      },
    },
    {
      name: 'hang',
      how: `toxiproxy timeout toxic (timeout 0: server-to-agent bytes dropped, connections held) for ${HANG_MS / 1000} s`,
      inject: () => toxiproxy.addToxic(PROXY, { name: 'hang', type: 'timeout', attributes: { timeout: 0 } }),
      heal: async () => {
        await sleep(HANG_MS);
        await toxiproxy.removeToxic(PROXY, 'hang');
      },
    },
    {
      name: '403',
      how: "chart's ClusterRoleBinding deleted and the agent's connections cut; binding re-created after the rollout",
      inject: async () => {
        await identity.revokeBinding();
        // Authorization happens when a request starts: open watches would go on streaming.
        await toxiproxy.setEnabled(PROXY, false);
        await toxiproxy.setEnabled(PROXY, true);
      },
      heal: async () => {
        await sleep(10_000);
        await identity.restoreBinding();
      },
    },
    {
      name: '500 on list',
      how: 'relist forced (compaction + restart while cut off); lists answered 500 by the HTTP fault proxy for 30 s',
      inject: () => toxiproxy.setEnabled(PROXY, false),
      heal: async () => {
        await expireAgentVersion();
        const before = httpFault.failed;
        httpFault.failLists = true;
        await toxiproxy.setEnabled(PROXY, true);
        await sleep(30_000);
        httpFault.failLists = false;
        // Without a list in the window the cell would test nothing.
        if (httpFault.failed === before) throw new Error('the agent sent no list while lists failed');
      },
    },
    {
      name: 'list broken mid-body',
      how: `relist forced (compaction + restart while cut off) and every connection cut after ${LIST_CUT_BYTES} bytes (limit_data) for 30 s`,
      inject: () => toxiproxy.setEnabled(PROXY, false),
      heal: async () => {
        await expireAgentVersion();
        await toxiproxy.addToxic(PROXY, { name: 'cut', type: 'limit_data', attributes: { bytes: LIST_CUT_BYTES } });
        await toxiproxy.setEnabled(PROXY, true);
        await sleep(30_000);
        await toxiproxy.removeToxic(PROXY, 'cut');
      },
    },
    {
      name: 'slow list',
      how: 'relist forced (compaction + restart while cut off), 3 s latency on every server-to-agent chunk until synced',
      inject: () => toxiproxy.setEnabled(PROXY, false),
      heal: async () => {
        await expireAgentVersion();
        await toxiproxy.addToxic(PROXY, { name: 'slow', type: 'latency', attributes: { latency: 3000 } });
        const from = agent.lines.length;
        await toxiproxy.setEnabled(PROXY, true);
        await agent.waitFor(isSynced, 'synced through the slow proxy', RECOVERY_MS, from).catch(() => undefined);
        await toxiproxy.removeToxic(PROXY, 'slow');
      },
    },
  ];

  before(async () => {
    // Routes to the real servers (IPVS refuses unroutable ones); the VM's root namespace is shared by every file.
    execFileSync('sh', ['-c', 'ip link add mx0 type dummy && ip link set mx0 up && ip route replace 10.240.0.0/16 dev mx0']);
    cluster = await KubeCluster.start({ readyTimeoutMs: 10 * 60_000 });
    identity = await ChartIdentity.apply(cluster, NS, 'matrix');
    toxiproxy = await Toxiproxy.start();
    // agent -> toxiproxy (TCP faults) -> HTTP fault proxy (500s; TLS with the server's own certificate) -> API server
    httpFault = await HttpFault.start(cluster);
    const listen = await toxiproxy.proxy(PROXY, `127.0.0.1:${httpFault.port}`);
    await ensureNamespace(cluster, NS);
    await ensureNamespace(cluster, FILLER_NS);
    for (let i = 0; i < FILLER_SERVICES; i++) await createService(cluster, { namespace: FILLER_NS, name: `filler-${i}` });
    recorder = await SliceRecorder.start(cluster, NS);
    ipvs = await IpvsClient.open();
    agent = AgentProcess.start([
      '--kubeconfig', cluster.kubeconfig(identity.user, `https://${listen}`),
      '--metrics-address', '127.0.0.1:0', '--resync-period', RESYNC, '--nodeport-addresses', '10.0.5.1',
    ]);
    await agent.waitFor(isSynced, 'informers synced', 5 * 60_000);
  });

  after(async () => {
    await agent?.stop();
    recorder?.stop();
    if (ipvs) {
      for (const s of await ipvs.listServices()) await ipvs.deleteService(s.key);
      ipvs.close();
    }
    await toxiproxy?.stop();
    await httpFault?.stop();
    await identity?.remove();
    await cluster?.stop();
    execFileSync('ip', ['link', 'del', 'mx0']);
  });

  async function runCell(index: number, fault: Fault): Promise<Row> {
    const name = `cell-${index}`;
    const service = `${NS}/${name}`;
    const pod = (n: number) => `10.240.${index}.${n}`;
    const [a1, a2, b1, c1, stale] = [pod(1), pod(2), pod(3), pod(4), pod(9)];
    const row: Row = { fault: fault.name, deletions: 0, violations: [], staleDeleted: 0, staleExpected: 3, servingKept: false, recoveredSeconds: undefined };
    const firstLine = agent.lines.length;
    const { clusterIP } = await createService(cluster, { namespace: NS, name, ports: [{ name: 'http', port: 80, targetPort: 8080 }] });
    const key: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: clusterIP, port: 80 };
    const weights = async () => Object.fromEntries((await ipvs.listDestinations(key)).map((d) => [d.address, d.weight]));
    const gone = (ip: string) => async () => !(ip in (await weights()));
    const slice = (endpoints: EndpointSpec[]) => recorder.put(sliceObject(NS, name, name, endpoints, { name: 'http', port: 8080 }));
    // Playing kube-proxy: what it does to the real servers at each step of the rollout.
    const step = async (endpoints: EndpointSpec[], kernel: () => Promise<void>) => {
      await slice(endpoints);
      await kernel();
      await sleep(1000);
    };
    try {
      await slice([ready(a1), ready(a2)]);
      await ipvs.createService({ key, scheduler: 'rr' });
      for (const ip of [a1, a2]) await ipvs.createDestination(key, rs(ip, 1));
      // Left behind by an earlier kube-proxy: deleting it proves the agent is synced and knows the Service.
      await ipvs.createDestination(key, rs(stale, 0));
      await until(gone(stale), `${name}: the agent deletes the stale real server before the fault`, 3 * 60_000);

      await fault.inject();
      await step([ready(a1), ready(a2), ready(b1)], () => ipvs.createDestination(key, rs(b1, 1)));
      await step([draining(a1), ready(a2), ready(b1)], () => ipvs.updateDestination(key, rs(a1, 0)));
      // c1 appears and starts draining while the agent may not be watching: it must survive any stale resync.
      await step([draining(a1), ready(a2), ready(b1), ready(c1)], () => ipvs.createDestination(key, rs(c1, 1)));
      await step([draining(a1), ready(a2), ready(b1), draining(c1)], () => ipvs.updateDestination(key, rs(c1, 0)));
      await step([draining(a1), ready(b1), draining(c1)], () => ipvs.updateDestination(key, rs(a2, 0)));
      await step([ready(b1), draining(c1)], async () => undefined); // a1 leaves: its weight-0 real server is stale
      await fault.heal();
      const healed = Date.now();

      await until(async () => (await gone(a1)()) && (await gone(a2)()), `${name}: stale a1 and a2 deleted after the fault`, RECOVERY_MS);
      row.recoveredSeconds = Math.round((Date.now() - healed) / 100) / 10;
      const now = await weights();
      row.servingKept = now[c1] === 0 && now[b1] === 1;
      await slice([ready(b1)]); // c1 leaves: events flow again
      await until(gone(c1), `${name}: c1 deleted once it left the slice`, RECOVERY_MS);
      // The log lines follow the kernel deletions through a pipe.
      const logged = (ip: string) => agent.lines.slice(firstLine).some((l) => isDeletion(l) && l.realServer === `${ip}:8080`);
      await until(() => [a1, a2, c1].every(logged), `${name}: the deletions of a1, a2 and c1 logged`, 30_000);
    } catch (err) {
      row.error = (err as Error).message.split('\n')[0];
    }
    const deletions = agent.lines.slice(firstLine).filter((l) => isDeletion(l) && l.service === service);
    row.deletions = deletions.length;
    row.staleDeleted = new Set(deletions.map((l) => l.realServer).filter((r) => [a1, a2, c1].some((ip) => r === `${ip}:8080`))).size;
    // c1's deletion is stale only after it left the slice; the judge decides every deletion by its time.
    for (const line of deletions) {
      const real = String(line.realServer);
      if (recorder.servingThroughout(servingKey(service, real), loggedAt(line))) row.violations.push(`${real} at ${line.timestamp} (${line.trigger})`);
    }
    return row;
  }

  it('never deletes a serving endpoint, recovers without a restart, and deletes the stale ones once synced', async () => {
    const pid = agent.pid;
    for (const [i, fault] of faults.entries()) {
      const row = await runCell(i + 1, fault);
      rows.push(row);
      process.stdout.write(`# fault-matrix ${JSON.stringify(row)}\n`);
    }
    const table = [
      '| fault | how | deletions | deleted while serving | stale deleted | serving kept | recovered after heal | error |',
      '|---|---|---|---|---|---|---|---|',
      ...rows.map((r, i) =>
        `| ${r.fault} | ${faults[i]!.how} | ${r.deletions} | ${r.violations.length}${r.violations.length ? `: ${r.violations.join('; ')}` : ''} | ` +
        `${r.staleDeleted}/${r.staleExpected} | ${r.servingKept ? 'yes' : 'no'} | ${r.recoveredSeconds === undefined ? '-' : `${r.recoveredSeconds} s`} | ${r.error ?? ''} |`),
    ].join('\n');
    process.stdout.write(`${table.replace(/^/gm, '# ')}\n`);
    if (process.env.VM_OUT) writeFileSync(join(process.env.VM_OUT, 'fault-matrix.md'), `${table}\n`);

    assert.ok(agent.running, `the agent kept running\n${agent.describe()}`);
    assert.equal(agent.pid, pid, 'one agent process throughout');
    for (const r of rows) {
      assert.deepEqual(r.violations, [], `${r.fault}: deleted a real server whose endpoint was serving`);
      assert.equal(r.error, undefined, `${r.fault}: ${r.error}`);
      assert.ok(r.servingKept, `${r.fault}: the draining and the ready real servers were kept`);
      assert.equal(r.staleDeleted, r.staleExpected, `${r.fault}: every stale real server deleted once synced`);
    }
  });
});
