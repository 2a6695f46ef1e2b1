// IPVS generic netlink vocabulary (include/uapi/linux/ip_vs.h): commands and attribute tables, each
// table key the kernel's IPVS_*_ATTR_* name in camelCase.
import { binary, be16, nested, string, u16, u32, type AttributeSet, type Codec } from '../netlink/attributes.js';
import { NetlinkProtocolError } from '../netlink/errors.js';

export const IPVS_GENL_NAME = 'IPVS';
export const IPVS_GENL_VERSION = 1;

export const IPVS_CMD_NEW_SERVICE = 1;
export const IPVS_CMD_SET_SERVICE = 2;
export const IPVS_CMD_DEL_SERVICE = 3;
export const IPVS_CMD_GET_SERVICE = 4;
export const IPVS_CMD_NEW_DEST = 5;
export const IPVS_CMD_SET_DEST = 6;
export const IPVS_CMD_DEL_DEST = 7;
export const IPVS_CMD_GET_DEST = 8;
export const IPVS_CMD_GET_CONFIG = 13;
export const IPVS_CMD_GET_INFO = 15;

export const commandNames: Record<number, string> = {
  [IPVS_CMD_NEW_SERVICE]: 'NEW_SERVICE',
  [IPVS_CMD_SET_SERVICE]: 'SET_SERVICE',
  [IPVS_CMD_DEL_SERVICE]: 'DEL_SERVICE',
  [IPVS_CMD_GET_SERVICE]: 'GET_SERVICE',
  [IPVS_CMD_NEW_DEST]: 'NEW_DEST',
  [IPVS_CMD_SET_DEST]: 'SET_DEST',
  [IPVS_CMD_DEL_DEST]: 'DEL_DEST',
  [IPVS_CMD_GET_DEST]: 'GET_DEST',
  [IPVS_CMD_GET_CONFIG]: 'GET_CONFIG',
  [IPVS_CMD_GET_INFO]: 'GET_INFO',
};

// struct ip_vs_flags: the bits to set and the mask of bits the request speaks for.
export const IP_VS_SVC_F_PERSISTENT = 0x1;
export const IP_VS_SVC_F_HASHED = 0x2;
export const IP_VS_SVC_F_ONEPACKET = 0x4;
export const IP_VS_SVC_F_SCHED1 = 0x8;
export const IP_VS_SVC_F_SCHED2 = 0x10;
export const IP_VS_SVC_F_SCHED3 = 0x20;

export const IP_VS_CONN_F_FWD_MASK = 0x7;
export const IP_VS_CONN_F_MASQ = 0;
export const IP_VS_CONN_F_LOCALNODE = 1;
export const IP_VS_CONN_F_TUNNEL = 2;
export const IP_VS_CONN_F_DROUTE = 3;
export const IP_VS_CONN_F_BYPASS = 4;

export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_SCTP = 132;

export const serviceFlagsCodec: Codec<{ flags: number; mask: number }> = {
  name: 'ip_vs_flags',
  nested: false,
  encode({ flags, mask }) {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(flags >>> 0, 0);
    b.writeUInt32LE(mask >>> 0, 4);
    return b;
  },
  decode(buffer, start, end) {
    if (end - start < 8) throw new NetlinkProtocolError('malformed netlink reply: short IPVS_SVC_ATTR_FLAGS');
    return { flags: buffer.readUInt32LE(start), mask: buffer.readUInt32LE(start + 4) };
  },
};

// IPVS_STATS_ATTR_*, inside IPVS_*_ATTR_STATS (BYTES u64, the rest u32) and IPVS_*_ATTR_STATS64 (all u64).
export const IPVS_STATS_ATTR_CONNS = 1;
export const IPVS_STATS_ATTR_INPKTS = 2;
export const IPVS_STATS_ATTR_OUTPKTS = 3;
export const IPVS_STATS_ATTR_INBYTES = 4;
export const IPVS_STATS_ATTR_OUTBYTES = 5;
export const IPVS_STATS_ATTR_CPS = 6;
export const IPVS_STATS_ATTR_INPPS = 7;
export const IPVS_STATS_ATTR_OUTPPS = 8;
export const IPVS_STATS_ATTR_INBPS = 9;
export const IPVS_STATS_ATTR_OUTBPS = 10;

