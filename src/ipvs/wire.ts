// IPVS generic netlink vocabulary (include/uapi/linux/ip_vs.h): commands and attribute tables, each
// table key the kernel's IPVS_*_ATTR_* name in camelCase.
import { binary, be16, nested, string, u16, u32, u64, u8, type AttributeSet, type Codec } from '../netlink/attributes.js';
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
  decode(payload) {
    if (payload.length < 8) throw new NetlinkProtocolError('malformed netlink reply: short IPVS_SVC_ATTR_FLAGS');
    return { flags: payload.readUInt32LE(0), mask: payload.readUInt32LE(4) };
  },
};

/** IPVS_STATS_ATTR_*: in the legacy STATS nest bytes are u64 and the rest u32. */
export const statsAttributes = {
  conns: [1, u32],
  inpkts: [2, u32],
  outpkts: [3, u32],
  inbytes: [4, u64],
  outbytes: [5, u64],
  cps: [6, u32],
  inpps: [7, u32],
  outpps: [8, u32],
  inbps: [9, u32],
  outbps: [10, u32],
} as const satisfies AttributeSet;

/** IPVS_STATS_ATTR_* inside STATS64: every counter u64. */
export const stats64Attributes = {
  conns: [1, u64],
  inpkts: [2, u64],
  outpkts: [3, u64],
  inbytes: [4, u64],
  outbytes: [5, u64],
  cps: [6, u64],
  inpps: [7, u64],
  outpps: [8, u64],
  inbps: [9, u64],
  outbps: [10, u64],
} as const satisfies AttributeSet;

export const serviceAttributes = {
  af: [1, u16],
  protocol: [2, u16],
  addr: [3, binary],
  port: [4, be16],
  fwmark: [5, u32],
  schedName: [6, string],
  flags: [7, serviceFlagsCodec],
  timeout: [8, u32],
  netmask: [9, u32],
  stats: [10, nested(statsAttributes)],
  peName: [11, string],
  stats64: [12, nested(stats64Attributes)],
} as const satisfies AttributeSet;

export const destAttributes = {
  addr: [1, binary],
  port: [2, be16],
  fwdMethod: [3, u32],
  weight: [4, u32],
  uThresh: [5, u32],
  lThresh: [6, u32],
  activeConns: [7, u32],
  inactConns: [8, u32],
  persistConns: [9, u32],
  stats: [10, nested(statsAttributes)],
  addrFamily: [11, u16],
  stats64: [12, nested(stats64Attributes)],
  tunType: [13, u8],
  tunPort: [14, be16],
  tunFlags: [15, u16],
} as const satisfies AttributeSet;

/** IPVS_INFO_ATTR_*: GET_INFO replies put these at the top level, where their numbers mean something else. */
export const infoAttributes = {
  version: [1, u32],
  connTabSize: [2, u32],
} as const satisfies AttributeSet;

/** IPVS_CMD_ATTR_*: the top level of every IPVS message. */
export const commandAttributes = {
  service: [1, nested(serviceAttributes)],
  dest: [2, nested(destAttributes)],
  timeoutTcp: [4, u32],
  timeoutTcpFin: [5, u32],
  timeoutUdp: [6, u32],
} as const satisfies AttributeSet;
