import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeAttributes } from '../../src/netlink/attributes.js';
import { NetlinkProtocolError } from '../../src/netlink/errors.js';
import { canonicalAddress, decodeAddress, encodeAddress } from '../../src/ipvs/address.js';
import { encodeDestSpec, encodeServiceKey, encodeServiceSpec } from '../../src/ipvs/codec.js';
import { destReply, destWeightReply, serviceReply } from '../../src/ipvs/decode.js';
import { commandAttributes } from '../../src/ipvs/wire.js';
import type { ServiceKey } from '../../src/ipvs/types.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const tcp80: ServiceKey = { kind: 'address', family: 'ipv4', protocol: 'tcp', address: '10.96.0.1', port: 80 };

describe('IPVS attribute encoding', () => {
  it('encodes a NEW_DEST body byte for byte (ports in network order)', () => {
    const body = encodeAttributes(commandAttributes, {
      service: encodeServiceKey(tcp80),
      dest: encodeDestSpec(tcp80, { family: 'ipv4', address: '10.240.0.2', port: 8080, forwarding: 'masq', weight: 1 }),
    });
    assert.deepEqual(
      body,
      hex(`2400 0180
             0600 0100 0200 0000   0600 0200 0600 0000   0800 0300 0a600001   0600 0400 0050 0000
           3400 0280
             0800 0100 0af00002   0600 0200 1f90 0000   0800 0300 00000000   0800 0400 01000000
             0800 0500 00000000   0800 0600 00000000`),
    );
  });

  it('encodes a fwmark IPv6 service with persistence, flags and a prefix-length netmask', () => {
    const body = encodeAttributes(commandAttributes, {
      service: encodeServiceSpec({
        key: { kind: 'fwmark', family: 'ipv6', fwmark: 258 },
        scheduler: 'sh',
        flags: { persistent: true, sched1: true, hashed: true },
        timeoutSeconds: 300,
      }),
    });
    assert.deepEqual(
      body,
      hex(`3800 0180
             0600 0100 0a00 0000   0800 0500 02010000   0700 0600 736800 00
             0c00 0700 09000000 ffffffff   0800 0800 2c010000   0800 0900 80000000`),
    );
  });

  it('encodes an IPv4 netmask with its bytes in network order', () => {
    const v = encodeServiceSpec({ key: tcp80, scheduler: 'rr', netmask: '255.255.255.0' });
    assert.deepEqual(encodeAttributes(commandAttributes, { service: { netmask: v.netmask } }), hex('0c00 0180 0800 0900 ffffff00'));
  });

  /** A top-level attribute of `type` around `body`, as the reply decoders see the payload after the genl header. */
  const nest = (type: number, body: Buffer) => {
    const header = Buffer.alloc(4);
    header.writeUInt16LE(body.length + 4, 0);
    header.writeUInt16LE(type | 0x8000, 2);
    return Buffer.concat([header, body]);
  };
  const udp53 = hex(`
      0600 0100 0200 0000
      0600 0200 1100 0000
      1400 0300 0a600001 00000000 00000000 00000000
      0600 0400 0035 0000
      0700 0600 727200 00
      0c00 0700 02000000 ffffffff
      0800 0800 00000000
      0800 0900 ffffffff`);

  it('decodes a service as the kernel sends it (16-byte address, STATS64 preferred)', () => {
    const stats = hex(`1800 0a80  0800 0100 09000000  0c00 0400 0500000000000000
                       2000 0c80  0c00 0100 0700000000000000  0400 0b00  0c00 0400 0600000000000000`);
    const svc = serviceReply(nest(1, Buffer.concat([udp53, stats])), 0);
    assert.deepEqual(svc.key, { kind: 'address', family: 'ipv4', protocol: 'udp', address: '10.96.0.1', port: 53 });
    assert.equal(svc.scheduler, 'rr');
    assert.equal(svc.netmask, '255.255.255.255');
    assert.equal(svc.flags.hashed, true);
    assert.equal(svc.flags.persistent, false);
    assert.equal(svc.stats.connections, 7n);
    assert.equal(svc.stats.bytesIn, 6n);
    assert.equal(svc.stats.packetsIn, 0n);
  });

  it('reads the legacy STATS nest (u32 counters, u64 bytes) when there is no STATS64', () => {
    const stats = hex(`1800 0a80  0800 0100 09000000  0c00 0400 0001000001000000`);
    const svc = serviceReply(nest(1, Buffer.concat([udp53, stats])), 0);
    assert.equal(svc.stats.connections, 9n);
    assert.equal(svc.stats.bytesIn, 0x100000100n);
  });

  const dest6 = hex(`
        1400 0100 fd000240 00000000 00000000 00000002
        0600 0200 1f90 0000
        0800 0300 00000000
        0800 0400 00000000
        0800 0700 03000000
        0800 0800 05000000`);

  it('decodes a weight-0 IPv6 destination and the signed weight', () => {
    const d = destReply('ipv6')(nest(2, dest6), 0);
    assert.deepEqual(
      [d.address, d.port, d.forwarding, d.weight, d.activeConnections, d.inactiveConnections],
      ['fd00:240::2', 8080, 'masq', 0, 3, 5],
    );
    const negative = Buffer.from(dest6);
    negative.writeUInt32LE(0xffffffff, 40);
    assert.equal(destReply('ipv6')(nest(2, negative), 0).weight, -1);
    assert.deepEqual(destWeightReply('ipv6')(nest(2, negative), 0), { family: 'ipv6', address: 'fd00:240::2', port: 8080, weight: -1 });
  });

  it('reports a reply without a required attribute instead of guessing', () => {
    const noAddr = hex('0600 0100 0200 0000  0600 0200 0600 0000  0600 0400 0050 0000  0700 0600 727200 00  0800 0900 00000000');
    assert.throws(() => serviceReply(nest(1, noAddr), 0), NetlinkProtocolError);
    const badFamily = hex('0600 0100 6300 0000  0800 0500 01000000  0700 0600 727200 00  0800 0900 00000000');
    assert.throws(() => serviceReply(nest(1, badFamily), 0), /unknown address family 99/);
    assert.throws(() => serviceReply(hex('0800 0300 00000000'), 0), /without IPVS_CMD_ATTR_SERVICE/);
  });

  it('reports an address shorter than its family needs as a protocol error, never a partial address', () => {
    const short4 = Buffer.concat([udp53.subarray(0, 16), hex('0600 0300 0a60 0000'), udp53.subarray(36)]); // "10.96"
    assert.throws(() => serviceReply(nest(1, short4), 0), (err: unknown) => {
      assert.ok(err instanceof NetlinkProtocolError, String(err));
      assert.match(err.message, /2-byte address for ipv4/);
      return true;
    });
    const short6 = Buffer.concat([hex('0c00 0100 fd000240 00000000'), dest6.subarray(20)]); // 8 of 16 bytes
    for (const decode of [destReply('ipv6'), destWeightReply('ipv6')]) {
      assert.throws(() => decode(nest(2, short6), 0), /8-byte address for ipv6/);
    }
  });

  it('reports a fixed-size attribute shorter than its type', () => {
    const shortPort = Buffer.from(dest6);
    shortPort.writeUInt16LE(5, 20); // PORT with one byte
    assert.throws(() => destReply('ipv6')(nest(2, shortPort), 0), /be16 attribute has 1 bytes/);
  });
});

describe('addresses', () => {
  it('round-trips IPv4 and IPv6 and prints RFC 5952 text', () => {
    assert.deepEqual(encodeAddress('10.240.0.2'), hex('0af00002'));
    assert.equal(decodeAddress('ipv6', encodeAddress('2001:DB8:0:0:1:0:0:1')), '2001:db8::1:0:0:1');
    assert.equal(decodeAddress('ipv6', encodeAddress('fd00:0:0:0:0:0:0:1')), 'fd00::1');
    assert.equal(decodeAddress('ipv6', Buffer.alloc(16)), '::');
    assert.equal(canonicalAddress('FD00:0240::0002'), 'fd00:240::2');
    assert.throws(() => encodeAddress('10.0.0.300'), /not an IP address/);
  });
});
