// Typed IPVS values <-> attribute values of the wire tables.
import type { AttributeValues } from '../netlink/attributes.js';
import { NetlinkProtocolError } from '../netlink/errors.js';
import { decodeAddress, encodeAddress } from './address.js';
import type {
  AddressFamily,
  Destination,
  DestinationKey,
  DestinationSpec,
  ForwardingMethod,
  Protocol,
  ServiceFlags,
  ServiceKey,
  ServiceSpec,
  Stats,
  VirtualService,
} from './types.js';
import {
  AF_INET,
  AF_INET6,
  IPPROTO_SCTP,
  IPPROTO_TCP,
  IPPROTO_UDP,
  IP_VS_CONN_F_BYPASS,
  IP_VS_CONN_F_DROUTE,
  IP_VS_CONN_F_FWD_MASK,
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
  type stats64Attributes,
  type statsAttributes,
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
const flagBits: Record<keyof ServiceFlags, number> = {
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
const familyFromWire = reverse(families, 'address family');
const protocolFromWire = reverse(protocols, 'protocol');
const forwardingFromWire = reverse(forwarding, 'forwarding method');

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

function decodeNetmask(family: AddressFamily, netmask: number): string {
  if (family === 'ipv6') return String(netmask);
  const b = Buffer.alloc(4);
  b.writeUInt32LE(netmask >>> 0, 0);
  return decodeAddress('ipv4', b);
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

type AnyStats = AttributeValues<typeof statsAttributes> | AttributeValues<typeof stats64Attributes>;

function decodeStats(stats: AnyStats | undefined): Stats {
  const n = (v: number | bigint | undefined) => BigInt(v ?? 0);
  return {
    connections: n(stats?.conns),
    packetsIn: n(stats?.inpkts),
    packetsOut: n(stats?.outpkts),
    bytesIn: n(stats?.inbytes),
    bytesOut: n(stats?.outbytes),
    cps: n(stats?.cps),
    ppsIn: n(stats?.inpps),
    ppsOut: n(stats?.outpps),
    bpsIn: n(stats?.inbps),
    bpsOut: n(stats?.outbps),
  };
}

export function decodeService(v: ServiceValues): VirtualService {
  const family = familyFromWire(required(v.af, 'IPVS_SVC_ATTR_AF'));
  const key: ServiceKey = v.fwmark
    ? { kind: 'fwmark', family, fwmark: v.fwmark }
    : {
        kind: 'address',
        family,
        protocol: protocolFromWire(required(v.protocol, 'IPVS_SVC_ATTR_PROTOCOL')),
        address: decodeAddress(family, required(v.addr, 'IPVS_SVC_ATTR_ADDR')),
        port: required(v.port, 'IPVS_SVC_ATTR_PORT'),
      };
  const bits = v.flags?.flags ?? 0;
  const flags = Object.fromEntries(
    Object.entries(flagBits).map(([name, bit]) => [name, (bits & bit) !== 0]),
  ) as unknown as ServiceFlags;
  return {
    key,
    scheduler: required(v.schedName, 'IPVS_SVC_ATTR_SCHED_NAME'),
    flags,
    timeoutSeconds: v.timeout ?? 0,
    netmask: decodeNetmask(family, required(v.netmask, 'IPVS_SVC_ATTR_NETMASK')),
    ...(v.peName ? { persistenceEngine: v.peName } : {}),
    stats: decodeStats(v.stats64 ?? v.stats),
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

export function decodeDest(v: DestValues, serviceFamily: AddressFamily): Destination {
  const family = v.addrFamily === undefined ? serviceFamily : familyFromWire(v.addrFamily);
  return {
    family,
    address: decodeAddress(family, required(v.addr, 'IPVS_DEST_ATTR_ADDR')),
    port: required(v.port, 'IPVS_DEST_ATTR_PORT'),
    forwarding: forwardingFromWire(required(v.fwdMethod, 'IPVS_DEST_ATTR_FWD_METHOD') & IP_VS_CONN_F_FWD_MASK),
    // The kernel's weight is a signed int carried in a u32.
    weight: required(v.weight, 'IPVS_DEST_ATTR_WEIGHT') | 0,
    upperThreshold: v.uThresh ?? 0,
    lowerThreshold: v.lThresh ?? 0,
    activeConnections: v.activeConns ?? 0,
    inactiveConnections: v.inactConns ?? 0,
    persistentConnections: v.persistConns ?? 0,
    stats: decodeStats(v.stats64 ?? v.stats),
  };
}
