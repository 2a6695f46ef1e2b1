// Generic netlink: the genlmsghdr and the controller lookup that maps a family name to its message type.
import { decodeAttributes, encodeAttributes, string, u16, u32, type AttributeSet, type AttributeValues } from './attributes.js';
import { NetlinkProtocolError } from './errors.js';
import type { NetlinkMessage } from './message.js';
import type { NetlinkSocket, RequestKind } from './socket.js';

export const NETLINK_GENERIC = 16;
export const GENL_HDRLEN = 4;
export const GENL_ID_CTRL = 0x10;
export const CTRL_CMD_GETFAMILY = 3;

export const ctrlAttributes = {
  familyId: [1, u16], // CTRL_ATTR_FAMILY_ID
  familyName: [2, string], // CTRL_ATTR_FAMILY_NAME
  version: [3, u32], // CTRL_ATTR_VERSION
  headerSize: [4, u32], // CTRL_ATTR_HDRSIZE
  maxAttr: [5, u32], // CTRL_ATTR_MAXATTR
} as const satisfies AttributeSet;

export function encodeGenl(cmd: number, version: number, attributes: Buffer): Buffer {
  const header = Buffer.alloc(GENL_HDRLEN);
  header.writeUInt8(cmd, 0);
  header.writeUInt8(version, 1);
  return Buffer.concat([header, attributes]);
}

/** Where a generic netlink message's attributes start in its payload; throws when it has no genlmsghdr. */
export function genlAttributesStart(msg: NetlinkMessage): number {
  if (msg.payload.length < GENL_HDRLEN) {
    throw new NetlinkProtocolError('malformed netlink reply: generic netlink message shorter than its header');
  }
  return GENL_HDRLEN;
}

/** Decodes one reply message's top-level attributes (the payload after the genlmsghdr). */
export type ReplyDecoder<T> = (payload: Buffer, start: number) => T;

/** A ReplyDecoder that reads the top level with an attribute table. */
export function tableDecoder<S extends AttributeSet>(set: S): ReplyDecoder<AttributeValues<S>> {
  return (payload, start) => decodeAttributes(set, payload, start, payload.length);
}

/** One generic netlink family on one socket: typed requests in, decoded replies out. */
export class GenericNetlinkFamily<S extends AttributeSet> {
  constructor(
    private readonly socket: NetlinkSocket,
    readonly id: number,
    private readonly version: number,
    private readonly attributes: S,
    private readonly familyName: string,
    private readonly commandNames: Record<number, string>,
  ) {}

  /** Each reply is decoded as it arrives, while the rest of a dump is still in the kernel. */
  async request<T>(kind: RequestKind, cmd: number, values: AttributeValues<S>, decode: ReplyDecoder<T>): Promise<T[]> {
    const replies: T[] = [];
    await this.socket.request(
      {
        type: this.id,
        kind,
        payload: encodeGenl(cmd, this.version, encodeAttributes(this.attributes, values)),
        operation: `${this.familyName} ${this.commandNames[cmd] ?? cmd}`,
      },
      (msg) => replies.push(decode(msg.payload, genlAttributesStart(msg))),
    );
    return replies;
  }
}

/** Rejects with ENOENT when the kernel has no such family. */
export async function resolveFamily(socket: NetlinkSocket, name: string): Promise<{ id: number; version: number }> {
  const ctrl = new GenericNetlinkFamily(socket, GENL_ID_CTRL, 1, ctrlAttributes, 'nlctrl', {
    [CTRL_CMD_GETFAMILY]: 'GETFAMILY',
  });
  const [reply] = await ctrl.request('do', CTRL_CMD_GETFAMILY, { familyName: name }, tableDecoder(ctrlAttributes));
  if (reply?.familyId === undefined) {
    throw new NetlinkProtocolError(`malformed netlink reply: no family id for generic netlink family ${name}`);
  }
  return { id: reply.familyId, version: reply.version ?? 1 };
}
