// Decoders of IPVS replies: one pass over each nest, every fixed-size value read at its offset in the datagram
// (no Buffer view per attribute) and checked against its codec's size.
import { attributeEnd, attributeType, be16, NLA_HDRLEN, string, u16, u32, u64 } from '../netlink/attributes.js';
import type { ReplyDecoder } from '../netlink/genl.js';
import { align4 } from '../netlink/message.js';
import { decodeAddress } from './address.js';
import { familyFromWire, flagBits, forwardingFromWire, protocolFromWire, required } from './codec.js';
import type { AddressFamily, Destination, DestinationWeight, ServiceFlags, ServiceKey, Stats, VirtualService } from './types.js';
// Named imports, not a namespace object: evaluating a case label is then a constant, not a property lookup.
import {
  IPVS_CMD_ATTR_DEST,
  IPVS_CMD_ATTR_SERVICE,
  IPVS_DEST_ATTR_ACTIVE_CONNS,
  IPVS_DEST_ATTR_ADDR,
  IPVS_DEST_ATTR_ADDR_FAMILY,
  IPVS_DEST_ATTR_FWD_METHOD,
  IPVS_DEST_ATTR_INACT_CONNS,
  IPVS_DEST_ATTR_L_THRESH,
  IPVS_DEST_ATTR_PERSIST_CONNS,
  IPVS_DEST_ATTR_PORT,
  IPVS_DEST_ATTR_STATS,
  IPVS_DEST_ATTR_STATS64,
  IPVS_DEST_ATTR_U_THRESH,
  IPVS_DEST_ATTR_WEIGHT,
  IPVS_STATS_ATTR_CONNS,
  IPVS_STATS_ATTR_CPS,
  IPVS_STATS_ATTR_INBPS,
  IPVS_STATS_ATTR_INPKTS,
  IPVS_STATS_ATTR_INPPS,
  IPVS_STATS_ATTR_OUTBPS,
  IPVS_STATS_ATTR_OUTPKTS,
  IPVS_STATS_ATTR_OUTPPS,
  IPVS_STATS_ATTR_INBYTES,
  IPVS_STATS_ATTR_OUTBYTES,
  IPVS_SVC_ATTR_ADDR,
  IPVS_SVC_ATTR_AF,
  IPVS_SVC_ATTR_FLAGS,
  IPVS_SVC_ATTR_FWMARK,
  IPVS_SVC_ATTR_NETMASK,
  IPVS_SVC_ATTR_PE_NAME,
  IPVS_SVC_ATTR_PORT,
  IPVS_SVC_ATTR_PROTOCOL,
  IPVS_SVC_ATTR_SCHED_NAME,
  IPVS_SVC_ATTR_STATS,
  IPVS_SVC_ATTR_STATS64,
  IPVS_SVC_ATTR_TIMEOUT,
  IP_VS_CONN_F_FWD_MASK,
  serviceFlagsCodec,
} from './wire.js';

/** The payload range of the first top-level attribute of `type`; a reply without it is malformed. */
function nestRange(payload: Buffer, start: number, type: number, name: string): [number, number] {
  for (let offset = start; offset + NLA_HDRLEN <= payload.length; ) {
    const next = attributeEnd(payload, offset, payload.length);
    if (attributeType(payload, offset) === type) return [offset + NLA_HDRLEN, next];
    offset = start + align4(next - start);
  }
  return required<[number, number]>(undefined, name);
}

/** Where a nest's optional attribute sits: start < 0 when absent. */
interface Span {
  start: number;
  end: number;
}
const absent = (): Span => ({ start: -1, end: -1 });

/** The statistics nest to decode: STATS64 (every counter u64) wins over the legacy STATS, in whatever order. */
interface StatsSpan extends Span {
  allWide: boolean;
}
const noStats = (): StatsSpan => ({ start: -1, end: -1, allWide: false });

function noteStats(span: StatsSpan, allWide: boolean, start: number, end: number): void {
  if (span.allWide && !allWide) return;
  span.start = start;
  span.end = end;
  span.allWide = allWide;
}

