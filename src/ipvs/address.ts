// Addresses as text for callers, as 16-byte nf_inet_addr unions on the wire.
import { isIPv4, isIPv6 } from 'node:net';
import { NetlinkProtocolError } from '../netlink/errors.js';
import type { AddressFamily } from './types.js';

export function familyOf(address: string): AddressFamily {
  if (isIPv4(address)) return 'ipv4';
  if (isIPv6(address)) return 'ipv6';
  throw new TypeError(`not an IP address: ${address}`);
}

function ipv6Groups(address: string): number[] {
  // An embedded IPv4 tail ("::ffff:10.0.0.1") is the last two groups in dotted form.
  const text = address.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a, b, c, d) =>
    `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`,
  );
  const [head, tail] = text.split('::');
  const parse = (s: string | undefined) => (s ? s.split(':').map((g) => parseInt(g, 16)) : []);
  const left = parse(head);
  const right = parse(tail);
  const zeros = tail === undefined ? 0 : 8 - left.length - right.length;
  return [...left, ...new Array<number>(zeros).fill(0), ...right];
}

/** The address as the kernel wants it: 4 bytes for IPv4, 16 for IPv6. */
export function encodeAddress(address: string): Buffer {
  const family = familyOf(address);
  if (family === 'ipv4') {
    const b = Buffer.alloc(4);
    let i = 0;
    for (const part of address.split('.')) b[i++] = +part;
    return b;
  }
  const b = Buffer.alloc(16);
  ipv6Groups(address).forEach((g, i) => b.writeUInt16BE(g, i * 2));
  return b;
}

const addressBytes: Record<AddressFamily, number> = { ipv4: 4, ipv6: 16 };

/**
 * RFC 5952 text of the address at buffer[start, start + length): the kernel sends 16 bytes, an IPv4 address in the
 * first 4. Fewer bytes than the family needs is a malformed reply, never a partial address.
 */
export function decodeAddress(family: AddressFamily, buffer: Buffer, start = 0, length = buffer.length - start): string {
  if (length < addressBytes[family]) {
    throw new NetlinkProtocolError(`malformed netlink reply: ${length}-byte address for ${family}`);
  }
  if (family === 'ipv4') return `${buffer[start]}.${buffer[start + 1]}.${buffer[start + 2]}.${buffer[start + 3]}`;
  const groups = Array.from({ length: 8 }, (_, i) => buffer.readUInt16BE(start + i * 2));
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/**
 * One text per address, so "fd00:0::1" and "FD00::1" compare equal: IPv4 unchanged (isIP already refuses
 * leading zeros), IPv6 in the WHATWG URL serialisation (lower case, RFC 5952 compression).
 * Throws a TypeError for anything else: no decision is better than one made on an address we cannot read.
 */
export function canonicalAddress(address: string): string {
  if (familyOf(address) === 'ipv4') return address;
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    // Zone ids ("fe80::1%eth0") pass isIP but are no IPVS address.
    throw new TypeError(`not an IPVS address: ${address}`);
  }
}
