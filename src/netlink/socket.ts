// A netlink socket that runs one request at a time: sends it, then collects the replies that carry its
// sequence number and our port id until the ACK, the error or NLMSG_DONE that ends it.
import {
  closeFd,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  openNetlink,
  receiveNow,
  receiveWaiting,
  sendToKernel,
  setIntOption,
  setReceiveTimeout,
  SOL_NETLINK,
  SOL_SOCKET,
  SO_RCVBUF,
  SyscallError,
  type Received,
} from '../../native/libc.js';
import { NetlinkError, NetlinkProtocolError, NetlinkTimeoutError } from './errors.js';
import {
  encodeMessage,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSG_OVERRUN,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  parseErrorPayload,
  parseMessages,
  type NetlinkMessage,
} from './message.js';

/** Kernel dump datagrams are at most 32 KiB; twice that leaves room for any single reply. */
const RECEIVE_BUFFER_BYTES = 64 * 1024;
/** How long a worker-thread receive may wait before control returns to check the request's deadline. */
const RECEIVE_SLICE_MS = 200;
const DEFAULT_TIMEOUT_MS = 10_000;
/** A long dump hands the event loop back at least this often, so timers and HTTP probes keep running. */
const YIELD_EVERY_MS = 4;

export type RequestKind = 'do' | 'dump';

export interface Request {
  type: number;
  kind: RequestKind;
  payload: Buffer;
  /** Names the request in errors, e.g. "IPVS GET_DEST". */
  operation: string;
  timeoutMs?: number;
}

let lastYield = performance.now();

async function yieldIfDue(): Promise<void> {
  if (performance.now() - lastYield < YIELD_EVERY_MS) return;
  await new Promise((resolve) => setImmediate(resolve));
  lastYield = performance.now();
}

function asNetlinkError(err: unknown, operation: string): unknown {
  if (err instanceof SyscallError) return new NetlinkError(err.errno, `${operation} (${err.syscall})`);
  return err;
}

export class NetlinkSocket {
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private readonly buffer = Buffer.alloc(RECEIVE_BUFFER_BYTES);
  private queue: Promise<unknown> = Promise.resolve();
  private waiting: Promise<Received> | undefined;
  private closed = false;

  private constructor(
    private readonly fd: number,
    readonly portId: number,
  ) {}

  static open(protocol: number, receiveBufferBytes = 4 * 1024 * 1024): NetlinkSocket {
    const { fd, portId } = openNetlink(protocol);
    const socket = new NetlinkSocket(fd, portId);
    try {
      setIntOption(fd, SOL_SOCKET, SO_RCVBUF, receiveBufferBytes);
      // Errors then carry the kernel's explanation, and ACKs do not echo our whole request back.
      setIntOption(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
      setIntOption(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
      setReceiveTimeout(fd, RECEIVE_SLICE_MS);
    } catch (err) {
      socket.close();
      throw asNetlinkError(err, 'netlink socket setup');
    }
    return socket;
  }

  /**
   * Runs one request; `onReply` sees every data message of the answer while its payload is valid
   * (the buffer is reused for the next datagram).
   */
  request(req: Request, onReply: (msg: NetlinkMessage) => void): Promise<void> {
    const run = this.queue.then(() => this.exchange(req, onReply));
    this.queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // A worker thread may still be inside recv() on this fd: close only after it returns, so the
    // number cannot be reused under it.
    if (this.waiting) void this.waiting.finally(() => closeFd(this.fd)).catch(() => undefined);
    else closeFd(this.fd);
  }

  private async exchange(req: Request, onReply: (msg: NetlinkMessage) => void): Promise<void> {
    if (this.closed) throw new NetlinkProtocolError(`${req.operation}: netlink socket is closed`);
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const flags = NLM_F_REQUEST | (req.kind === 'dump' ? NLM_F_DUMP : NLM_F_ACK);
    try {
      sendToKernel(this.fd, encodeMessage(req.type, flags, seq, this.portId, req.payload));
    } catch (err) {
      throw asNetlinkError(err, req.operation);
    }
    const deadline = performance.now() + (req.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    for (;;) {
      const length = await this.receive(req.operation, deadline);
      if (length > this.buffer.length) {
        throw new NetlinkProtocolError(
          `${req.operation}: reply datagram of ${length} bytes truncated to ${this.buffer.length}`,
        );
      }
      for (const msg of parseMessages(this.buffer.subarray(0, length))) {
        if (msg.seq !== seq || msg.portId !== this.portId) continue; // late answer to an earlier request
        switch (msg.type) {
          case NLMSG_NOOP:
            continue;
          case NLMSG_ERROR: {
            const { errno, extAck } = parseErrorPayload(msg);
            if (errno !== 0) throw new NetlinkError(errno, req.operation, extAck);
            if (req.kind === 'do') return;
            continue;
          }
          case NLMSG_DONE: {
            // A dump that failed part-way reports the error in DONE's payload.
            const status = msg.payload.length >= 4 ? msg.payload.readInt32LE(0) : 0;
            if (status < 0) throw new NetlinkError(-status, req.operation);
            return;
          }
          case NLMSG_OVERRUN:
            throw new NetlinkProtocolError(`${req.operation}: kernel reported NLMSG_OVERRUN`);
          default:
            onReply(msg);
        }
      }
    }
  }

  private async receive(operation: string, deadline: number): Promise<number> {
    try {
      for (;;) {
        await yieldIfDue();
        let got = receiveNow(this.fd, this.buffer);
        if (got.kind === 'empty') {
          if (performance.now() > deadline) {
            throw new NetlinkTimeoutError(`${operation}: no answer from the kernel before the deadline`);
          }
          this.waiting = receiveWaiting(this.fd, this.buffer);
          try {
            got = await this.waiting;
          } finally {
            this.waiting = undefined;
          }
        }
        if (got.kind === 'datagram') return got.length;
      }
    } catch (err) {
      throw asNetlinkError(err, operation);
    }
  }
}