/** STATS64 carries every counter as u64; the legacy STATS only the byte counters (the rest are u32). */
function decodeStats(buffer: Buffer, span: StatsSpan): Stats {
  // Locals and one literal at the end: a keyed store with ten different names would be megamorphic.
  let conns = 0n, inpkts = 0n, outpkts = 0n, inbytes = 0n, outbytes = 0n, cps = 0n, inpps = 0n, outpps = 0n, inbps = 0n, outbps = 0n;
  const { start, end, allWide } = span;
  for (let offset = start; start >= 0 && offset + NLA_HDRLEN <= end; ) {
    const next = attributeEnd(buffer, offset, end);
    const type = attributeType(buffer, offset);
    const p = offset + NLA_HDRLEN;
    offset = start + align4(next - start);
    if (type < IPVS_STATS_ATTR_CONNS || type > IPVS_STATS_ATTR_OUTBPS) continue; // IPVS_STATS_ATTR_PAD, or newer
    const wide = allWide || type === IPVS_STATS_ATTR_INBYTES || type === IPVS_STATS_ATTR_OUTBYTES;
    const value = wide ? u64.decode(buffer, p, next) : BigInt(u32.decode(buffer, p, next));
    if (type === IPVS_STATS_ATTR_CONNS) conns = value;
    else if (type === IPVS_STATS_ATTR_INPKTS) inpkts = value;
    else if (type === IPVS_STATS_ATTR_OUTPKTS) outpkts = value;
    else if (type === IPVS_STATS_ATTR_INBYTES) inbytes = value;
    else if (type === IPVS_STATS_ATTR_OUTBYTES) outbytes = value;
    else if (type === IPVS_STATS_ATTR_CPS) cps = value;
    else if (type === IPVS_STATS_ATTR_INPPS) inpps = value;
    else if (type === IPVS_STATS_ATTR_OUTPPS) outpps = value;
    else if (type === IPVS_STATS_ATTR_INBPS) inbps = value;
    else outbps = value;
  }
  return {
    connections: conns, packetsIn: inpkts, packetsOut: outpkts, bytesIn: inbytes, bytesOut: outbytes,
    cps, ppsIn: inpps, ppsOut: outpps, bpsIn: inbps, bpsOut: outbps,
  };
}

function addressAt(buffer: Buffer, family: AddressFamily, addr: Span, name: string): string {
  const start = required(addr.start >= 0 ? addr.start : undefined, name);
  return decodeAddress(family, buffer, start, addr.end - start);
}

function decodeNetmask(family: AddressFamily, netmask: number): string {
  if (family === 'ipv6') return String(netmask);
  // An IPv4 mask is a __be32: its bytes in memory are the mask in network order.
  return `${netmask & 0xff}.${(netmask >>> 8) & 0xff}.${(netmask >>> 16) & 0xff}.${netmask >>> 24}`;
}

function decodeFlags(bits: number): ServiceFlags {
  return {
    persistent: (bits & flagBits.persistent) !== 0,
    hashed: (bits & flagBits.hashed) !== 0,
    onePacket: (bits & flagBits.onePacket) !== 0,
    sched1: (bits & flagBits.sched1) !== 0,
    sched2: (bits & flagBits.sched2) !== 0,
    sched3: (bits & flagBits.sched3) !== 0,
  };
}

