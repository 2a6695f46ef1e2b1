// Netlink attributes (struct nlattr) driven by one declarative table per attribute set: the table names
// each attribute's type number and codec, and both directions are derived from it. Decoding reads values
// at offsets in the received buffer: no Buffer view per attribute.
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
  /** Decodes the payload at buffer[start, end). */
  decode(buffer: Buffer, start: number, end: number): T;
}

function fixed<T>(
  name: string,
  size: number,
  write: (b: Buffer, v: T) => void,
  read: (b: Buffer, offset: number) => T,
): Codec<T> {
  return {
    name,
    nested: false,
    encode(value) {
      const b = Buffer.alloc(size);
      write(b, value);
      return b;
    },
    decode(buffer, start, end) {
      if (end - start < size) {
        throw new NetlinkProtocolError(`malformed netlink reply: ${name} attribute has ${end - start} bytes`);
      }
      return read(buffer, start);
    },
  };
}

export const u8 = fixed<number>('u8', 1, (b, v) => b.writeUInt8(v), (b, o) => b.readUInt8(o));
export const u16 = fixed<number>('u16', 2, (b, v) => b.writeUInt16LE(v), (b, o) => b.readUInt16LE(o));
export const u32 = fixed<number>('u32', 4, (b, v) => b.writeUInt32LE(v >>> 0), (b, o) => b.readUInt32LE(o));
export const s32 = fixed<number>('s32', 4, (b, v) => b.writeInt32LE(v), (b, o) => b.readInt32LE(o));
/** Counters are mostly below 2^32: one BigInt from a number then, instead of readBigUInt64LE's four BigInt operations. */
function readU64(b: Buffer, o: number): bigint {
  const lo = b.readUInt32LE(o);
  const hi = b.readUInt32LE(o + 4);
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}
export const u64 = fixed<bigint>('u64', 8, (b, v) => b.writeBigUInt64LE(v), readU64);
/** Ports travel in network byte order. */
export const be16 = fixed<number>('be16', 2, (b, v) => b.writeUInt16BE(v), (b, o) => b.readUInt16BE(o));

/** NUL-terminated string. */
export const string: Codec<string> = {
  name: 'string',
  nested: false,
  encode: (value) => Buffer.from(`${value}\0`, 'utf8'),
  decode(buffer, start, end) {
    // Names the kernel sends (schedulers, families) are a few ASCII bytes: built here without a native call.
    let text = '';
    for (let i = start; i < end; i++) {
      const byte = buffer[i]!;
      if (byte === 0) return text;
      if (byte >= 0x80) {
        const nul = buffer.indexOf(0, i);
        return buffer.toString('utf8', start, nul < 0 || nul > end ? end : nul);
      }
      text += String.fromCharCode(byte);
    }
    return text;
  },
};

export const binary: Codec<Buffer> = {
  name: 'binary',
  nested: false,
  encode: (value) => value,
  decode: (buffer, start, end) => Buffer.from(buffer.subarray(start, end)),
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
    decode: (buffer, start, end) => decodeAttributes(set, buffer, start, end),
  };
}

const tableKeys = new WeakMap<AttributeSet, string[]>();

function keysOf(set: AttributeSet): string[] {
  let keys = tableKeys.get(set);
  if (!keys) tableKeys.set(set, (keys = Object.keys(set)));
  return keys;
}

/** Encodes the present values in table order, into one buffer. */
export function encodeAttributes<S extends AttributeSet>(set: S, values: AttributeValues<S>): Buffer {
  const present: [type: number, payload: Buffer][] = [];
  let size = 0;
  for (const key of keysOf(set) as (keyof S & string)[]) {
    const value = values[key];
    if (value === undefined) continue;
    const [type, codec] = set[key]!;
    const payload = codec.encode(value);
    present.push([type | (codec.nested ? NLA_F_NESTED : 0), payload]);
    size += NLA_HDRLEN + align4(payload.length);
  }
  const out = Buffer.alloc(size); // zeroed: the padding
  let offset = 0;
  for (const [type, payload] of present) {
    out.writeUInt16LE(NLA_HDRLEN + payload.length, offset);
    out.writeUInt16LE(type, offset + 2);
    payload.copy(out, offset + NLA_HDRLEN);
    offset += NLA_HDRLEN + align4(payload.length);
  }
  return out;
}

/**
 * The end of the attribute whose header starts at `offset` (header + payload, unpadded), checked against its
 * container's `end`. Callers walk a container with `offset + NLA_HDRLEN <= end`, then `offset = align4(that end)`.
 */
export function attributeEnd(buffer: Buffer, offset: number, end: number): number {
  const len = buffer.readUInt16LE(offset);
  if (len < NLA_HDRLEN || offset + len > end) {
    throw new NetlinkProtocolError(
      `malformed netlink reply: attribute length ${len} at offset ${offset} exceeds its container ending at ${end}`,
    );
  }
  return offset + len;
}

export function attributeType(buffer: Buffer, offset: number): number {
  return buffer.readUInt16LE(offset + 2) & NLA_TYPE_MASK;
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

/** Decodes the attributes the table knows in buffer[start, end); unknown types are skipped, as newer kernels add some. */
export function decodeAttributes<S extends AttributeSet>(
  set: S,
  buffer: Buffer,
  start = 0,
  end = buffer.length,
): AttributeValues<S> {
  const byType = decoderFor(set);
  const values: Record<string, unknown> = {};
  for (let offset = start; offset + NLA_HDRLEN <= end; ) {
    const next = attributeEnd(buffer, offset, end);
    const entry = byType.get(attributeType(buffer, offset));
    if (entry) values[entry[0]] = entry[1].decode(buffer, offset + NLA_HDRLEN, next);
    offset = start + align4(next - start);
  }
  return values as AttributeValues<S>;
}
