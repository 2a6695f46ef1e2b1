import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalAddress } from '../../src/ipvs/address.js';
import { destinationKeyString, serviceKeyString } from '../../src/reconcile/keys.js';

describe('keys', () => {
  it('spells every IPv6 form of one address the same way', () => {
    assert.equal(canonicalAddress('fd00:0::1'), 'fd00::1');
    assert.equal(canonicalAddress('FD00:0:0:0:0:0:0:1'), 'fd00::1');
    assert.equal(canonicalAddress('fd00::1'), 'fd00::1');
    assert.equal(canonicalAddress('10.240.0.1'), '10.240.0.1');
  });

  it('refuses what is not an IPVS address', () => {
    for (const bad of ['', 'web-0', '10.240.0.256', 'fe80::1%eth0']) {
      assert.throws(() => canonicalAddress(bad), TypeError, bad);
    }
  });

  it('names services and destinations stably', () => {
    assert.equal(
      serviceKeyString({ kind: 'address', family: 'ipv6', protocol: 'udp', address: 'fd00:96:0::a', port: 53 }),
      'ipv6/udp/[fd00:96::a]:53',
    );
    assert.equal(
      serviceKeyString({ kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.0.1', port: 443 }),
      'ipv4/tcp/10.96.0.1:443',
    );
    assert.equal(serviceKeyString({ kind: 'fwmark', family: 'ipv4', fwmark: 7 }), 'ipv4/fwmark/7');
    assert.equal(
      destinationKeyString({ family: 'ipv6', address: 'FD00:240::0:5', port: 8080 }),
      'ipv6/[fd00:240::5]:8080',
    );
  });
});
