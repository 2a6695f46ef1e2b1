// --nodeport-addresses as kube-proxy v1.37 reads it: the parsing table, keyword expansion, and which node addresses
// each selection takes (cases follow kube-proxy's own nodeport_addresses_test.go and server_test.go).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  carriesNodePorts,
  followsNodeAddresses,
  InvalidNodePortAddresses,
  nodePortAddresses,
  parseNodePortAddresses,
  primaryIPs,
  resolveNodePortAddresses,
  type LocalAddress,
  type PrimaryIPs,
} from '../../src/k8s/nodeport-addresses.js';
import { parseRunOptions, UsageError } from '../../src/cli/options.js';

describe('parseNodePortAddresses', () => {
  const accepted: Array<[string[], string]> = [
    [[], 'kube-proxy'],
    [['10.0.0.0/8'], 'kube-proxy'],
    [['10.1.2.3/8'], 'kube-proxy'], // host bits set: Go's ParseCIDR takes it as 10.0.0.0/8
    [['010.000.0.0/8'], 'kube-proxy'], // ParseCIDRSloppy: leading zeros are decimal
    [['0.0.0.0/0', '::/0'], 'kube-proxy'],
    [['2001:db8::/32', '192.168.0.0/16'], 'kube-proxy'],
    [['primary'], 'kube-proxy'],
    [['primary', 'localhost', 'all', '10.0.0.0/8'], 'kube-proxy'],
    [['::1/128'], 'kube-proxy'],
    [['192.0.2.10', '2001:db8::10'], 'exact'],
  ];
  for (const [entries, kind] of accepted) {
    it(`accepts ${JSON.stringify(entries)} (${kind})`, () => {
      assert.equal(parseNodePortAddresses(entries).kind, kind);
    });
  }

  const rejected: Array<[string[], RegExp]> = [
    [['fe80::1%eth0'], /"fe80::1%eth0" is not a CIDR.*zoned/],
    [['fe80::/64%eth0'], /zoned/],
    [['eth0'], /"eth0" is not a CIDR nor one of the keywords primary, localhost, all/],
    [['10.0.0.0/33'], /"10.0.0.0\/33"/],
    [['2001:db8::/129'], /"2001:db8::\/129"/],
    [['10.0.0.0/'], /"10.0.0.0\/"/],
    [['10.0.0/8'], /"10.0.0\/8"/],
    [['Primary'], /"Primary"/], // keywords are case-sensitive, as in kube-proxy
    [['primary', 'primary'], /keyword "primary" given twice/],
    [['192.0.2.10', '10.0.0.0/8'], /bare IPs cannot be mixed.*192.0.2.10\/32/],
    [['primary', '2001:db8::10'], /write 2001:db8::10\/128/],
  ];
  for (const [entries, message] of rejected) {
    it(`rejects ${JSON.stringify(entries)}`, () => {
      assert.throws(() => parseNodePortAddresses(entries), (err: Error) => {
        assert.ok(err instanceof InvalidNodePortAddresses);
        assert.match(err.message, message);
        return true;
      });
    });
  }

  it('--nodeport-addresses: an invalid entry is a UsageError at start naming the flag and the value', () => {
    assert.throws(
      () => parseRunOptions(['--nodeport-addresses', '10.0.0.0/8,fe80::1%eth0'], {}),
      (err: Error) => err instanceof UsageError && /--nodeport-addresses.*fe80::1%eth0/.test(err.message),
    );
    assert.deepEqual(parseRunOptions(['--nodeport-addresses', ' 10.0.0.0/8 , primary '], {}).nodePortAddresses, [
      '10.0.0.0/8',
      'primary',
    ]);
    assert.deepEqual(parseRunOptions([], { NODE_IPS: '10.0.0.4,fd00::4' }).nodeIPs, ['10.0.0.4', 'fd00::4']);
    assert.throws(() => parseRunOptions(['--node-ips', '10.0.0.4/24'], {}), UsageError);
    assert.throws(
      () => parseRunOptions(['--nodeport-addresses', 'primary', '--kube-proxy-config', '/etc/kp.conf'], {}),
      /both given/,
    );
  });
});

describe('primaryIPs (kube-proxy detectNodeIPs)', () => {
  it('takes the first host IP of each family; a specified bindAddress overrides its family', () => {
    assert.deepEqual(primaryIPs(['10.0.0.4', 'fd00::4']), { ipv4: '10.0.0.4', ipv6: 'fd00::4' });
    assert.deepEqual(primaryIPs(['fd00::4', '10.0.0.4']), { ipv4: '10.0.0.4', ipv6: 'fd00::4' });
    assert.deepEqual(primaryIPs(['10.0.0.4'], '10.0.0.9'), { ipv4: '10.0.0.9' });
    assert.deepEqual(primaryIPs(['10.0.0.4'], '0.0.0.0'), { ipv4: '10.0.0.4' });
    assert.deepEqual(primaryIPs(['10.0.0.4'], '::'), { ipv4: '10.0.0.4' });
    assert.deepEqual(primaryIPs([], 'fd00::9'), { ipv6: 'fd00::9' });
  });
});

