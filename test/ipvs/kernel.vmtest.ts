// The netlink client against the real kernel, with ipvsadm as the independent oracle. Runs inside the VM.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { IpvsClient } from '../../src/ipvs/client.js';
import { formatTable, readTable } from '../../src/ipvs/table.js';
import type { ServiceKey } from '../../src/ipvs/types.js';
import { ipvsContract } from '../support/ipvs-contract.js';

const cli = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

function sh(script: string, input?: string): string {
  return execFileSync('sh', ['-c', script], { encoding: 'utf8', input, maxBuffer: 256 * 1024 * 1024 });
}

function ipvsadmList(): string {
  return sh('ipvsadm -Ln');
}

/** NAT real servers must be routable before the kernel accepts them. */
function routeTestRanges(): void {
  sh(`ip link show rs0 >/dev/null 2>&1 || {
        ip link add rs0 type dummy && ip link set rs0 up &&
        ip route add 10.240.0.0/16 dev rs0 && ip -6 route add fd00:240::/64 dev rs0; }`);
}

before(routeTestRanges);

ipvsContract('kernel IPVS over generic netlink', async () => {
  const api = await IpvsClient.open();
  return {
    api,
    // Spawning ipvsadm costs a second under emulation; the client's own deletes are what the suite tests anyway.
    reset: async () => {
      for (const s of await api.listServices()) await api.deleteService(s.key);
    },
  };
});

