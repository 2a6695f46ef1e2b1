// One set of assertions for every IpvsApi: run against FakeIpvs on the host and against the netlink client
// in a VM, it is what keeps the fake honest about the kernel's answers.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import type {
  Destination,
  DestinationSpec,
  IpvsApi,
  ServiceKey,
  ServiceSpec,
  VirtualService,
} from '../../src/ipvs/types.js';
import { NetlinkError } from '../../src/netlink/errors.js';
import { zeroStats } from './fake-ipvs.js';
import { destinationKeyString, serviceKeyString } from '../../src/reconcile/keys.js';

export interface ContractTarget {
  api: IpvsApi;
  /** Leaves the table empty; called before every test. */
  reset(): Promise<void>;
}

// Only ranges the VM routes: virtual IPs 10.96.0.0/16 and fd00:96::/64, real servers 10.240.0.0/16 and fd00:240::/64.
const TCP4: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.0.10', port: 80 };
const UDP4: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'udp', address: '10.96.0.10', port: 53 };
const SCTP4: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'sctp', address: '10.96.0.10', port: 3868 };
const TCP6: Extract<ServiceKey, { kind: 'address' }> = {
  kind: 'address',
  family: 'ipv6',
  protocol: 'tcp',
  address: 'fd00:96::10',
  port: 443,
};
const UDP6: ServiceKey = { kind: 'address', family: 'ipv6', protocol: 'udp', address: 'fd00:96::10', port: 53 };
const FWMARK4: ServiceKey = { kind: 'fwmark', family: 'ipv4', fwmark: 100 };
const FWMARK6: ServiceKey = { kind: 'fwmark', family: 'ipv6', fwmark: 101 };
const MISSING: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.0.99', port: 80 };

const SERVICE_KINDS: Array<[string, ServiceKey, string]> = [
  ['IPv4 TCP', TCP4, '255.255.255.255'],
  ['IPv4 UDP', UDP4, '255.255.255.255'],
  ['IPv4 SCTP', SCTP4, '255.255.255.255'],
  ['IPv6 TCP', TCP6, '128'],
  ['IPv6 UDP', UDP6, '128'],
  ['fwmark IPv4', FWMARK4, '255.255.255.255'],
  ['fwmark IPv6', FWMARK6, '128'],
];

const RS4A: DestinationSpec = { family: 'ipv4', address: '10.240.0.11', port: 8080, forwarding: 'masq', weight: 1 };
const RS4B: DestinationSpec = {
  family: 'ipv4',
  address: '10.240.0.12',
  port: 8080,
  forwarding: 'masq',
  weight: 3,
  upperThreshold: 100,
  lowerThreshold: 10,
};
const RS6A: DestinationSpec = { family: 'ipv6', address: 'fd00:240::11', port: 8443, forwarding: 'masq', weight: 1 };


function expectedService(
  key: ServiceKey,
  netmask: string,
  overrides: Partial<Pick<VirtualService, 'scheduler' | 'timeoutSeconds'>> & { persistent?: boolean } = {},
): VirtualService {
  return {
    key,
    scheduler: overrides.scheduler ?? 'rr',
    flags: {
      persistent: overrides.persistent ?? false,
      hashed: true,
      onePacket: false,
      sched1: false,
      sched2: false,
      sched3: false,
    },
    timeoutSeconds: overrides.timeoutSeconds ?? 0,
    netmask,
    stats: zeroStats(),
  };
}

// An absent persistence engine may be reported as a missing or an undefined property.
function comparable(service: VirtualService): VirtualService {
  const { persistenceEngine, ...rest } = service;
  return persistenceEngine === undefined ? rest : service;
}

function expectedDestination(spec: DestinationSpec): Destination {
  return {
    family: spec.family,
    address: spec.address,
    port: spec.port,
    forwarding: spec.forwarding,
    weight: spec.weight,
    upperThreshold: spec.upperThreshold ?? 0,
    lowerThreshold: spec.lowerThreshold ?? 0,
    activeConnections: 0,
    inactiveConnections: 0,
    persistentConnections: 0,
    stats: zeroStats(),
  };
}

function byDestinationKey(a: Destination, b: Destination): number {
  return destinationKeyString(a).localeCompare(destinationKeyString(b));
}

async function rejectsWith(promise: Promise<unknown>, errno: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof NetlinkError, `expected a NetlinkError, got ${String(err)}`);
    assert.equal(err.errno, errno);
    return true;
  });
}

