// Typed IPVS values -> attribute values of the wire tables, and the wire numbers' meanings both ways.
import type { AttributeValues } from '../netlink/attributes.js';
import { NetlinkProtocolError } from '../netlink/errors.js';
import { encodeAddress } from './address.js';
import type {
  AddressFamily,
  DestinationKey,
  DestinationSpec,
  ForwardingMethod,
  Protocol,
  ServiceFlags,
  ServiceKey,
  ServiceSpec,
} from './types.js';
import {
  AF_INET,
  AF_INET6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IP_VS_CONN_F_BYPASS,
  IP_VS_CONN_F_DROUTE,
  IP_VS_CONN_F_LOCALNODE,
  IP_VS_CONN_F_MASQ,
  IP_VS_CONN_F_TUNNEL,
  IP_VS_SVC_F_HASHED,
  IP_VS_SVC_F_ONEPACKET,
  IP_VS_SVC_F_PERSISTENT,
  IP_VS_SVC_F_SCHED1,
  IP_VS_SVC_F_SCHED2,
  IP_VS_SVC_F_SCHED3,
  type destAttributes,
  type serviceAttributes,
} from './wire.js';

type ServiceValues = AttributeValues<typeof serviceAttributes>;
type DestValues = AttributeValues<typeof destAttributes>;

const families: Record<AddressFamily, number> = { ipv4: AF_INET, ipv6: AF_INET6 };
const protocols: Record<Protocol, number> = { tcp: IPPROTO_TCP, udp: IPPROTO_UDP, sctp: IPPROTO_SCTP };
const forwarding: Record<ForwardingMethod, number> = {
  masq: IP_VS_CONN_F_MASQ,
  localnode: IP_VS_CONN_F_LOCALNODE,
  tunnel: IP_VS_CONN_F_TUNNEL,
  route: IP_VS_CONN_F_DROUTE,
  bypass: IP_VS_CONN_F_BYPASS,
};
export const flagBits: Record<keyof ServiceFlags, number> = {
  persistent: IP_VS_SVC_F_PERSISTENT,
  hashed: IP_VS_SVC_F_HASHED,
  onePacket: IP_VS_SVC_F_ONEPACKET,
  sched1: IP_VS_SVC_F_SCHED1,
  sched2: IP_VS_SVC_F_SCHED2,
  sched3: IP_VS_SVC_F_SCHED3,
};

function reverse<K extends string>(table: Record<K, number>, what: string): (n: number) => K {
  const byNumber = new Map(Object.entries(table).map(([k, v]) => [v as number, k as K]));
  return (n) => {
    const k = byNumber.get(n);
    if (k === undefined) throw new NetlinkProtocolError(`malformed netlink reply: unknown ${what} ${n}`);
    return k;
  };
}
export const familyFromWire = reverse(families, 'address family');
export const protocolFromWire = reverse(protocols, 'protocol');
export const forwardingFromWire = reverse(forwarding, 'forwarding method');

export function required<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new NetlinkProtocolError(`malformed netlink reply: IPVS reply without ${what}`);
  return value;
}

export function encodeServiceKey(key: ServiceKey): ServiceValues {
  if (key.kind === 'fwmark') return { af: families[key.family], fwmark: key.fwmark };
  return {
    af: families[key.family],
    protocol: protocols[key.protocol],
    addr: encodeAddress(key.address),
    port: key.port,
  };
}

function encodeNetmask(family: AddressFamily, netmask: string | undefined): number {
  if (family === 'ipv6') return netmask === undefined ? 128 : Number(netmask);
  // The kernel keeps an IPv4 mask as __be32: its bytes on the wire are the mask in network order.
  return encodeAddress(netmask ?? '255.255.255.255').readUInt32LE(0);
}

export function encodeServiceSpec(spec: ServiceSpec): ServiceValues {
  let flags = 0;
  for (const [name, bit] of Object.entries(flagBits) as [keyof ServiceFlags, number][]) {
    // HASHED is the kernel's own bookkeeping, never ours to set.
    if (spec.flags?.[name] && bit !== IP_VS_SVC_F_HASHED) flags |= bit;
  }
  return {
    ...encodeServiceKey(spec.key),
    schedName: spec.scheduler,
    flags: { flags, mask: 0xffffffff },
    timeout: spec.timeoutSeconds ?? 0,
    netmask: encodeNetmask(spec.key.family, spec.netmask),
    ...(spec.persistenceEngine ? { peName: spec.persistenceEngine } : {}),
  };
}

export function encodeDestKey(service: ServiceKey, dest: DestinationKey): DestValues {
  return {
    addr: encodeAddress(dest.address),
    port: dest.port,
    // Only needed, and only understood by newer kernels, when it differs from the service's family.
    ...(dest.family !== service.family ? { addrFamily: families[dest.family] } : {}),
  };
}

export function encodeDestSpec(service: ServiceKey, dest: DestinationSpec): DestValues {
  return {
    ...encodeDestKey(service, dest),
    fwdMethod: forwarding[dest.forwarding],
    weight: dest.weight,
    uThresh: dest.upperThreshold ?? 0,
    lThresh: dest.lowerThreshold ?? 0,
  };
}
