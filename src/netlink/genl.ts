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

export function parseGenl(msg: NetlinkMessage): { cmd: number; attributes: Buffer } {
  if (msg.payload.length < GENL_HDRLEN) {
    throw new NetlinkProtocolError('malformed netlink reply: generic netlink message shorter than its header');
  }
  return { cmd: msg.payload.readUInt8(0), attributes: msg.payload.subarray(GENL_HDRLEN) };
}

/** One generic netlink family on one socket: typed requests in, decoded top-level attributes out. */
export class GenericNetlinkFamily<S extends AttributeSet> {
  constructor(
    private readonly socket: NetlinkSocket,
    readonly id: number,
    private readonly version: number,
    private readonly attributes: S,
    private readonly familyName: string,
    private readonly commandNames: Record<number, string>,
  ) {}

  /** `replySet` decodes replies whose top level is not the family's usual table. */
  async request<R extends AttributeSet = S>(
    kind: RequestKind,
    cmd: number,
    values: AttributeValues<S>,
    replySet?: R,
  ): Promise<AttributeValues<R>[]> {
    const replies: AttributeValues<R>[] = [];
    const decodeSet = (replySet ?? this.attributes) as R;
    await this.socket.request(
      {
        type: this.id,
        kind,
        payload: encodeGenl(cmd, this.version, encodeAttributes(this.attributes, values)),
        operation: `${this.familyName} ${this.commandNames[cmd] ?? cmd}`,
      },
      (msg) => replies.push(decodeAttributes(decodeSet, parseGenl(msg).attributes)),
    );
    return replies;
  }
}

/** Rejects with ENOENT when the kernel has no such family. */
export async function resolveFamily(socket: NetlinkSocket, name: string): Promise<{ id: number; version: number }> {
  const ctrl = new GenericNetlinkFamily(socket, GENL_ID_CTRL, 1, ctrlAttributes, 'nlctrl', {
    [CTRL_CMD_GETFAMILY]: 'GETFAMILY',
  });
  const [reply] = await ctrl.request('do', CTRL_CMD_GETFAMILY, { familyName: name });
  if (reply?.familyId === undefined) {
    throw new NetlinkProtocolError(`malformed netlink reply: no family id for generic netlink family ${name}`);
  }
  return { id: reply.familyId, version: reply.version ?? 1 };
}
