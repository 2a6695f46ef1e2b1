// The kernel IPVS client: typed operations over one generic netlink socket.
import { GenericNetlinkFamily, NETLINK_GENERIC, resolveFamily } from '../netlink/genl.js';
import type { AttributeSet, AttributeValues } from '../netlink/attributes.js';
import { isErrno, NetlinkProtocolError, NetlinkTimeoutError } from '../netlink/errors.js';
import { NetlinkSocket, type RequestKind } from '../netlink/socket.js';
import {
  decodeDest,
  decodeService,
  encodeDestKey,
  encodeDestSpec,
  encodeServiceKey,
  encodeServiceSpec,
  required,
} from './codec.js';
import { IpvsUnavailableError } from './errors.js';
import type {
  Destination,
  DestinationKey,
  DestinationSpec,
  IpvsApi,
  IpvsInfo,
  IpvsTimeouts,
  ServiceKey,
  ServiceSpec,
  VirtualService,
} from './types.js';
import {
  commandAttributes,
  commandNames,
  infoAttributes,
  IPVS_CMD_DEL_DEST,
  IPVS_CMD_DEL_SERVICE,
  IPVS_CMD_GET_CONFIG,
  IPVS_CMD_GET_DEST,
  IPVS_CMD_GET_INFO,
  IPVS_CMD_GET_SERVICE,
  IPVS_CMD_NEW_DEST,
  IPVS_CMD_NEW_SERVICE,
  IPVS_CMD_SET_DEST,
  IPVS_CMD_SET_SERVICE,
  IPVS_GENL_NAME,
  IPVS_GENL_VERSION,
} from './wire.js';

type Family = GenericNetlinkFamily<typeof commandAttributes>;

/**
 * After a timeout, a lost datagram (ENOBUFS) or an unparsable reply the socket may still hold the rest of
 * an old answer (or an unfinished dump): it is replaced rather than trusted again.
 */
function poisonsSocket(err: unknown): boolean {
  return err instanceof NetlinkTimeoutError || err instanceof NetlinkProtocolError || isErrno(err, 'ENOBUFS');
}

export class IpvsClient implements IpvsApi {
  private constructor(
    private socket: NetlinkSocket,
    private family: Family,
  ) {}

  /** Rejects with IpvsUnavailableError when the kernel has no IPVS. */
  static async open(): Promise<IpvsClient> {
    const socket = NetlinkSocket.open(NETLINK_GENERIC);
    try {
      return new IpvsClient(socket, await IpvsClient.bind(socket));
    } catch (err) {
      socket.close();
      throw isErrno(err, 'ENOENT') ? new IpvsUnavailableError() : err;
    }
  }

  private static async bind(socket: NetlinkSocket): Promise<Family> {
    const { id } = await resolveFamily(socket, IPVS_GENL_NAME);
    return new GenericNetlinkFamily(socket, id, IPVS_GENL_VERSION, commandAttributes, IPVS_GENL_NAME, commandNames);
  }

  private async run<R extends AttributeSet = typeof commandAttributes>(
    kind: RequestKind,
    cmd: number,
    values: AttributeValues<typeof commandAttributes>,
    replySet?: R,
  ): Promise<AttributeValues<R>[]> {
    try {
      return await this.family.request(kind, cmd, values, replySet);
    } catch (err) {
      if (poisonsSocket(err)) await this.replaceSocket();
      throw err;
    }
  }

  private async replaceSocket(): Promise<void> {
    this.socket.close();
    this.socket = NetlinkSocket.open(NETLINK_GENERIC);
    this.family = await IpvsClient.bind(this.socket);
  }

  async info(): Promise<IpvsInfo> {
    const [reply] = await this.run('do', IPVS_CMD_GET_INFO, {}, infoAttributes);
    const v = required(reply?.version, 'IPVS_INFO_ATTR_VERSION');
    return {
      version: `${(v >> 16) & 0xff}.${(v >> 8) & 0xff}.${v & 0xff}`,
      connectionTableSize: reply?.connTabSize ?? 0,
    };
  }

  async timeouts(): Promise<IpvsTimeouts> {
    const [reply] = await this.run('do', IPVS_CMD_GET_CONFIG, {});
    return {
      tcpSeconds: reply?.timeoutTcp ?? 0,
      tcpFinSeconds: reply?.timeoutTcpFin ?? 0,
      udpSeconds: reply?.timeoutUdp ?? 0,
    };
  }

  async listServices(): Promise<VirtualService[]> {
    const replies = await this.run('dump', IPVS_CMD_GET_SERVICE, {});
    return replies.map((r) => decodeService(required(r.service, 'IPVS_CMD_ATTR_SERVICE')));
  }

  async getService(key: ServiceKey): Promise<VirtualService> {
    const [reply] = await this.run('do', IPVS_CMD_GET_SERVICE, { service: encodeServiceKey(key) });
    return decodeService(required(reply?.service, 'IPVS_CMD_ATTR_SERVICE'));
  }

  async listDestinations(key: ServiceKey): Promise<Destination[]> {
    const replies = await this.run('dump', IPVS_CMD_GET_DEST, { service: encodeServiceKey(key) });
    return replies.map((r) => decodeDest(required(r.dest, 'IPVS_CMD_ATTR_DEST'), key.family));
  }

  async createService(spec: ServiceSpec): Promise<void> {
    await this.run('do', IPVS_CMD_NEW_SERVICE, { service: encodeServiceSpec(spec) });
  }

  async updateService(spec: ServiceSpec): Promise<void> {
    await this.run('do', IPVS_CMD_SET_SERVICE, { service: encodeServiceSpec(spec) });
  }

  async deleteService(key: ServiceKey): Promise<void> {
    await this.run('do', IPVS_CMD_DEL_SERVICE, { service: encodeServiceKey(key) });
  }

  async createDestination(service: ServiceKey, dest: DestinationSpec): Promise<void> {
    await this.run('do', IPVS_CMD_NEW_DEST, { service: encodeServiceKey(service), dest: encodeDestSpec(service, dest) });
  }

  async updateDestination(service: ServiceKey, dest: DestinationSpec): Promise<void> {
    await this.run('do', IPVS_CMD_SET_DEST, { service: encodeServiceKey(service), dest: encodeDestSpec(service, dest) });
  }

  async deleteDestination(service: ServiceKey, dest: DestinationKey): Promise<void> {
    await this.run('do', IPVS_CMD_DEL_DEST, { service: encodeServiceKey(service), dest: encodeDestKey(service, dest) });
  }

  close(): void {
    this.socket.close();
  }
}