/** The IPVS_SVC_ATTR_* nest at buffer[start, end). */
export function decodeServiceAt(buffer: Buffer, start: number, end: number): VirtualService {
  let af: number | undefined;
  let protocol: number | undefined;
  let port: number | undefined;
  let fwmark: number | undefined;
  let scheduler: string | undefined;
  let flags = 0;
  let timeoutSeconds = 0;
  let netmask: number | undefined;
  let persistenceEngine: string | undefined;
  const addr = absent();
  const stats = noStats();
  for (let offset = start; offset + NLA_HDRLEN <= end; ) {
    const next = attributeEnd(buffer, offset, end);
    const p = offset + NLA_HDRLEN;
    switch (attributeType(buffer, offset)) {
      case IPVS_SVC_ATTR_AF:
        af = u16.decode(buffer, p, next);
        break;
      case IPVS_SVC_ATTR_PROTOCOL:
        protocol = u16.decode(buffer, p, next);
        break;
      case IPVS_SVC_ATTR_ADDR:
        addr.start = p;
        addr.end = next;
        break;
      case IPVS_SVC_ATTR_PORT:
        port = be16.decode(buffer, p, next);
        break;
      case IPVS_SVC_ATTR_FWMARK:
        fwmark = u32.decode(buffer, p, next);
        break;
      case IPVS_SVC_ATTR_SCHED_NAME:
        scheduler = string.decode(buffer, p, next);
        break;
      case IPVS_SVC_ATTR_FLAGS:
        flags = serviceFlagsCodec.decode(buffer, p, next).flags;
        break;
      case IPVS_SVC_ATTR_TIMEOUT:
        timeoutSeconds = u32.decode(buffer, p, next);
        break;
      case IPVS_SVC_ATTR_NETMASK:
        netmask = u32.decode(buffer, p, next);
        break;
      case IPVS_SVC_ATTR_PE_NAME:
        persistenceEngine = string.decode(buffer, p, next);
        break;
      case IPVS_SVC_ATTR_STATS:
      case IPVS_SVC_ATTR_STATS64:
        noteStats(stats, attributeType(buffer, offset) === IPVS_SVC_ATTR_STATS64, p, next);
        break;
    }
    offset = start + align4(next - start);
  }
  const family = familyFromWire(required(af, 'IPVS_SVC_ATTR_AF'));
  const key: ServiceKey = fwmark
    ? { kind: 'fwmark', family, fwmark }
    : {
        kind: 'address',
        family,
        protocol: protocolFromWire(required(protocol, 'IPVS_SVC_ATTR_PROTOCOL')),
        address: addressAt(buffer, family, addr, 'IPVS_SVC_ATTR_ADDR'),
        port: required(port, 'IPVS_SVC_ATTR_PORT'),
      };
  const service: VirtualService = {
    key,
    scheduler: required(scheduler, 'IPVS_SVC_ATTR_SCHED_NAME'),
    flags: decodeFlags(flags),
    timeoutSeconds,
    netmask: decodeNetmask(family, required(netmask, 'IPVS_SVC_ATTR_NETMASK')),
    stats: decodeStats(buffer, stats),
  };
  // Rare: set only when present, so the common shape stays the same for every service.
  if (persistenceEngine) service.persistenceEngine = persistenceEngine;
  return service;
}

/** What a destination decode reads: every field, or only what finding candidates needs. */
export type DestDetail = 'full' | 'weights';

/**
 * The IPVS_DEST_ATTR_* nest at buffer[start, end). With 'weights', only address, port and weight are read:
 * the counters and statistics are skipped unread.
 */
