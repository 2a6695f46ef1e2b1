// What one received datagram means for the request waiting on it: pure, so the fuzz test drives exactly the code
// the socket runs.
import { NetlinkError, NetlinkProtocolError } from './errors.js';
import {
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  parseErrorPayload,
  parseMessages,
  type NetlinkMessage,
} from './message.js';

export type RequestKind = 'do' | 'dump';

export interface Awaited {
  kind: RequestKind;
  seq: number;
  portId: number;
  /** Names the request in errors, e.g. "IPVS GET_DEST". */
  operation: string;
}

/**
 * Hands each data message of the awaited answer to `onReply` and says whether the answer is complete: an ACK
 * ends a `do`, NLMSG_DONE ends a dump. Messages of other requests (a late answer to an earlier one) are skipped.
 * Rejects with NetlinkError for a kernel errno and NetlinkProtocolError for anything malformed.
 */
export function readAnswer(
  datagram: Buffer,
  awaited: Awaited,
  onReply: (msg: NetlinkMessage) => void,
): 'complete' | 'incomplete' {
  for (const msg of parseMessages(datagram)) {
    if (msg.seq !== awaited.seq || msg.portId !== awaited.portId) continue;
    switch (msg.type) {
      case NLMSG_NOOP:
        continue;
      case NLMSG_ERROR: {
        const { errno, extAck } = parseErrorPayload(msg);
        if (errno !== 0) throw new NetlinkError(errno, awaited.operation, extAck);
        if (awaited.kind === 'do') return 'complete';
        continue;
      }
      case NLMSG_DONE: {
        // A dump that failed part-way reports the error in DONE's payload.
        const status = msg.payload.length >= 4 ? msg.payload.readInt32LE(0) : 0;
        if (status < 0) throw new NetlinkError(-status, awaited.operation);
        return 'complete';
      }
      case NLMSG_OVERRUN:
        throw new NetlinkProtocolError(`${awaited.operation}: kernel reported NLMSG_OVERRUN`);
      default:
        onReply(msg);
    }
  }
  return 'incomplete';
}
