// rtnetlink addresses (include/uapi/linux/rtnetlink.h, if_addr.h, if_link.h): the dump of every address the kernel
// holds, one link's index by name, and a subscription to address changes (RTM_NEWADDR / RTM_DELADDR multicast).
import {
  closeFd,
  NETLINK_ADD_MEMBERSHIP,
  openNetlink,
  receiveNow,
  receiveWaiting,
  setIntOption,
  setReceiveTimeout,
  SOL_NETLINK,
  SOL_SOCKET,
  SO_RCVBUF,
  SyscallError,
  type Received,
} from '../../native/libc.js';
import { binary, decodeAttributes, encodeAttributes, string, u32, type AttributeSet } from './attributes.js';
import { errnoCode, isErrno, NetlinkError, NetlinkProtocolError } from './errors.js';
import { parseMessages, type NetlinkMessage } from './message.js';
import { NetlinkSocket } from './socket.js';

export const NETLINK_ROUTE = 0;

export const RTM_NEWLINK = 16;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;

/** Multicast groups (enum rtnetlink_groups). */
export const RTNLGRP_IPV4_IFADDR = 5;
export const RTNLGRP_IPV6_IFADDR = 9;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;

/** struct ifaddrmsg { u8 family, prefixlen, flags, scope; u32 index } */
export const IFADDRMSG_LEN = 8;
/** struct ifinfomsg { u8 family, pad; u16 type; s32 index; u32 flags, change } */
export const IFINFOMSG_LEN = 16;

export const ifaAttributes = {
  address: [1, binary], // IFA_ADDRESS: the peer on point-to-point links, else the local address
  local: [2, binary], // IFA_LOCAL
  label: [3, string], // IFA_LABEL (IPv4 only)
  flags: [8, u32], // IFA_FLAGS
} as const satisfies AttributeSet;

export const iflaAttributes = {
  ifname: [3, string], // IFLA_IFNAME
} as const satisfies AttributeSet;

export interface AddressMessage {
  readonly change: 'added' | 'removed';
  readonly family: 'ipv4' | 'ipv6';
  readonly prefixLength: number;
  readonly ifindex: number;
  /** The local address, 4 or 16 bytes. */
  readonly address: Buffer;
  readonly label?: string;
}

const FAMILIES: Readonly<Record<number, AddressMessage['family']>> = { [AF_INET]: 'ipv4', [AF_INET6]: 'ipv6' };
const ADDRESS_BYTES = { ipv4: 4, ipv6: 16 } as const;

/** An RTM_NEWADDR / RTM_DELADDR message; undefined for families other than IPv4 and IPv6. */
export function decodeAddressMessage(msg: NetlinkMessage): AddressMessage | undefined {
  if (msg.type !== RTM_NEWADDR && msg.type !== RTM_DELADDR) {
    throw new NetlinkProtocolError(`malformed netlink reply: message type ${msg.type} is not an address message`);
  }
  if (msg.payload.length < IFADDRMSG_LEN) {
    throw new NetlinkProtocolError('malformed netlink reply: address message shorter than its ifaddrmsg');
  }
  const family = FAMILIES[msg.payload.readUInt8(0)];
  if (!family) return undefined;
  const attrs = decodeAttributes(ifaAttributes, msg.payload.subarray(IFADDRMSG_LEN));
  // As iproute2 and Go's net package read it: IFA_LOCAL when present (it differs from IFA_ADDRESS only on
  // point-to-point links), else IFA_ADDRESS.
  const address = attrs.local ?? attrs.address;
  if (!address || address.length !== ADDRESS_BYTES[family]) {
    throw new NetlinkProtocolError(`malformed netlink reply: ${family} address message without a ${ADDRESS_BYTES[family]}-byte address`);
  }
  return {
    change: msg.type === RTM_NEWADDR ? 'added' : 'removed',
    family,
    prefixLength: msg.payload.readUInt8(1),
    ifindex: msg.payload.readUInt32LE(4),
    address,
    ...(attrs.label !== undefined ? { label: attrs.label } : {}),
  };
}

/** Requests on NETLINK_ROUTE: the address dump and link lookups. */
export class RouteNetlink {
  private constructor(private readonly socket: NetlinkSocket) {}

  static open(): RouteNetlink {
    return new RouteNetlink(NetlinkSocket.open(NETLINK_ROUTE));
  }

  /** Every IPv4 and IPv6 address on every interface (AF_UNSPEC dump, as kube-proxy lists them). */
  async addresses(): Promise<AddressMessage[]> {
    const result: AddressMessage[] = [];
    await this.socket.request(
      { type: RTM_GETADDR, kind: 'dump', payload: Buffer.alloc(IFADDRMSG_LEN), operation: 'rtnetlink GETADDR' },
      (msg) => {
        const decoded = decodeAddressMessage(msg);
        if (decoded) result.push(decoded);
      },
    );
    return result;
  }

