import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DestinationSpec, ServiceKey } from '../../src/ipvs/types.js';
import { NetlinkError } from '../../src/netlink/errors.js';
import { FakeIpvs } from '../support/fake-ipvs.js';
import { ipvsContract } from '../support/ipvs-contract.js';

ipvsContract('FakeIpvs', async () => {
  const api = new FakeIpvs();
  return { api, reset: async () => api.reset() };
});

const VS: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.0.10', port: 80 };
const RS: DestinationSpec = { family: 'ipv4', address: '10.240.0.11', port: 8080, forwarding: 'masq', weight: 0 };

async function withOneDestination(): Promise<FakeIpvs> {
  const fake = new FakeIpvs();
  await fake.createService({ key: VS, scheduler: 'rr' });
  await fake.createDestination(VS, RS);
  return fake;
}

function errnoOf(err: unknown): string {
  assert.ok(err instanceof NetlinkError);
  return err.errno;
}

describe('FakeIpvs test hooks', () => {
  it('setConnections shows up in the next dump, and refuses a missing destination', async () => {
    const fake = await withOneDestination();
    fake.setConnections(VS, RS, { active: 2, inactive: 40 });
    const [dest] = await fake.listDestinations(VS);
    assert.equal(dest?.activeConnections, 2);
    assert.equal(dest?.inactiveConnections, 40);
    assert.throws(() => fake.setConnections(VS, { ...RS, port: 1 }, { active: 0, inactive: 0 }));
  });

  it('logs every call with its outcome and counts them', async () => {
    const fake = await withOneDestination();
    await fake.deleteDestination(VS, RS);
    await fake.deleteDestination(VS, RS).catch(() => undefined);
    assert.deepEqual(
      fake.operations.filter((r) => r.operation === 'deleteDestination'),
      [
        { operation: 'deleteDestination', service: VS, destination: RS, outcome: { kind: 'ok' } },
        { operation: 'deleteDestination', service: VS, destination: RS, outcome: { kind: 'error', errno: 'ENOENT' } },
      ],
    );
    assert.equal(fake.count('deleteDestination'), 2);
    assert.equal(fake.count('deleteDestination', 'ok'), 1);
    assert.equal(fake.count('createService'), 1);
  });

  it('failNext rejects one call without touching the table', async () => {
    const fake = await withOneDestination();
    fake.failNext('deleteDestination', 'EPERM');
    assert.equal(await fake.deleteDestination(VS, RS).catch(errnoOf), 'EPERM');
    assert.equal((await fake.listDestinations(VS)).length, 1);
    await fake.deleteDestination(VS, RS);
    assert.deepEqual(await fake.listDestinations(VS), []);
    assert.throws(() => fake.failNext('info', 'ENOTANERRNO'));
  });

  it('beforeNext changes the table between a read and a write', async () => {
    const fake = await withOneDestination();
    fake.beforeNext('deleteDestination', () => fake.deleteDestination(VS, RS));
    assert.equal(await fake.deleteDestination(VS, RS).catch(errnoOf), 'ENOENT');
  });

  it('reset empties table, log and pending failures', async () => {
    const fake = await withOneDestination();
    fake.failNext('listServices', 'EIO');
    fake.reset();
    assert.deepEqual(await fake.listServices(), []);
    assert.equal(fake.operations.length, 1);
  });
});

describe('FakeIpvs checks the kernel makes before the contract can reach them', () => {
  it('refuses a destination of the other family unless it is tunnelled: EINVAL', async () => {
    const fake = new FakeIpvs();
    await fake.createService({ key: VS, scheduler: 'rr' });
    const v6 = { family: 'ipv6', address: 'fd00:240::11', port: 8080, weight: 1 } as const;
    assert.equal(await fake.createDestination(VS, { ...v6, forwarding: 'masq' }).catch(errnoOf), 'EINVAL');
    await fake.createDestination(VS, { ...v6, forwarding: 'tunnel' });
  });

  it('refuses an IPv6 prefix length outside 1..128: EINVAL', async () => {
    const fake = new FakeIpvs();
    const key: ServiceKey = { kind: 'fwmark', family: 'ipv6', fwmark: 1 };
    assert.equal(await fake.createService({ key, scheduler: 'rr', netmask: '129' }).catch(errnoOf), 'EINVAL');
    await fake.createService({ key, scheduler: 'rr', netmask: '64' });
    assert.equal((await fake.getService(key)).netmask, '64');
  });

  it('keeps flags a SET does not mention', async () => {
    const fake = new FakeIpvs();
    await fake.createService({ key: VS, scheduler: 'rr', flags: { persistent: true, onePacket: true } });
    await fake.updateService({ key: VS, scheduler: 'rr', flags: { onePacket: false } });
    const { flags } = await fake.getService(VS);
    assert.equal(flags.persistent, true);
    assert.equal(flags.onePacket, false);
  });
});
