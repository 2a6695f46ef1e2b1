// Seeded mutations of recorded datagrams: every iteration is a pure function of (seed, iteration), so a failure
// found in a million runs is replayed alone. Mutations aim at what decoders trust: message and attribute lengths,
// attribute types, fixed-size payloads, and the datagram's end.
import { NLA_F_NESTED, NLA_HDRLEN } from '../../src/netlink/attributes.js';
import { GENL_HDRLEN } from '../../src/netlink/genl.js';
import { align4, NLMSG_HDRLEN } from '../../src/netlink/message.js';

/** mulberry32: small, fast, and the same on every machine. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Where the length fields sit in a well-formed datagram: u32 message lengths and u16 attribute lengths. */
export interface Layout {
  messages: number[];
  attributes: number[];
}

function walkAttributes(d: Buffer, start: number, end: number, into: number[]): void {
  for (let offset = start; offset + NLA_HDRLEN <= end; ) {
    const len = d.readUInt16LE(offset);
    if (len < NLA_HDRLEN || offset + len > end) return;
    into.push(offset);
    if (d.readUInt16LE(offset + 2) & NLA_F_NESTED) walkAttributes(d, offset + NLA_HDRLEN, offset + len, into);
    offset += align4(len);
  }
}

export function layoutOf(d: Buffer): Layout {
  const layout: Layout = { messages: [], attributes: [] };
  for (let offset = 0; offset + NLMSG_HDRLEN <= d.length; ) {
    const len = d.readUInt32LE(offset);
    if (len < NLMSG_HDRLEN || offset + len > d.length) break;
    layout.messages.push(offset);
    // Error and done messages carry no genl header; walking them as attributes finds nothing harmful.
    walkAttributes(d, offset + NLMSG_HDRLEN + GENL_HDRLEN, offset + len, layout.attributes);
    offset += align4(len);
  }
  return layout;
}

const interesting = [0, 1, 2, 3, 4, 5, 7, 8, 12, 15, 16, 17, 20, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xfffe, 0xffff];

export function mutate(original: Buffer, layout: Layout, random: () => number): Buffer {
  const pick = <T>(xs: readonly T[]): T | undefined => xs[Math.floor(random() * xs.length)];
  const below = (n: number) => Math.floor(random() * n);
  let d = Buffer.from(original);
  const rounds = 1 + below(3);
  for (let r = 0; r < rounds; r++) {
    switch (below(8)) {
      case 0: // cut the datagram short anywhere
        d = d.subarray(0, below(d.length + 1));
        break;
      case 1: // flip a few bits
        for (let k = 1 + below(4); k > 0 && d.length > 0; k--) d[below(d.length)]! ^= 1 << below(8);
        break;
      case 2: {
        const at = below(d.length);
        if (at < d.length) d[at] = pick(interesting)! & 0xff;
        break;
      }
      case 3: { // a message length
        const at = pick(layout.messages);
        if (at !== undefined && at + 4 <= d.length) d.writeUInt32LE((d.readUInt32LE(at) + below(17) - 8) >>> 0, at);
        break;
      }
      case 4: { // an attribute length: an interesting value, or a few bytes shorter (short addresses, short numbers)
        const at = pick(layout.attributes);
        if (at === undefined || at + 2 > d.length) break;
        const len = d.readUInt16LE(at);
        d.writeUInt16LE(random() < 0.5 ? pick(interesting)! : Math.max(0, len - 1 - below(8)), at);
        break;
      }
      case 5: { // an attribute type, sometimes with the nested flag
        const at = pick(layout.attributes);
        if (at !== undefined && at + 4 <= d.length) d.writeUInt16LE(below(16) | (random() < 0.3 ? NLA_F_NESTED : 0), at + 2);
        break;
      }
      case 6: { // drop four aligned bytes
        const at = below(d.length >> 2) << 2;
        d = Buffer.concat([d.subarray(0, at), d.subarray(at + 4)]);
        break;
      }
      default: { // repeat four aligned bytes
        const at = below(d.length >> 2) << 2;
        d = Buffer.concat([d.subarray(0, at + 4), d.subarray(at)]);
      }
    }
  }
  return d;
}