  /** The interface index of `name`, or undefined when no such interface exists. */
  async linkIndex(name: string): Promise<number | undefined> {
    let index: number | undefined;
    const payload = Buffer.concat([Buffer.alloc(IFINFOMSG_LEN), encodeAttributes(iflaAttributes, { ifname: name })]);
    try {
      await this.socket.request({ type: RTM_GETLINK, kind: 'do', payload, operation: `rtnetlink GETLINK ${name}` }, (msg) => {
        if (msg.type !== RTM_NEWLINK || msg.payload.length < IFINFOMSG_LEN) {
          throw new NetlinkProtocolError(`malformed netlink reply: GETLINK answered message type ${msg.type}`);
        }
        index = msg.payload.readInt32LE(4);
      });
    } catch (err) {
      if (isErrno(err, 'ENODEV')) return undefined;
      throw err;
    }
    return index;
  }

  close(): void {
    this.socket.close();
  }
}

export type AddressEvent =
  | { readonly kind: 'address'; readonly message: AddressMessage }
  /** The kernel dropped notifications (ENOBUFS) or one did not fit: what changed is unknown, list again. */
  | { readonly kind: 'overrun' }
  /** The subscription stopped on an unexpected error; no more events come. */
  | { readonly kind: 'failed'; readonly error: Error };

/** Kernel notifications are one small message each; many can queue while the event loop is busy. */
const SUBSCRIPTION_RECEIVE_BUFFER_BYTES = 1024 * 1024;
const DATAGRAM_BYTES = 64 * 1024;
/** How long a worker-thread receive may wait before it returns to see whether the subscription was closed. */
const SUBSCRIPTION_RECEIVE_SLICE_MS = 500;
const ENOBUFS = errnoCode('ENOBUFS');

/** RTM_NEWADDR / RTM_DELADDR notifications for IPv4 and IPv6, on a socket of their own. */
export class AddressSubscription {
  private readonly buffer = Buffer.alloc(DATAGRAM_BYTES);
  private closed = false;
  readonly done: Promise<void>;

  private constructor(
    private readonly fd: number,
    private readonly onEvent: (event: AddressEvent) => void,
  ) {
    this.done = this.run();
  }

  /** Joins the address groups before returning: a dump made after this misses no change. */
  static open(onEvent: (event: AddressEvent) => void): AddressSubscription {
    const { fd } = openNetlink(NETLINK_ROUTE);
    try {
      setIntOption(fd, SOL_SOCKET, SO_RCVBUF, SUBSCRIPTION_RECEIVE_BUFFER_BYTES);
      setIntOption(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_IPV4_IFADDR);
      setIntOption(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, RTNLGRP_IPV6_IFADDR);
      setReceiveTimeout(fd, SUBSCRIPTION_RECEIVE_SLICE_MS);
    } catch (err) {
      closeFd(fd);
      if (err instanceof SyscallError) throw new NetlinkError(err.errno, `rtnetlink address subscription (${err.syscall})`);
      throw err;
    }
    return new AddressSubscription(fd, onEvent);
  }

  /** Stops delivering events; the descriptor closes once a receive in progress returns. */
  async close(): Promise<void> {
    this.closed = true;
    await this.done;
  }

  private async run(): Promise<void> {
    try {
      while (!this.closed) {
        const got = await this.receive();
        if (this.closed) break;
        if (got.kind === 'empty') continue;
        if (got.kind === 'overrun' || got.length > this.buffer.length) {
          this.onEvent({ kind: 'overrun' });
          continue;
        }
        for (const msg of parseMessages(this.buffer.subarray(0, got.length))) {
          if (msg.type !== RTM_NEWADDR && msg.type !== RTM_DELADDR) continue;
          const message = decodeAddressMessage(msg);
          if (message) this.onEvent({ kind: 'address', message });
        }
      }
    } catch (err) {
      if (!this.closed) this.onEvent({ kind: 'failed', error: err instanceof Error ? err : new Error(String(err)) });
    } finally {
      closeFd(this.fd);
    }
  }

  private async receive(): Promise<Received | { kind: 'overrun' }> {
    try {
      const now = receiveNow(this.fd, this.buffer);
      if (now.kind === 'datagram') return now;
      return await receiveWaiting(this.fd, this.buffer);
    } catch (err) {
      if (err instanceof SyscallError && err.errno === ENOBUFS) return { kind: 'overrun' };
      if (err instanceof SyscallError) throw new NetlinkError(err.errno, `rtnetlink address subscription (${err.syscall})`);
      throw err;
    }
  }
}
