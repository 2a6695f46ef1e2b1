// nlmsghdr framing (include/uapi/linux/netlink.h). All header fields are host byte order (little-endian here).
import { NetlinkProtocolError } from './errors.js';

export const NLMSG_HDRLEN = 16;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
/** The kernel treats a request as a dump only when both bits are set. */
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
/** Set on an ACK whose echoed request was cut to its header (NETLINK_CAP_ACK). */
export const NLM_F_CAPPED = 0x100;
/** Set on an ACK when the kernel appended extended-ack TLVs. */
export const NLM_F_ACK_TLVS = 0x200;

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

/** nlmsgerr extended-ack TLVs. */
export const NLMSGERR_ATTR_MSG = 1;

export interface NetlinkMessage {
  type: number;
  flags: number;
  seq: number;
  portId: number;
  /** A view into the receive buffer: decode before the next receive. */
  payload: Buffer;
}

export function align4(n: number): number {
  return (n + 3) & ~3;
}

export function encodeMessage(type: number, flags: number, seq: number, portId: number, payload: Buffer): Buffer {
  const msg = Buffer.alloc(NLMSG_HDRLEN + align4(payload.length));
  msg.writeUInt32LE(NLMSG_HDRLEN + payload.length, 0);
  msg.writeUInt16LE(type, 4);
  msg.writeUInt16LE(flags, 6);
  msg.writeUInt32LE(seq, 8);
  msg.writeUInt32LE(portId, 12);
  payload.copy(msg, NLMSG_HDRLEN);
  return msg;
}

/** Splits one datagram into its messages; a length that does not fit the datagram is a protocol error. */
export function parseMessages(datagram: Buffer): NetlinkMessage[] {
  const messages: NetlinkMessage[] = [];
  let offset = 0;
  while (offset + NLMSG_HDRLEN <= datagram.length) {
    const length = datagram.readUInt32LE(offset);
    if (length < NLMSG_HDRLEN || offset + length > datagram.length) {
      throw new NetlinkProtocolError(
        `malformed netlink reply: message length ${length} at offset ${offset} exceeds the ${datagram.length}-byte datagram`,
      );
    }
    messages.push({
      type: datagram.readUInt16LE(offset + 4),
      flags: datagram.readUInt16LE(offset + 6),
      seq: datagram.readUInt32LE(offset + 8),
      portId: datagram.readUInt32LE(offset + 12),
      payload: datagram.subarray(offset + NLMSG_HDRLEN, offset + length),
    });
    offset += align4(length);
  }
  if (offset < datagram.length && datagram.length - offset >= 4) {
    throw new NetlinkProtocolError(`malformed netlink reply: ${datagram.length - offset} trailing bytes`);
  }
  return messages;
}

/** An NLMSG_ERROR payload: errno 0 is an ACK. */
export interface ErrorPayload {
  errno: number;
  extAck?: string;
}

export function parseErrorPayload(msg: NetlinkMessage): ErrorPayload {
  const p = msg.payload;
  if (p.length < 4) throw new NetlinkProtocolError('malformed netlink reply: NLMSG_ERROR shorter than its errno');
  const raw = p.readInt32LE(0);
  if (raw > 0) throw new NetlinkProtocolError(`malformed netlink reply: NLMSG_ERROR with positive error ${raw}`);
  const errno = raw === 0 ? 0 : -raw;
  if (!(msg.flags & NLM_F_ACK_TLVS) || p.length < 4 + NLMSG_HDRLEN) return { errno };
  // With NETLINK_CAP_ACK the echoed request is only its header; the TLVs follow it.
  const echoedLength = p.readUInt32LE(4);
  const tlvStart = 4 + (msg.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(echoedLength));
  let offset = tlvStart;
  while (offset + 4 <= p.length) {
    const len = p.readUInt16LE(offset);
    const type = p.readUInt16LE(offset + 2);
    if (len < 4 || offset + len > p.length) break;
    if (type === NLMSGERR_ATTR_MSG) {
      const text = p.subarray(offset + 4, offset + len);
      const nul = text.indexOf(0);
      return { errno, extAck: text.subarray(0, nul < 0 ? text.length : nul).toString('utf8') };
    }
    offset += align4(len);
  }
  return { errno };
}