describe('node addresses a selection takes', () => {
  const node: LocalAddress[] = [
    { address: '127.0.0.1', onIpvsDummy: false },
    { address: '::1', onIpvsDummy: false },
    { address: '10.0.0.4', onIpvsDummy: false },
    { address: '10.1.0.4', onIpvsDummy: false },
    { address: '192.168.7.1', onIpvsDummy: false },
    { address: 'fe80::1', onIpvsDummy: false },
    { address: 'fd00::4', onIpvsDummy: false },
    { address: '2001:db8::4', onIpvsDummy: false },
    // kube-ipvs0: Service IPs, and one that is also on eth0 (an external IP that is a node address)
    { address: '10.96.0.10', onIpvsDummy: true },
    { address: '10.0.0.4', onIpvsDummy: true },
    { address: 'fd00:96::10', onIpvsDummy: true },
  ];
  const primary = { ipv4: '10.0.0.4', ipv6: 'fd00::4' };
  const take = (entries: string[], p: PrimaryIPs = primary) =>
    nodePortAddresses(resolveNodePortAddresses(parseNodePortAddresses(entries), p), node).sort();

  const table: Array<[string[], string[]]> = [
    // unset: every address off kube-ipvs0, loopback and IPv6 link-local excepted (MatchAll + isValidForSet)
    [[], ['10.0.0.4', '10.1.0.4', '192.168.7.1', '2001:db8::4', 'fd00::4']],
    [['all'], ['10.0.0.4', '10.1.0.4', '192.168.7.1', '2001:db8::4', 'fd00::4']],
    // an IPv4 CIDR only: IPv6 has none, so all of IPv6 (NewNodePortAddresses adds ::/0)
    [['10.0.0.0/16'], ['10.0.0.4', '2001:db8::4', 'fd00::4']],
    // CIDR mode matches on any interface, kube-ipvs0 included (GetNodeIPs lists every address)
    [['10.96.0.0/16', 'fd00:96::/64'], ['10.96.0.10', 'fd00:96::10']],
    [['0.0.0.0/0', 'fd00::/64'], ['10.0.0.4', '10.1.0.4', '192.168.7.1', 'fd00::4']],
    [['primary'], ['10.0.0.4', 'fd00::4']],
    [['primary', '192.168.0.0/16'], ['10.0.0.4', '192.168.7.1', 'fd00::4']],
    // loopback is dropped even when asked for (syncProxyRules skips it after GetNodeIPs)
    [['localhost'], []],
    [['127.0.0.0/8', '::1/128'], []],
    // link-local survives in CIDR mode: only the every-address path filters it
    [['fe80::/10', '10.1.0.0/16'], ['10.1.0.4', 'fe80::1']],
    [['192.0.2.10', 'fd00::99'], ['192.0.2.10', 'fd00::99']],
  ];
  for (const [entries, want] of table) {
    it(`${JSON.stringify(entries)} takes ${JSON.stringify(want)}`, () => {
      assert.deepEqual(take(entries), want);
    });
  }

  it('primary with one family known: the other family has no CIDR, so all of it (as kube-proxy)', () => {
    assert.deepEqual(take(['primary'], { ipv4: '10.1.0.4' }), ['10.1.0.4', '2001:db8::4', 'fd00::4']);
    // A loopback primary (kube-proxy could not find the node's IP) adds nothing.
    assert.deepEqual(take(['primary', '10.0.0.0/16'], { ipv4: '127.0.0.1', ipv6: 'fd00::4' }), ['10.0.0.4', 'fd00::4']);
  });

  it('primary without any node IP is refused at start, naming --node-ips', () => {
    assert.throws(() => resolveNodePortAddresses(parseNodePortAddresses(['primary']), {}), /--node-ips/);
  });

  it('says which address changes matter', () => {
    const all = resolveNodePortAddresses(parseNodePortAddresses([]), primary);
    assert.equal(carriesNodePorts(all, { address: '10.5.5.5', onIpvsDummy: false }), true);
    assert.equal(carriesNodePorts(all, { address: '10.96.0.77', onIpvsDummy: true }), false);
    assert.equal(carriesNodePorts(all, { address: '127.0.0.2', onIpvsDummy: false }), false);
    assert.equal(followsNodeAddresses(all), true);
    const exact = resolveNodePortAddresses(parseNodePortAddresses(['192.0.2.10']), primary);
    assert.equal(carriesNodePorts(exact, { address: '192.0.2.10', onIpvsDummy: false }), false);
    assert.equal(followsNodeAddresses(exact), false);
  });
});
