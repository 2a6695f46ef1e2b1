// The FFI boundary: the only module that touches koffi. Everything above it sees plain numbers and
// Buffers, and a failed syscall as a SyscallError carrying errno.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

// Buffers are passed as `void *`: koffi hands the callee the Buffer's own memory, no copy.
const socket = libc.func('int socket(int domain, int type, int protocol)');
const bind = libc.func('int bind(int fd, void *addr, uint32_t addrlen)');
const getsockname = libc.func('int getsockname(int fd, void *addr, void *addrlen)');
const setsockopt = libc.func('int setsockopt(int fd, int level, int optname, void *optval, uint32_t optlen)');
const sendto = libc.func('intptr_t sendto(int fd, void *buf, size_t len, int flags, void *addr, uint32_t addrlen)');
const recv = libc.func('intptr_t recv(int fd, void *buf, size_t len, int flags)');
const close = libc.func('int close(int fd)');

export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SO_RCVBUF = 8;
export const SO_RCVTIMEO = 20;
export const SOL_NETLINK = 270;
export const NETLINK_CAP_ACK = 10;
export const NETLINK_EXT_ACK = 11;
export const NETLINK_ADD_MEMBERSHIP = 1;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;

const EAGAIN = koffi.os.errno.EAGAIN as number;
const EINTR = koffi.os.errno.EINTR as number;

export class SyscallError extends Error {
  override readonly name = 'SyscallError';
  constructor(
    readonly syscall: string,
    readonly errno: number,
  ) {
    super(`${syscall} failed with errno ${errno}`);
  }
}

function check(syscall: string, result: number | bigint): number {
  const n = Number(result);
  if (n < 0) throw new SyscallError(syscall, koffi.errno());
  return n;
}

/** A netlink socket bound to a kernel-chosen port id. */
export function openNetlink(protocol: number): { fd: number; portId: number } {
  const fd = check('socket', socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol));
  try {
    // sockaddr_nl { u16 family, u16 pad, u32 pid = 0 (kernel picks), u32 groups = 0 }
    const addr = Buffer.alloc(12);
    addr.writeUInt16LE(AF_NETLINK, 0);
    check('bind', bind(fd, addr, addr.length));
    const len = Buffer.alloc(4);
    len.writeUInt32LE(addr.length, 0);
    check('getsockname', getsockname(fd, addr, len));
    return { fd, portId: addr.readUInt32LE(4) };
  } catch (err) {
    close(fd);
    throw err;
  }
}

export function setIntOption(fd: number, level: number, name: number, value: number): void {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value, 0);
  check('setsockopt', setsockopt(fd, level, name, v, 4));
}

/** SO_RCVTIMEO bounds how long a blocking recv on a worker thread can hold that thread. */
export function setReceiveTimeout(fd: number, ms: number): void {
  const tv = Buffer.alloc(16); // struct timeval { i64 sec, i64 usec }
  tv.writeBigInt64LE(BigInt(Math.floor(ms / 1000)), 0);
  tv.writeBigInt64LE(BigInt((ms % 1000) * 1000), 8);
  check('setsockopt', setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.length));
}

// sockaddr_nl of the kernel: family AF_NETLINK, port id 0. Never written after this.
const KERNEL_ADDRESS = Buffer.alloc(12);
KERNEL_ADDRESS.writeUInt16LE(AF_NETLINK, 0);

/** Sends one datagram to the kernel (port id 0). Netlink sends to the kernel do not block. */
export function sendToKernel(fd: number, message: Buffer): void {
  for (;;) {
    const n = Number(sendto(fd, message, message.length, 0, KERNEL_ADDRESS, KERNEL_ADDRESS.length));
    if (n >= 0) return;
    const errno = koffi.errno();
    if (errno !== EINTR) throw new SyscallError('sendto', errno);
  }
}

/**
 * The outcome of one receive: a datagram's full length (MSG_TRUNC makes the kernel report the real
 * size even when it exceeded the buffer, so truncation is visible), or nothing queued yet.
 */
export type Received = { kind: 'datagram'; length: number } | { kind: 'empty' };

/** Takes a queued datagram without waiting; cheap enough to call on the event loop. */
export function receiveNow(fd: number, buffer: Buffer): Received {
  for (;;) {
    const n = Number(recv(fd, buffer, buffer.length, MSG_DONTWAIT | MSG_TRUNC));
    if (n >= 0) return { kind: 'datagram', length: n };
    const errno = koffi.errno();
    if (errno === EAGAIN) return { kind: 'empty' };
    if (errno !== EINTR) throw new SyscallError('recv', errno);
  }
}

/**
 * Waits for a datagram on a worker thread, so the event loop never blocks. The wait ends after the
 * socket's SO_RCVTIMEO with `empty`, which lets the caller enforce its own deadline.
 */
export function receiveWaiting(fd: number, buffer: Buffer): Promise<Received> {
  return new Promise((resolve, reject) => {
    recv.async(fd, buffer, buffer.length, MSG_TRUNC, (err: unknown, result: number | bigint) => {
      if (err) return reject(err);
      const n = Number(result);
      if (n >= 0) return resolve({ kind: 'datagram', length: n });
      const errno = koffi.errno();
      if (errno === EAGAIN || errno === EINTR) return resolve({ kind: 'empty' });
      reject(new SyscallError('recv', errno));
    });
  });
}

export function closeFd(fd: number): void {
  close(fd);
}