export const IPVS_CMD_ATTR_SERVICE = 1;
export const IPVS_CMD_ATTR_DEST = 2;

export const IPVS_SVC_ATTR_AF = 1;
export const IPVS_SVC_ATTR_PROTOCOL = 2;
export const IPVS_SVC_ATTR_ADDR = 3;
export const IPVS_SVC_ATTR_PORT = 4;
export const IPVS_SVC_ATTR_FWMARK = 5;
export const IPVS_SVC_ATTR_SCHED_NAME = 6;
export const IPVS_SVC_ATTR_FLAGS = 7;
export const IPVS_SVC_ATTR_TIMEOUT = 8;
export const IPVS_SVC_ATTR_NETMASK = 9;
export const IPVS_SVC_ATTR_STATS = 10;
export const IPVS_SVC_ATTR_PE_NAME = 11;
export const IPVS_SVC_ATTR_STATS64 = 12;

/** What we send; replies are read by the decoders in codec.ts, which use the same numbers and codecs. */
export const serviceAttributes = {
  af: [IPVS_SVC_ATTR_AF, u16],
  protocol: [IPVS_SVC_ATTR_PROTOCOL, u16],
  addr: [IPVS_SVC_ATTR_ADDR, binary],
  port: [IPVS_SVC_ATTR_PORT, be16],
  fwmark: [IPVS_SVC_ATTR_FWMARK, u32],
  schedName: [IPVS_SVC_ATTR_SCHED_NAME, string],
  flags: [IPVS_SVC_ATTR_FLAGS, serviceFlagsCodec],
  timeout: [IPVS_SVC_ATTR_TIMEOUT, u32],
  netmask: [IPVS_SVC_ATTR_NETMASK, u32],
  peName: [IPVS_SVC_ATTR_PE_NAME, string],
} as const satisfies AttributeSet;

export const IPVS_DEST_ATTR_ADDR = 1;
export const IPVS_DEST_ATTR_PORT = 2;
export const IPVS_DEST_ATTR_FWD_METHOD = 3;
export const IPVS_DEST_ATTR_WEIGHT = 4;
export const IPVS_DEST_ATTR_U_THRESH = 5;
export const IPVS_DEST_ATTR_L_THRESH = 6;
export const IPVS_DEST_ATTR_ACTIVE_CONNS = 7;
export const IPVS_DEST_ATTR_INACT_CONNS = 8;
export const IPVS_DEST_ATTR_PERSIST_CONNS = 9;
export const IPVS_DEST_ATTR_STATS = 10;
export const IPVS_DEST_ATTR_ADDR_FAMILY = 11;
export const IPVS_DEST_ATTR_STATS64 = 12;

/** What we send; replies are read by the decoders in codec.ts (tunnel attributes 13-15 are neither sent nor read). */
export const destAttributes = {
  addr: [IPVS_DEST_ATTR_ADDR, binary],
  port: [IPVS_DEST_ATTR_PORT, be16],
  fwdMethod: [IPVS_DEST_ATTR_FWD_METHOD, u32],
  weight: [IPVS_DEST_ATTR_WEIGHT, u32],
  uThresh: [IPVS_DEST_ATTR_U_THRESH, u32],
  lThresh: [IPVS_DEST_ATTR_L_THRESH, u32],
  addrFamily: [IPVS_DEST_ATTR_ADDR_FAMILY, u16],
} as const satisfies AttributeSet;

/** IPVS_INFO_ATTR_*: GET_INFO replies put these at the top level, where their numbers mean something else. */
export const infoAttributes = {
  version: [1, u32],
  connTabSize: [2, u32],
} as const satisfies AttributeSet;

/** IPVS_CMD_ATTR_*: the top level of every IPVS message. */
export const commandAttributes = {
  service: [IPVS_CMD_ATTR_SERVICE, nested(serviceAttributes)],
  dest: [IPVS_CMD_ATTR_DEST, nested(destAttributes)],
  timeoutTcp: [4, u32],
  timeoutTcpFin: [5, u32],
  timeoutUdp: [6, u32],
} as const satisfies AttributeSet;
