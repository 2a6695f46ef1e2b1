import { constants } from 'node:os';

const errnoNames = new Map<number, string>(
  Object.entries(constants.errno).map(([name, code]) => [code, name]),
);

/** "ENOENT" for 2; "E<n>" for a number this platform does not name. */
export function errnoName(code: number): string {
  return errnoNames.get(code) ?? `E${code}`;
}

export function errnoCode(name: string): number {
  const code = (constants.errno as Record<string, number>)[name];
  if (code === undefined) throw new Error(`unknown errno name ${name}`);
  return code;
}

/** The kernel refused a request: an NLMSG_ERROR with a negative errno, or a failed syscall. */
export class NetlinkError extends Error {
  override readonly name = 'NetlinkError';
  readonly errno: string;

  constructor(
    readonly code: number,
    readonly operation: string,
    /** The kernel's extended-ack message, when it sent one. */
    readonly extAck?: string,
  ) {
    const errno = errnoName(code);
    super(`${operation}: ${errno}${extAck ? ` (${extAck})` : ''}`);
    this.errno = errno;
  }
}

/** A reply that does not parse as the protocol says it must: never acted upon. */
export class NetlinkProtocolError extends Error {
  override readonly name = 'NetlinkProtocolError';
}

/** No complete answer arrived within the request's deadline. */
export class NetlinkTimeoutError extends Error {
  override readonly name = 'NetlinkTimeoutError';
}

/**
 * The request's socket was closed (replaced after a failure, or the client closed) before its answer was read.
 * `sent` tells whether the kernel may have acted on it: a request that was never sent is safe to run again.
 */
export class NetlinkClosedError extends Error {
  override readonly name = 'NetlinkClosedError';
  constructor(
    operation: string,
    readonly sent: boolean,
  ) {
    super(`${operation}: netlink socket closed ${sent ? 'before the answer was read' : 'before the request was sent'}`);
  }
}

export function isErrno(err: unknown, name: string): boolean {
  return err instanceof NetlinkError && err.errno === name;
}
