// Netlink attributes (struct nlattr) driven by one declarative table per attribute set: the table names
// each attribute's type number and codec, and both directions are derived from it.
import { NetlinkProtocolError } from './errors.js';
import { align4 } from './message.js';

export const NLA_HDRLEN = 4;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = 0x3fff;

export interface Codec<T> {
  readonly name: string;
  readonly nested: boolean;
  encode(value: T): Buffer;
  decode(payload: Buffer): T;
}

function fixed<T>(name: string, size: number, write: (b: Buffer, v: T) => void, read: (b: Buffer) => T): Codec<T> {
  return {
    name,
    nested: false,
    encode(value) {
      const b = Buffer.alloc(size);
      write(b, value);
      return b;
    },
    decode(payload) {
      if (payload.length < size) {
        throw new NetlinkProtocolError(`malformed netlink reply: ${name} attribute has ${payload.length} bytes`);
      }
      return read(payload);
    },
  };
}

export const u8 = fixed<number>('u8', 1, (b, v) => b.writeUInt8(v), (b) => b.readUInt8(0));
export const u16 = fixed<number>('u16', 2, (b, v) => b.writeUInt16LE(v), (b) => b.readUInt16LE(0));
export const u32 = fixed<number>('u32', 4, (b, v) => b.writeUInt32LE(v >>> 0), (b) => b.readUInt32LE(0));
export const s32 = fixed<number>('s32', 4, (b, v) => b.writeInt32LE(v), (b) => b.readInt32LE(0));
export const u64 = fixed<bigint>('u64', 8, (b, v) => b.writeBigUInt64LE(v), (b) => b.readBigUInt64LE(0));
/** Ports travel in network byte order. */
export const be16 = fixed<number>('be16', 2, (b, v) => b.writeUInt16BE(v), (b) => b.readUInt16BE(0));

/** NUL-terminated string. */
export const string: Codec<string> = {
  name: 'string',
  nested: false,
  encode: (value) => Buffer.from(`${value}\0`, 'utf8'),
  decode(payload) {
    const nul = payload.indexOf(0);
    return payload.subarray(0, nul < 0 ? payload.length : nul).toString('utf8');
  },
};

export const binary: Codec<Buffer> = {
  name: 'binary',
  nested: false,
  encode: (value) => value,
  decode: (payload) => Buffer.from(payload),
};

/** A table entry: the attribute's type number and its codec. */
export type AttributeSpec<T> = readonly [type: number, codec: Codec<T>];
export type AttributeSet = Record<string, AttributeSpec<any>>;
export type AttributeValues<S extends AttributeSet> = {
  [K in keyof S]?: S[K] extends AttributeSpec<infer T> ? T : never;
};

export function nested<S extends AttributeSet>(set: S): Codec<AttributeValues<S>> {
  return {
    name: 'nested',
    nested: true,
    encode: (value) => encodeAttributes(set, value),
    decode: (payload) => decodeAttributes(set, payload),
  };
}

/** Encodes the present values in table order. */
export function encodeAttributes<S extends AttributeSet>(set: S, values: AttributeValues<S>): Buffer {
  const parts: Buffer[] = [];
  for (const key of Object.keys(set) as (keyof S & string)[]) {
    const value = values[key];
    if (value === undefined) continue;
    const [type, codec] = set[key]!;
    const payload = codec.encode(value);
    const header = Buffer.alloc(NLA_HDRLEN);
    header.writeUInt16LE(NLA_HDRLEN + payload.length, 0);
    header.writeUInt16LE(type | (codec.nested ? NLA_F_NESTED : 0), 2);
    parts.push(header, payload, Buffer.alloc(align4(payload.length) - payload.length));
  }
  return Buffer.concat(parts);
}

const decoders = new WeakMap<AttributeSet, Map<number, [string, Codec<unknown>]>>();

function decoderFor(set: AttributeSet): Map<number, [string, Codec<unknown>]> {
  let byType = decoders.get(set);
  if (!byType) {
    byType = new Map(Object.entries(set).map(([key, [type, codec]]) => [type, [key, codec]]));
    decoders.set(set, byType);
  }
  return byType;
}

/** Decodes the attributes the table knows; unknown types are skipped, as newer kernels may add some. */
export function decodeAttributes<S extends AttributeSet>(set: S, buffer: Buffer): AttributeValues<S> {
  const byType = decoderFor(set);
  const values: Record<string, unknown> = {};
  let offset = 0;
  while (offset + NLA_HDRLEN <= buffer.length) {
    const len = buffer.readUInt16LE(offset);
    if (len < NLA_HDRLEN || offset + len > buffer.length) {
      throw new NetlinkProtocolError(
        `malformed netlink reply: attribute length ${len} at offset ${offset} exceeds its ${buffer.length}-byte container`,
      );
    }
    const entry = byType.get(buffer.readUInt16LE(offset + 2) & NLA_TYPE_MASK);
    if (entry) values[entry[0]] = entry[1].decode(buffer.subarray(offset + NLA_HDRLEN, offset + len));
    offset += align4(len);
  }
  return values as AttributeValues<S>;
}