describe('cross-checked with ipvsadm', () => {
  let client: IpvsClient;
  before(async () => {
    client = await IpvsClient.open();
  });
  after(() => client.close());

  it('reads back exactly what ipvsadm made, IPv4, IPv6, fwmark, persistence and flags included', async () => {
    sh(`ipvsadm -C
      ipvsadm -A -t 10.96.0.1:80 -s wlc
      ipvsadm -a -t 10.96.0.1:80 -r 10.240.0.2:8080 -m -w 3
      ipvsadm -a -t 10.96.0.1:80 -r 10.240.0.3:8080 -m -w 0
      ipvsadm -A -u 10.96.0.10:53 -s rr
      ipvsadm -a -u 10.96.0.10:53 -r 10.240.0.4:53 -m -w 1
      ipvsadm -A -t [fd00:96::1]:443 -s sh -b sh-port -p 600
      ipvsadm -a -t [fd00:96::1]:443 -r [fd00:240::5]:8443 -m -w 2 -x 50 -y 5
      ipvsadm -A -f 7 -s rr -p 300 -M 255.255.255.0
      ipvsadm -a -f 7 -r 10.240.0.6:0 -m -w 1
      ipvsadm -A -f 8 -6 -s wrr
      ipvsadm -a -f 8 -6 -r [fd00:240::8]:0 -m -w 4
      ipvsadm -A -u 10.96.0.2:8443 -s rr -o`);
    const table = await readTable(client);
    assert.equal(formatTable(table), ipvsadmList());

    const byKey = (k: ServiceKey) => table.entries.find((e) => JSON.stringify(e.service.key) === JSON.stringify(k));
    const tcp = byKey({ kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.0.1', port: 80 });
    assert.equal(tcp?.service.scheduler, 'wlc');
    assert.deepEqual(
      tcp?.destinations.map((d) => [d.address, d.port, d.forwarding, d.weight]).sort(),
      [
        ['10.240.0.2', 8080, 'masq', 3],
        ['10.240.0.3', 8080, 'masq', 0],
      ],
    );
    const v6 = byKey({ kind: 'address', family: 'ipv6', protocol: 'tcp', address: 'fd00:96::1', port: 443 });
    assert.equal(v6?.service.flags.persistent, true);
    assert.equal(v6?.service.flags.sched2, true); // sh-port
    assert.equal(v6?.service.timeoutSeconds, 600);
    assert.deepEqual(
      v6?.destinations.map((d) => [d.address, d.upperThreshold, d.lowerThreshold]),
      [['fd00:240::5', 50, 5]],
    );
    const mark = byKey({ kind: 'fwmark', family: 'ipv4', fwmark: 7 });
    assert.equal(mark?.service.netmask, '255.255.255.0');
    assert.equal(mark?.service.timeoutSeconds, 300);
    assert.equal(byKey({ kind: 'fwmark', family: 'ipv6', fwmark: 8 })?.destinations[0]?.address, 'fd00:240::8');
    const ops = byKey({ kind: 'address', family: 'ipv4', protocol: 'udp', address: '10.96.0.2', port: 8443 });
    assert.equal(ops?.service.flags.onePacket, true);
  });

  it('makes rules that ipvsadm reads back exactly', async () => {
    sh('ipvsadm -C');
    const web: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.1.1', port: 80 };
    const dns6: ServiceKey = { kind: 'address', family: 'ipv6', protocol: 'udp', address: 'fd00:96::53', port: 53 };
    const mark: ServiceKey = { kind: 'fwmark', family: 'ipv4', fwmark: 42 };
    await client.createService({ key: web, scheduler: 'rr' });
    await client.createDestination(web, { family: 'ipv4', address: '10.240.1.2', port: 8080, forwarding: 'masq', weight: 1 });
    await client.createDestination(web, { family: 'ipv4', address: '10.240.1.3', port: 8080, forwarding: 'route', weight: 0 });
    await client.createService({ key: dns6, scheduler: 'wrr', flags: { persistent: true }, timeoutSeconds: 120 });
    await client.createDestination(dns6, { family: 'ipv6', address: 'fd00:240::53', port: 5353, forwarding: 'masq', weight: 7 });
    await client.createService({ key: mark, scheduler: 'sh', flags: { sched1: true } });
    await client.createDestination(mark, { family: 'ipv4', address: '10.240.1.4', port: 0, forwarding: 'tunnel', weight: 2 });
    // ipvsadm prints a real server as printf("  -> %-28s %-7s %-6d %-10u %-10u\n").
    const row = (to: string, fwd: string, weight: number) =>
      `  -> ${to.padEnd(28)} ${fwd.padEnd(7)} ${String(weight).padEnd(6)} 0          0         `;
    assert.equal(
      ipvsadmList(),
      [
        'IP Virtual Server version 1.2.1 (size=4096)',
        'Prot LocalAddress:Port Scheduler Flags',
        '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn',
        'TCP  10.96.1.1:80 rr',
        row('10.240.1.2:8080', 'Masq', 1),
        row('10.240.1.3:8080', 'Route', 0),
        'UDP  [fd00:96::53]:53 wrr persistent 120',
        row('[fd00:240::53]:5353', 'Masq', 7),
        'FWM  42 sh (sh-fallback)',
        row('10.240.1.4:0', 'Tunnel', 2),
        '',
      ].join('\n'),
    );
    assert.equal(formatTable(await readTable(client)), ipvsadmList());
  });

  it('deletes a weight-0 real server and answers ENOENT for one that is already gone', async () => {
    sh(`ipvsadm -C
      ipvsadm -A -t 10.96.2.1:80 -s rr
      ipvsadm -a -t 10.96.2.1:80 -r 10.240.2.2:80 -m -w 0
      ipvsadm -a -t 10.96.2.1:80 -r 10.240.2.3:80 -m -w 1`);
    const svc: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.2.1', port: 80 };
    await client.deleteDestination(svc, { family: 'ipv4', address: '10.240.2.2', port: 80 });
    assert.doesNotMatch(ipvsadmList(), /10\.240\.2\.2/);
    assert.match(ipvsadmList(), /10\.240\.2\.3:80/);
    await assert.rejects(client.deleteDestination(svc, { family: 'ipv4', address: '10.240.2.2', port: 80 }), {
      name: 'NetlinkError',
      errno: 'ENOENT',
    });
  });

  it('reads a table whose dumps span many datagrams completely (2,000 services, 20,000 real servers)', async () => {
    const rules: string[] = [];
    for (let s = 0; s < 2000; s++) {
      const vip = `10.97.${s >> 8}.${s & 255}:80`;
      rules.push(`-A -t ${vip} -s rr`);
      for (let d = 0; d < 10; d++) rules.push(`-a -t ${vip} -r 10.240.${100 + (s >> 8)}.${s & 255}:${8000 + d} -m -w ${d % 3}`);
    }
    sh('ipvsadm -C && ipvsadm -R', `${rules.join('\n')}\n`);
    const table = await readTable(client);
    assert.equal(table.entries.length, 2000);
    assert.equal(
      table.entries.reduce((n, e) => n + e.destinations.length, 0),
      20000,
    );
    assert.equal(formatTable(table), ipvsadmList());
    // The lean decoder reads the same replies as the full one: every real server, the same key and weight.
    for (const { service, destinations } of table.entries) {
      const lean = await client.listDestinationWeights(service.key);
      assert.deepEqual(
        lean,
        destinations.map(({ family, address, port, weight }) => ({ family, address, port, weight })),
        JSON.stringify(service.key),
      );
    }
    sh('ipvsadm -C');
  });

  it('gives a process without CAP_NET_ADMIN the EPERM error, named with its remedy', () => {
    sh('ipvsadm -C && ipvsadm -A -t 10.96.3.1:80 -s rr');
    const run = spawnSync('setpriv', ['--bounding-set=-all', '--inh-caps=-all', process.execPath, cli, 'list'], {
      encoding: 'utf8',
    });
    assert.equal(run.status, 1);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /^ipvs-janitor: IPVS GET_INFO: EPERM: IPVS needs CAP_NET_ADMIN.*\n$/);
    const direct = spawnSync(
      'setpriv',
      [
        '--bounding-set=-all',
        '--inh-caps=-all',
        process.execPath,
        '--input-type=module',
        '-e',
        `import { IpvsClient } from ${JSON.stringify(new URL('../../src/ipvs/client.js', import.meta.url).href)};
         const c = await IpvsClient.open();
         try { await c.listServices(); } catch (e) { console.log(e.errno); } finally { c.close(); }`,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(direct.stdout.trim(), 'EPERM', direct.stderr);
  });

  it('list --json carries the same table', async () => {
    sh(`ipvsadm -C && ipvsadm -A -t 10.96.4.1:80 -s rr && ipvsadm -a -t 10.96.4.1:80 -r 10.240.4.2:80 -m -w 5`);
    const out = JSON.parse(execFileSync(process.execPath, [cli, 'list', '--json'], { encoding: 'utf8' })) as {
      entries: { service: { key: ServiceKey }; destinations: { address: string; weight: number }[] }[];
    };
    assert.deepEqual(out.entries[0]?.service.key, {
      kind: 'address',
      family: 'ipv4',
      protocol: 'tcp',
      address: '10.96.4.1',
      port: 80,
    });
    assert.deepEqual(out.entries[0]?.destinations.map((d) => [d.address, d.weight]), [['10.240.4.2', 5]]);
    sh('ipvsadm -C');
  });
});