export function ipvsContract(name: string, open: () => Promise<ContractTarget>): void {
  describe(`IpvsApi contract: ${name}`, () => {
    let target: ContractTarget | undefined;
    const api = (): IpvsApi => {
      assert.ok(target, 'open() did not complete');
      return target.api;
    };
    const rr = (key: ServiceKey): ServiceSpec => ({ key, scheduler: 'rr' });
    const listed = async (key: ServiceKey): Promise<Destination[]> =>
      (await api().listDestinations(key)).sort(byDestinationKey);

    before(async () => {
      target = await open();
    });
    beforeEach(async () => {
      await target?.reset();
    });
    after(() => {
      target?.api.close();
    });

    it('info() reports a dotted version and the connection table size', async () => {
      const info = await api().info();
      assert.match(info.version, /^\d+\.\d+\.\d+$/);
      assert.ok(Number.isInteger(info.connectionTableSize) && info.connectionTableSize > 0);
    });

    it('timeouts() reports whole seconds', async () => {
      const timeouts = await api().timeouts();
      for (const value of [timeouts.tcpSeconds, timeouts.tcpFinSeconds, timeouts.udpSeconds]) {
        assert.ok(Number.isInteger(value) && value >= 0, `timeout ${value}`);
      }
    });

    it('an emptied table lists no services', async () => {
      assert.deepEqual(await api().listServices(), []);
    });

    for (const [label, key, netmask] of SERVICE_KINDS) {
      it(`creates, gets and lists an ${label} service with the kernel's defaults`, async () => {
        await api().createService(rr(key));
        const expected = expectedService(key, netmask);
        assert.deepEqual(comparable(await api().getService(key)), expected);
        assert.deepEqual((await api().listServices()).map(comparable), [expected]);
      });
    }

    it('lists every kind of service side by side', async () => {
      for (const [, key] of SERVICE_KINDS) await api().createService(rr(key));
      const keys = (await api().listServices()).map((s) => serviceKeyString(s.key)).sort();
      assert.deepEqual(keys, SERVICE_KINDS.map(([, key]) => serviceKeyString(key)).sort());
    });

    it('keeps the persistence flag and timeout', async () => {
      await api().createService({ key: TCP4, scheduler: 'rr', flags: { persistent: true }, timeoutSeconds: 300 });
      assert.deepEqual(
        comparable(await api().getService(TCP4)),
        expectedService(TCP4, '255.255.255.255', { persistent: true, timeoutSeconds: 300 }),
      );
    });

    it('creates a service with the wrr scheduler', async () => {
      await api().createService({ key: TCP6, scheduler: 'wrr' });
      assert.equal((await api().getService(TCP6)).scheduler, 'wrr');
    });

    it('updates scheduler, persistence and timeout', async () => {
      await api().createService(rr(TCP4));
      await api().updateService({ key: TCP4, scheduler: 'wrr', flags: { persistent: true }, timeoutSeconds: 600 });
      assert.deepEqual(
        comparable(await api().getService(TCP4)),
        expectedService(TCP4, '255.255.255.255', { scheduler: 'wrr', persistent: true, timeoutSeconds: 600 }),
      );
    });

    it('finds an IPv6 service however its address is spelled, and reports it compressed', async () => {
      await api().createService(rr(TCP6));
      const respelled: ServiceKey = { ...TCP6, address: 'FD00:96:0:0::10' };
      assert.deepEqual((await api().getService(respelled)).key, TCP6);
      await rejectsWith(api().createService(rr(respelled)), 'EEXIST');
    });

    it('refuses to create a service twice: EEXIST', async () => {
      await api().createService(rr(TCP4));
      await rejectsWith(api().createService({ key: TCP4, scheduler: 'wrr' }), 'EEXIST');
      assert.equal((await api().getService(TCP4)).scheduler, 'rr');
    });

    it('refuses an unknown scheduler: ENOENT, and creates nothing', async () => {
      await rejectsWith(api().createService({ key: TCP4, scheduler: 'no-such-sched' }), 'ENOENT');
      assert.deepEqual(await api().listServices(), []);
    });

    it('answers ESRCH for get, update and delete of a missing service', async () => {
      await api().createService(rr(TCP4));
      await rejectsWith(api().getService(MISSING), 'ESRCH');
      await rejectsWith(api().updateService(rr(MISSING)), 'ESRCH');
      await rejectsWith(api().deleteService(MISSING), 'ESRCH');
      await rejectsWith(api().getService(FWMARK4), 'ESRCH');
    });

    it('deletes a service together with its destinations', async () => {
      await api().createService(rr(TCP4));
      await api().createDestination(TCP4, RS4A);
      await api().deleteService(TCP4);
      await rejectsWith(api().getService(TCP4), 'ESRCH');
      assert.deepEqual(await api().listServices(), []);
      await api().createService(rr(TCP4));
      assert.deepEqual(await api().listDestinations(TCP4), []);
    });

    it('creates and lists destinations with every field', async () => {
      await api().createService(rr(TCP4));
      await api().createDestination(TCP4, RS4B);
      await api().createDestination(TCP4, RS4A);
      assert.deepEqual(await listed(TCP4), [expectedDestination(RS4A), expectedDestination(RS4B)]);
    });

    it('creates and lists IPv6 destinations', async () => {
      await api().createService(rr(TCP6));
      await api().createDestination(TCP6, RS6A);
      assert.deepEqual(await listed(TCP6), [expectedDestination(RS6A)]);
    });

    it('creates and lists destinations of fwmark services', async () => {
      await api().createService(rr(FWMARK4));
      await api().createService(rr(FWMARK6));
      await api().createDestination(FWMARK4, RS4A);
      await api().createDestination(FWMARK6, RS6A);
      assert.deepEqual(await listed(FWMARK4), [expectedDestination(RS4A)]);
      assert.deepEqual(await listed(FWMARK6), [expectedDestination(RS6A)]);
    });

    it('sets a weight to 0 and leaves the other fields alone', async () => {
      await api().createService(rr(TCP4));
      await api().createDestination(TCP4, RS4B);
      await api().updateDestination(TCP4, { ...RS4B, weight: 0 });
      assert.deepEqual(await listed(TCP4), [expectedDestination({ ...RS4B, weight: 0 })]);
    });

    it('deletes a weight-0 destination and keeps its neighbour', async () => {
      await api().createService(rr(TCP4));
      await api().createDestination(TCP4, RS4A);
      await api().createDestination(TCP4, RS4B);
      await api().updateDestination(TCP4, { ...RS4A, weight: 0 });
      await api().deleteDestination(TCP4, RS4A);
      assert.deepEqual(await listed(TCP4), [expectedDestination(RS4B)]);
    });

    it('matches an IPv6 destination however its address is spelled', async () => {
      await api().createService(rr(TCP6));
      await api().createDestination(TCP6, RS6A);
      const respelled = { ...RS6A, address: 'fd00:240:0:0:0:0:0:11' };
      await rejectsWith(api().createDestination(TCP6, respelled), 'EEXIST');
      await api().deleteDestination(TCP6, respelled);
      assert.deepEqual(await api().listDestinations(TCP6), []);
    });

    it('answers ENOENT for update and delete of a missing destination of an existing service', async () => {
      await api().createService(rr(TCP4));
      await api().createDestination(TCP4, RS4A);
      await rejectsWith(api().deleteDestination(TCP4, RS4B), 'ENOENT');
      await rejectsWith(api().updateDestination(TCP4, RS4B), 'ENOENT');
      await rejectsWith(api().deleteDestination(TCP4, { ...RS4A, port: 8081 }), 'ENOENT');
      assert.deepEqual(await listed(TCP4), [expectedDestination(RS4A)]);
    });

    it('answers ESRCH for destination changes on a missing service', async () => {
      await rejectsWith(api().createDestination(MISSING, RS4A), 'ESRCH');
      await rejectsWith(api().updateDestination(MISSING, RS4A), 'ESRCH');
      await rejectsWith(api().deleteDestination(MISSING, RS4A), 'ESRCH');
    });

    it('refuses a duplicate destination: EEXIST', async () => {
      await api().createService(rr(TCP4));
      await api().createDestination(TCP4, RS4A);
      await rejectsWith(api().createDestination(TCP4, { ...RS4A, weight: 5 }), 'EEXIST');
      assert.deepEqual(await listed(TCP4), [expectedDestination(RS4A)]);
    });

    it('lists no destinations, and no error, for a missing service', async () => {
      assert.deepEqual(await api().listDestinations(MISSING), []);
      assert.deepEqual(await api().listDestinations(FWMARK6), []);
    });

    it('refuses a negative weight and a lower threshold above the upper: ERANGE', async () => {
      await api().createService(rr(TCP4));
      await rejectsWith(api().createDestination(TCP4, { ...RS4A, weight: -1 }), 'ERANGE');
      await rejectsWith(
        api().createDestination(TCP4, { ...RS4A, upperThreshold: 5, lowerThreshold: 6 }),
        'ERANGE',
      );
      await api().createDestination(TCP4, RS4A);
      await rejectsWith(api().updateDestination(TCP4, { ...RS4A, weight: -1 }), 'ERANGE');
      assert.deepEqual(await listed(TCP4), [expectedDestination(RS4A)]);
    });
  });
}