export function decodeDestAt(buffer: Buffer, start: number, end: number, serviceFamily: AddressFamily, detail: 'full'): Destination;
export function decodeDestAt(buffer: Buffer, start: number, end: number, serviceFamily: AddressFamily, detail: 'weights'): DestinationWeight;
export function decodeDestAt(
  buffer: Buffer,
  start: number,
  end: number,
  serviceFamily: AddressFamily,
  detail: DestDetail,
): Destination | DestinationWeight {
  const full = detail === 'full';
  let addrFamily: number | undefined;
  let port: number | undefined;
  let fwdMethod: number | undefined;
  let weight: number | undefined;
  const counters = { upperThreshold: 0, lowerThreshold: 0, activeConnections: 0, inactiveConnections: 0, persistentConnections: 0 };
  const addr = absent();
  const stats = noStats();
  for (let offset = start; offset + NLA_HDRLEN <= end; ) {
    const next = attributeEnd(buffer, offset, end);
    const p = offset + NLA_HDRLEN;
    const type = attributeType(buffer, offset);
    offset = start + align4(next - start);
    switch (type) {
      case IPVS_DEST_ATTR_ADDR:
        addr.start = p;
        addr.end = next;
        continue;
      case IPVS_DEST_ATTR_PORT:
        port = be16.decode(buffer, p, next);
        continue;
      case IPVS_DEST_ATTR_WEIGHT:
        weight = u32.decode(buffer, p, next);
        continue;
      case IPVS_DEST_ATTR_ADDR_FAMILY:
        addrFamily = u16.decode(buffer, p, next);
        continue;
    }
    if (!full) continue;
    switch (type) {
      case IPVS_DEST_ATTR_FWD_METHOD:
        fwdMethod = u32.decode(buffer, p, next);
        break;
      case IPVS_DEST_ATTR_U_THRESH:
        counters.upperThreshold = u32.decode(buffer, p, next);
        break;
      case IPVS_DEST_ATTR_L_THRESH:
        counters.lowerThreshold = u32.decode(buffer, p, next);
        break;
      case IPVS_DEST_ATTR_ACTIVE_CONNS:
        counters.activeConnections = u32.decode(buffer, p, next);
        break;
      case IPVS_DEST_ATTR_INACT_CONNS:
        counters.inactiveConnections = u32.decode(buffer, p, next);
        break;
      case IPVS_DEST_ATTR_PERSIST_CONNS:
        counters.persistentConnections = u32.decode(buffer, p, next);
        break;
      case IPVS_DEST_ATTR_STATS:
      case IPVS_DEST_ATTR_STATS64:
        noteStats(stats, type === IPVS_DEST_ATTR_STATS64, p, next);
        break;
    }
  }
  const family = addrFamily === undefined ? serviceFamily : familyFromWire(addrFamily);
  const address = addressAt(buffer, family, addr, 'IPVS_DEST_ATTR_ADDR');
  port = required(port, 'IPVS_DEST_ATTR_PORT');
  // The kernel's weight is a signed int carried in a u32.
  weight = required(weight, 'IPVS_DEST_ATTR_WEIGHT') | 0;
  // Plain literals, no object spread: V8 builds a spread in the middle of a literal through a slow runtime path.
  if (!full) return { family, address, port, weight };
  return {
    family,
    address,
    port,
    forwarding: forwardingFromWire(required(fwdMethod, 'IPVS_DEST_ATTR_FWD_METHOD') & IP_VS_CONN_F_FWD_MASK),
    weight,
    upperThreshold: counters.upperThreshold,
    lowerThreshold: counters.lowerThreshold,
    activeConnections: counters.activeConnections,
    inactiveConnections: counters.inactiveConnections,
    persistentConnections: counters.persistentConnections,
    stats: decodeStats(buffer, stats),
  };
}

/** A GET_SERVICE reply: its IPVS_CMD_ATTR_SERVICE nest. */
export const serviceReply: ReplyDecoder<VirtualService> = (payload, start) => {
  const [s, e] = nestRange(payload, start, IPVS_CMD_ATTR_SERVICE, 'IPVS_CMD_ATTR_SERVICE');
  return decodeServiceAt(payload, s, e);
};

/** A GET_DEST reply of a service of `family`: its IPVS_CMD_ATTR_DEST nest. */
export function destReply(family: AddressFamily): ReplyDecoder<Destination> {
  return (payload, start) => {
    const [s, e] = nestRange(payload, start, IPVS_CMD_ATTR_DEST, 'IPVS_CMD_ATTR_DEST');
    return decodeDestAt(payload, s, e, family, 'full');
  };
}

/** The same reply as destReply, only address, port and weight. */
export function destWeightReply(family: AddressFamily): ReplyDecoder<DestinationWeight> {
  return (payload, start) => {
    const [s, e] = nestRange(payload, start, IPVS_CMD_ATTR_DEST, 'IPVS_CMD_ATTR_DEST');
    return decodeDestAt(payload, s, e, family, 'weights');
  };
}
