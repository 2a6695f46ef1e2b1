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
import { NetlinkClosedError, NetlinkError, NetlinkProtocolError, NetlinkTimeoutError } from './errors.js';
import { encodeMessage, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, type NetlinkMessage } from './message.js';
import { readAnswer, type RequestKind } from './reply.js';

export type { RequestKind } from './reply.js';

/** Kernel dump datagrams are at most 32 KiB; twice that leaves room for any single reply. */
const RECEIVE_BUFFER_BYTES = 64 * 1024;
/** How long a worker-thread receive may wait before control returns to check the request's deadline. */
const RECEIVE_SLICE_MS = 200;
const DEFAULT_TIMEOUT_MS = 10_000;
/**
 * A long dump hands the event loop back after this many datagrams or bytes, so timers and HTTP probes keep
 * running. Counted rather than timed: under emulation a clock read can cost as much as a small datagram.
 */
const YIELD_EVERY_DATAGRAMS = 8;
const YIELD_EVERY_BYTES = 48 * 1024;

export interface Request {
  type: number;
  kind: RequestKind;
  payload: Buffer;
  /** Names the request in errors, e.g. "IPVS GET_DEST". */
  operation: string;
  /** How long the answer may keep us waiting, counted from the first time nothing was queued. */
  timeoutMs?: number;
}

// Shared by every socket: what matters is how long this thread has gone without yielding.
let datagramsSinceYield = 0;
let bytesSinceYield = 0;

function yieldDue(bytes: number): boolean {
  bytesSinceYield += bytes;
  if (++datagramsSinceYield < YIELD_EVERY_DATAGRAMS && bytesSinceYield < YIELD_EVERY_BYTES) return false;
  datagramsSinceYield = 0;
  bytesSinceYield = 0;
  return true;
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
   * Runs one request; `onReply` sees every data message of the answer. Its payload is a view into the receive
   * buffer, valid only during the call: decoders copy what they keep (the IPVS decoders keep no Buffer at all).
   * Rejects with NetlinkClosedError when the socket is closed before the answer is complete.
   */
  request(req: Request, onReply: (msg: NetlinkMessage) => void): Promise<void> {
    const run = this.queue.then(() => this.exchange(req, onReply));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Closes the socket. A request in flight stops at once: it must never read the descriptor again, because the
   * next socket opened in this process may get the same number and the same port id, and its replies would go
   * to the wrong request.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // A worker thread may still be inside recv() on this fd: close only after it returns, so the
    // number cannot be reused under it.
    if (this.waiting) void this.waiting.finally(() => closeFd(this.fd)).catch(() => undefined);
    else closeFd(this.fd);
  }

  private async exchange(req: Request, onReply: (msg: NetlinkMessage) => void): Promise<void> {
    if (this.closed) throw new NetlinkClosedError(req.operation, false);
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const flags = NLM_F_REQUEST | (req.kind === 'dump' ? NLM_F_DUMP : NLM_F_ACK);
    try {
      sendToKernel(this.fd, encodeMessage(req.type, flags, seq, this.portId, req.payload));
    } catch (err) {
      throw asNetlinkError(err, req.operation);
    }
    const awaited = { kind: req.kind, seq, portId: this.portId, operation: req.operation };
    const wait = { timeoutMs: req.timeoutMs ?? DEFAULT_TIMEOUT_MS, deadline: Infinity };
    for (;;) {
      // The kernel queues a reply inside sendto() and the next dump datagram inside recv(): the datagram is
      // usually there already, and only an empty queue costs an await.
      if (this.closed) throw new NetlinkClosedError(req.operation, true);
      let got = this.receiveNow(req.operation);
      if (got.kind === 'empty') got = await this.waitForDatagram(req.operation, wait);
      if (got.length > this.buffer.length) {
        throw new NetlinkProtocolError(
          `${req.operation}: reply datagram of ${got.length} bytes truncated to ${this.buffer.length}`,
        );
      }
      if (readAnswer(this.buffer.subarray(0, got.length), awaited, onReply) === 'complete') return;
      if (yieldDue(got.length)) await new Promise((resolve) => setImmediate(resolve));
    }
  }

  private receiveNow(operation: string): Received {
    try {
      return receiveNow(this.fd, this.buffer);
    } catch (err) {
      throw asNetlinkError(err, operation);
    }
  }

  /** Waits on a worker thread for the next datagram; only ever reads the descriptor while the socket is open. */
  private async waitForDatagram(
    operation: string,
    wait: { timeoutMs: number; deadline: number },
  ): Promise<{ kind: 'datagram'; length: number }> {
    for (;;) {
      const now = performance.now();
      if (wait.deadline === Infinity) wait.deadline = now + wait.timeoutMs;
      else if (now > wait.deadline) {
        throw new NetlinkTimeoutError(`${operation}: no answer from the kernel before the deadline`);
      }
      this.waiting = receiveWaiting(this.fd, this.buffer);
      let got: Received;
      try {
        got = await this.waiting;
      } catch (err) {
        throw asNetlinkError(err, operation);
      } finally {
        this.waiting = undefined;
      }
      // Closed while the worker waited: whatever it read is no longer ours to interpret.
      if (this.closed) throw new NetlinkClosedError(operation, true);
      if (got.kind === 'datagram') return got;
    }
  }
}
